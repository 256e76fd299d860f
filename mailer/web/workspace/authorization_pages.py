"""Authorizations: the list (ids, scopes, dates, flags), grant and revoke (issue 16).

Grant and revoke call the services `mailer authorizations grant/revoke` call
(`store.auth_records.grant_checked`, `check_known_scope`, `revoke`) behind the same
permissions (`authorizations.grant`, `authorizations.revoke`). The encrypted 164.508(c)
elements are written, never read back here: the list shows none of them, and a form sent
back with an error does not show the descriptions typed into it again.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.responses import Response

from mailer.accounts.permissions import Action
from mailer.authorizations import SCOPES
from mailer.errors import InputError
from mailer.models import Authorization, utcnow
from mailer.web.workspace.core import Ctx, int_param, page, redirect
from mailer.web.workspace.ledger_pages import record_view

_AU = Authorization.__table__  # type: ignore[attr-defined]
PAGE_SIZE = 50
# Form checkboxes -> record flags (the CLI's --signature, --statement-revocation, ...).
FLAGS = {
    "signature_present": "The document is signed (c)(1)(vi)",
    "statement_revocation": "States the right to revoke in writing and how (c)(2)(i)",
    "statement_conditioning": "States whether treatment may be conditioned on signing (c)(2)(ii)",
    "statement_redisclosure": "States the information may be redisclosed (c)(2)(iii)",
    "plain_language": "Written in plain language (c)(3)",
    "copy_provided": "A copy was given to the individual (c)(4)",
    "remuneration": "Financial remuneration is involved (MKT-3)",
    "remuneration_statement": "The authorization states the remuneration (MKT-6)",
    "compound": "Combined with another document (a defect, AUTH-5)",
    "treatment_conditioned": "Treatment was conditioned on signing (a defect, AUTH-5)",
}
ELEMENTS = {
    "information_description": "(c)(1)(i) Information to be used or disclosed",
    "discloser": "(c)(1)(ii) Who may use or disclose it",
    "recipients": "(c)(1)(iii) Who may receive it",
    "purpose": "(c)(1)(iv) Each purpose",
    "expiration_event": "(c)(1)(v) Or an expiration event",
    "representative_authority": "A representative's authority (AUTH-8)",
    "third_party": "The paying third party it names (SEG-5)",
}


def _can_see(c: Ctx) -> None:
    if not (c.can(Action.AUTHORIZATIONS_REVOKE) or c.can(Action.AUTHORIZATIONS_GRANT)):
        c.require(Action.AUTHORIZATIONS_REVOKE)


def _render(c: Ctx, status: int = 200, *, errors: dict[str, str] | None = None,
            grant: dict[str, Any] | None = None, revoke: dict[str, str] | None = None) -> Response:
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
        rows = conn.execute(q.order_by(_AU.c.id.desc()).limit(PAGE_SIZE + 1)).all()
        held = [r[0] for r in conn.execute(select(_AU.c.scope).distinct().order_by(_AU.c.scope))]
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    record_view(c, "authorizations", state=state, scope=scope, contact=contact, entries=len(rows))
    granted = None
    if c.q("done") == "granted":
        granted = {"id": c.q("id")[:12], "contact": c.q("contact_id")[:12], "scope": c.q("granted_scope")[:64],
                   "status": c.q("status")[:32], "rules": c.q("rules")[:200]}
    return c.render("authorizations.html", status, rows=rows, more=more, scopes=sorted({*SCOPES, *held}),
                    all_scopes=SCOPES, f={"state": state, "scope": scope, "contact": c.q("contact")},
                    can_revoke=c.can(Action.AUTHORIZATIONS_REVOKE), can_grant=c.can(Action.AUTHORIZATIONS_GRANT),
                    done=c.q("done")[:16], revoked=c.q("revoked")[:12], granted=granted, errors=errors or {},
                    g=grant or {"plain_language": True, "signer": "patient"}, r=revoke or {},
                    flags=FLAGS, elements=ELEMENTS, can_view=c.can(Action.CONTACTS_VIEW))


@page()
def authorizations_page(c: Ctx) -> Response:
    _can_see(c)
    return _render(c)


def _date(value: str, field: str, errors: dict[str, str]) -> dt.datetime | None:
    from mailer.store.auth_records import parse_time

    try:
        return parse_time(value[:40])
    except ValueError:
        errors[field] = "a date, e.g. 2026-11-03"
        return None


def _contact(value: str, errors: dict[str, str]) -> int | None:
    value = value.strip()
    if not value.isdigit() or len(value) > 12:
        errors["contact"] = "the contact's id (a number; ids only, never an address)"
        return None
    return int(value)


@page(Action.AUTHORIZATIONS_GRANT)
def authorization_grant(c: Ctx) -> Response:
    """Record one signed authorization with every 164.508(c) element (`authorizations grant`)."""
    from mailer.store.auth_records import grant_checked

    form = c.form
    errors: dict[str, str] = {}
    cid = _contact(form.get("contact", ""), errors)
    scope = form.get("scope", "").strip()
    if scope not in SCOPES:
        errors["scope"] = f"one of {', '.join(SCOPES)}"
    signer = form.get("signer", "patient")
    if signer not in ("patient", "representative"):
        errors["signer"] = "patient or representative"
    sha = form.get("document_sha256", "").strip().lower()
    if sha and (len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha)):
        errors["document_sha256"] = "the signed document's SHA-256: 64 hexadecimal digits (sha256sum FILE)"
    expires, signed = _date(form.get("expires", ""), "expires", errors), _date(form.get("signed_at", ""),
                                                                               "signed_at", errors)
    texts = {k: form.get(k, "").strip()[:2000] for k in ELEMENTS}
    fields: dict[str, Any] = {
        "scope": scope, "expires_at": expires, "signed_at": signed, "signer": signer, "document_sha256": sha,
        **{k: form.get(k) == "1" for k in FLAGS},
        **{k: v for k, v in texts.items() if k in ("information_description", "discloser", "recipients", "purpose")},
        **{k: (v or None) for k, v in texts.items()
           if k not in ("information_description", "discloser", "recipients", "purpose")},
    }
    if not errors and cid is not None:
        try:
            new_id, v = grant_checked(c.rt.engine, c.rt.keyring, c.rt.ledger, contact_id=cid, fields=fields,
                                      actor=c.principal.name)
        except InputError as e:
            errors["contact" if "contact" in e.message else "scope"] = e.message + (f" ({e.hint})" if e.hint else "")
        else:
            return redirect("/authorizations?" + urlencode({
                "done": "granted", "id": new_id, "contact_id": cid, "granted_scope": scope, "status": str(v.status),
                "rules": ",".join(v.rules)}))
    if any(texts.values()):
        errors["elements"] = ("the descriptions you typed are not shown again (they may describe clinical "
                              "information): enter them again")
    keep = {"contact": form.get("contact", "")[:12], "scope": scope, "signer": signer, "document_sha256": sha,
            "expires": form.get("expires", "")[:40], "signed_at": form.get("signed_at", "")[:40],
            **{k: form.get(k) == "1" for k in FLAGS}}
    return _render(c, 400, errors=errors, grant=keep)


@page(Action.AUTHORIZATIONS_REVOKE)
def authorization_revoke(c: Ctx) -> Response:
    """Record a written revocation (AUTH-7) for one contact id and scope (`authorizations revoke`)."""
    from mailer.store.auth_records import check_known_scope, revoke

    errors: dict[str, str] = {}
    cid = _contact(c.form.get("contact", ""), errors)
    scope = c.form.get("scope", "").strip()
    if not scope or len(scope) > 64:
        errors["revoke_scope"] = "the scope of the authorization being revoked"
    when = _date(c.form.get("received", ""), "received", errors)
    if when is not None and when > utcnow():
        errors["received"] = "in the future: a revocation takes effect when it is received (AUTH-7)"
    if not errors and cid is not None:
        try:
            check_known_scope(c.rt.engine, cid, scope)
        except InputError as e:
            errors["revoke_contact" if "no contact" in e.message else "revoke_scope"] = \
                e.message + (f" ({e.hint})" if e.hint else "")
    if errors or cid is None:
        if "contact" in errors:
            errors["revoke_contact"] = errors.pop("contact")
        return _render(c, 400, errors=errors, revoke={"contact": c.form.get("contact", "")[:12], "scope": scope[:64],
                                                      "received": c.form.get("received", "")[:40]})
    ids = revoke(c.rt.engine, c.rt.ledger, contact_id=cid, scope=scope, at=when, actor=c.principal.name)
    return redirect("/authorizations?" + urlencode({"done": "revoked", "revoked": len(ids), "contact": cid}))
