"""Dashboard, authorizations, rules and users pages.

The dashboard reads a few GROUP BY counts and the last stored verification, never the
whole ledger. Authorizations are listed by id, contact id, scope, dates and flags only:
the encrypted elements (which describe clinical information) are never decrypted here.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, func, select
from starlette.responses import Response

from mailer.accounts import service as accounts
from mailer.accounts.permissions import ROLES, Action
from mailer.errors import MailerError
from mailer.models import Authorization, Campaign, Delivery, utcnow
from mailer.web.workspace.campaign_pages import counts_by_status
from mailer.web.workspace.core import Ctx, int_param, page, redirect
from mailer.web.workspace.ledger_pages import record_view
from mailer.web.workspace.models import LedgerVerification

_C = Campaign.__table__  # type: ignore[attr-defined]
_AU = Authorization.__table__  # type: ignore[attr-defined]
_D = Delivery.__table__  # type: ignore[attr-defined]
_V = LedgerVerification.__table__  # type: ignore[attr-defined]
UNCERTAIN_AFTER = timedelta(minutes=15)  # a claim older than this without an outcome needs a look


@page()
def dashboard(c: Ctx) -> Response:
    me = c.principal.name
    now = utcnow()
    with c.rt.engine.connect() as conn:
        by_status = counts_by_status(conn)
        waiting = conn.execute(select(_C.c.id, _C.c.name, _C.c.author, _C.c.updated_at).where(
            _C.c.status == "submitted", _C.c.author != me).order_by(_C.c.updated_at).limit(20)).all() \
            if c.can(Action.CAMPAIGN_APPROVE) else []
        mine = conn.execute(select(_C.c.id, _C.c.name, _C.c.status, _C.c.status_reason).where(
            _C.c.author == me, _C.c.status.in_(("draft", "submitted"))).order_by(_C.c.id.desc()).limit(20)).all() \
            if c.can(Action.CAMPAIGN_CREATE) else []
        expiring = conn.execute(select(func.count()).select_from(_AU).where(
            _AU.c.revoked_at.is_(None), _AU.c.expires_at.is_not(None), _AU.c.expires_at >= now,
            _AU.c.expires_at < now + timedelta(days=30))).scalar() or 0
        failed = conn.execute(select(func.count()).select_from(_D).where(_D.c.status == "failed")).scalar() or 0
        uncertain = conn.execute(select(func.count()).select_from(_D).where(and_(
            _D.c.status == "claimed", _D.c.claimed_at < now - UNCERTAIN_AFTER))).scalar() or 0
        last = conn.execute(select(_V).order_by(_V.c.id.desc()).limit(1)).first()
    from mailer.campaigns import STATES

    return c.render("dashboard.html", by_status=by_status, states=STATES, waiting=waiting, mine=mine,
                    expiring=expiring, failed=failed, uncertain=uncertain, last=last,
                    changed=c.q("changed") == "1")


@page()
def authorizations_page(c: Ctx) -> Response:
    if not (c.can(Action.AUTHORIZATIONS_REVOKE) or c.can(Action.AUTHORIZATIONS_GRANT)):
        c.require(Action.AUTHORIZATIONS_REVOKE)
    now = utcnow()
    state, scope = c.q("state"), c.q("scope")[:64]
    contact = int_param(c.q("contact"), "contact")
    before = int_param(c.q("before"), "before")
    cols = (_AU.c.id, _AU.c.contact_id, _AU.c.scope, _AU.c.signed_at, _AU.c.expires_at, _AU.c.revoked_at,
            _AU.c.signer, _AU.c.remuneration, _AU.c.document_sha256)
    q = select(*cols)
    if state == "expiring":
        q = q.where(_AU.c.revoked_at.is_(None), _AU.c.expires_at >= now, _AU.c.expires_at < now + timedelta(days=30))
    elif state == "revoked":
        q = q.where(_AU.c.revoked_at.is_not(None))
    elif state == "expired":
        q = q.where(_AU.c.expires_at < now)
    if scope:
        q = q.where(_AU.c.scope == scope)
    if contact:
        q = q.where(_AU.c.contact_id == contact)
    if before:
        q = q.where(_AU.c.id < before)
    with c.rt.engine.connect() as conn:
        rows = conn.execute(q.order_by(_AU.c.id.desc()).limit(51)).all()
        scopes = [r[0] for r in conn.execute(select(_AU.c.scope).distinct().order_by(_AU.c.scope))]
    more, rows = len(rows) > 50, rows[:50]
    record_view(c, "authorizations", state=state, scope=scope, contact=contact, entries=len(rows))
    return c.render("authorizations.html", rows=rows, more=more, scopes=scopes,
                    f={"state": state, "scope": scope, "contact": c.q("contact")}, now=now,
                    can_revoke=c.can(Action.AUTHORIZATIONS_REVOKE), done=c.q("done")[:16], errors={})


@page(Action.AUTHORIZATIONS_REVOKE)
def authorization_revoke(c: Ctx) -> Response:
    """Record a written revocation (AUTH-7) for one contact id and scope."""
    from mailer.store.auth_records import revoke

    errors = {}
    contact = c.form.get("contact", "").strip()
    scope = c.form.get("scope", "").strip()
    if not contact.isdigit():
        errors["contact"] = "the contact's id (a number)"
    if not scope or len(scope) > 64:
        errors["scope"] = "the scope of the authorization being revoked"
    if errors:
        return c.render("authorizations.html", 400, rows=[], more=False, scopes=[],
                        f={"state": "", "scope": scope, "contact": contact}, now=utcnow(), can_revoke=True,
                        done="", errors=errors)
    revoke(c.rt.engine, c.rt.ledger, contact_id=int(contact), scope=scope, actor=c.principal.name)
    return redirect("/authorizations?done=revoked")


@page()
def rules_page(c: Ctx) -> Response:
    """The rule reference `mailer rules` prints (mailer/rules/reference.toml), by family."""
    from mailer import rules

    by_family: dict[str, list[rules.Rule]] = {}
    for rule in rules.load().values():
        by_family.setdefault(rule.family, []).append(rule)
    return c.render("rules.html", families=by_family)


@page(Action.USERS_MANAGE)
def users_page(c: Ctx) -> Response:
    errors: dict[str, str] = {}
    created = None
    if c.request.method == "POST":
        name = c.form.get("name", "").strip()
        roles = [r for r in ROLES if c.form.get(f"role_{r}")]
        if not roles:
            errors["roles"] = "pick at least one role"
        if not errors:
            try:
                info, otp, enrol = accounts.create_account(c.rt, c.principal, name, roles)
                created = {"name": info.name, "password": otp, "totp": enrol.secret if enrol else None}
            except MailerError as e:
                errors["name"] = e.message + (f" ({e.hint})" if e.hint else "")
    return c.render("users.html", 400 if errors else 200, users=accounts.list_accounts(c.rt), roles=ROLES,
                    errors=errors, created=created, done=c.q("done")[:16])


@page(Action.USERS_MANAGE)
def user_action(c: Ctx) -> Response:
    name, action = c.request.path_params["name"], c.request.path_params["action"]
    if action == "disable":
        accounts.set_disabled(c.rt, c.principal, name, True)
    elif action == "enable":
        accounts.set_disabled(c.rt, c.principal, name, False)
    elif action == "reset":
        otp = accounts.reset_password(c.rt, c.principal, name)
        return c.render("users.html", users=accounts.list_accounts(c.rt), roles=ROLES, errors={},
                        created={"name": name, "password": otp, "totp": None}, done="reset")
    else:
        from mailer.web.workspace.core import NotFound

        raise NotFound(action)
    return redirect(f"/users?done={action}")
