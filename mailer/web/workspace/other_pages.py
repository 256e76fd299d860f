"""Dashboard, rules and users pages (authorizations: authorization_pages).

The dashboard reads a few GROUP BY counts and the last stored verification, never the
whole ledger. The users page calls the account service `mailer users ...` calls
(create, disable/enable, reset-password, roles), which checks `users.manage` itself and
records every change as an `access` ledger entry.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, select
from starlette.responses import Response

from mailer.accounts import service as accounts
from mailer.accounts.permissions import ROLES, Action
from mailer.errors import MailerError
from mailer.models import Authorization, Campaign, Delivery, utcnow
from mailer.web.workspace.campaign_pages import counts_by_status
from mailer.web.workspace.core import Ctx, NotFound, page, redirect
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
    return _users(c, 400 if errors else 200, errors=errors, created=created, done=c.q("done")[:16])


def _users(c: Ctx, status: int = 200, *, errors: dict[str, str] | None = None, created: dict[str, Any] | None = None,
           done: str = "") -> Response:
    return c.render("users.html", status, users=accounts.list_accounts(c.rt), roles=ROLES, errors=errors or {},
                    created=created, done=done)


@page(Action.USERS_MANAGE)
def user_action(c: Ctx) -> Response:
    name, action = c.request.path_params["name"], c.request.path_params["action"]
    if action not in ("disable", "enable", "roles", "reset") or \
            name.strip().lower() not in {a.name for a in accounts.list_accounts(c.rt)}:
        raise NotFound(f"{name}/{action}")
    if action == "disable":
        accounts.set_disabled(c.rt, c.principal, name, True)
    elif action == "enable":
        accounts.set_disabled(c.rt, c.principal, name, False)
    elif action == "roles":
        roles = [r for r in ROLES if c.form.get(f"role_{r}")]
        if not roles:
            return _users(c, 400, errors={f"roles:{name}": "pick at least one role (disable the account instead)"})
        info, enrol = accounts.set_roles(c.rt, c.principal, name, roles)
        if enrol is not None:  # gained admin or reviewer without a second factor (SEC-7)
            return _users(c, created={"name": info.name, "password": None, "totp": enrol.secret}, done="roles")
    elif action == "reset":
        otp = accounts.reset_password(c.rt, c.principal, name)
        return _users(c, created={"name": name, "password": otp, "totp": None}, done="reset")
    return redirect(f"/users?done={action}")
