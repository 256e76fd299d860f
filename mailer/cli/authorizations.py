"""`mailer authorizations ...`: the marketing-authorization registry (164.508).

Output carries record ids, contact ids, scopes, statuses, rule IDs and dates: never a
name or an address. Every import, grant, revoke and purge attempt is a ledger event.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from mailer.accounts.permissions import Action
from mailer.cli.common import act, new_app, out, print_json, runtime
from mailer.errors import InputError

auth_app = new_app("Marketing authorizations (45 CFR 164.508): import, grant, revoke, list, purge.")


def register(app: typer.Typer) -> None:
    app.add_typer(auth_app, name="authorizations")


def resolve_contact(ctx: typer.Context, contact: str) -> int:
    """A contact id, or an address looked up by its HMAC (never echoed back)."""
    from email_validator import EmailNotValidError

    from mailer.store.contacts import contact_id_for

    if contact.isdigit():
        return int(contact)
    rt = runtime(ctx)
    try:
        cid = contact_id_for(rt.engine, rt.keyring, contact)
    except EmailNotValidError:
        raise InputError("--contact is neither a contact id nor a valid address") from None
    if cid is None:
        raise InputError("no contact with that address", hint="check the address, or pass the contact id")
    return cid


def _time(value: str | None, option: str) -> dt.datetime | None:
    from mailer.store.auth_records import parse_time

    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise InputError(f"{option} is not an ISO date or date-time", hint="e.g. 2026-11-03T10:00:00Z") from None


_DURATION = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")


def parse_duration(value: str) -> dt.timedelta:
    """`30d`, `12h`, `2w`."""
    m = _DURATION.match(value)
    if not m:
        raise InputError("expected a duration like 30d, 12h or 2w")
    n, unit = int(m.group(1)), m.group(2)
    return {"d": dt.timedelta(days=n), "h": dt.timedelta(hours=n), "w": dt.timedelta(weeks=n)}[unit]


@auth_app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV: email, scope, the 164.508(c) elements and statements, dates.")],
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows; report the bad ones.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Import authorization records; each one is a ledger event. Re-importing a file adds nothing."""
    from mailer.cli.common import check_format
    from mailer.store.auth_records import import_authorizations

    check_format(fmt)
    rt = runtime(ctx)
    report = import_authorizations(rt.engine, rt.keyring, rt.ledger, file, skip_invalid=skip_invalid, actor=act(ctx, Action.AUTHORIZATIONS_IMPORT))
    if fmt == "json":
        print_json({"imported": report.imported, "unchanged": report.unchanged,
                    "problems": [{"line": p.line, "field": p.field, "reason": p.reason} for p in report.problems]})
        return
    out.print(f"imported {report.imported} authorization(s); {report.unchanged} already on file")
    for p in report.problems:
        out.print(f"  {file}:{p.line}: {p.field}: {p.reason}", markup=False)


@auth_app.command("grant")
def grant_cmd(
    ctx: typer.Context,
    contact: Annotated[str, typer.Option(help="Contact id or address.")],
    scope: Annotated[str, typer.Option(help="condition-targeted-marketing, third-party-marketing, marketing or testimonial.")],
    information: Annotated[str, typer.Option(help="(c)(1)(i) Specific description of the information to be used or disclosed.")] = "",
    discloser: Annotated[str, typer.Option(help="(c)(1)(ii) Who may use or disclose it.")] = "",
    recipients: Annotated[str, typer.Option(help="(c)(1)(iii) Who may receive it.")] = "",
    purpose: Annotated[str, typer.Option(help="(c)(1)(iv) Each purpose of the use or disclosure.")] = "",
    expires: Annotated[str | None, typer.Option(help="(c)(1)(v) Expiration date (ISO).")] = None,
    expiration_event: Annotated[str | None, typer.Option(help="(c)(1)(v) Or an expiration event, e.g. 'on disenrollment'.")] = None,
    signed_at: Annotated[str | None, typer.Option(help="(c)(1)(vi) Date of signature (ISO).")] = None,
    signature: Annotated[bool, typer.Option("--signature/--no-signature", help="(c)(1)(vi) The document is signed.")] = False,
    statement_revocation: Annotated[bool, typer.Option("--statement-revocation", help="(c)(2)(i) States the right to revoke and how.")] = False,
    statement_conditioning: Annotated[bool, typer.Option("--statement-conditioning", help="(c)(2)(ii) States whether treatment may be conditioned on signing.")] = False,
    statement_redisclosure: Annotated[bool, typer.Option("--statement-redisclosure", help="(c)(2)(iii) States the information may be redisclosed.")] = False,
    plain_language: Annotated[bool, typer.Option("--plain-language/--not-plain-language", help="(c)(3) Written in plain language.")] = True,
    copy_provided: Annotated[bool, typer.Option("--copy-provided", help="(c)(4) A copy was given to the individual.")] = False,
    signer: Annotated[str, typer.Option(help="patient or representative.")] = "patient",
    representative_authority: Annotated[str | None, typer.Option(help="Description of a representative's authority (AUTH-8).")] = None,
    remuneration: Annotated[bool, typer.Option("--remuneration", help="Financial remuneration is involved (MKT-3).")] = False,
    remuneration_statement: Annotated[bool, typer.Option("--remuneration-statement", help="The authorization states the remuneration (MKT-6).")] = False,
    third_party: Annotated[str | None, typer.Option(help="The paying third party it names (SEG-5).")] = None,
    compound: Annotated[bool, typer.Option("--compound", help="Combined with another document (a defect, AUTH-5).")] = False,
    treatment_conditioned: Annotated[bool, typer.Option("--treatment-conditioned", help="Treatment was conditioned on signing (a defect, AUTH-5).")] = False,
    document: Annotated[Path | None, typer.Option(help="The signed document: its SHA-256 is recorded (the file is not stored).")] = None,
    document_sha256: Annotated[str | None, typer.Option(help="Or the document's SHA-256, if the file is kept elsewhere.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Record one signed authorization with every 164.508(c) element; prints its id and validity now."""
    from mailer.store.auth_records import document_sha256 as sha_of
    from mailer.store.auth_records import grant_checked

    if document and document_sha256:
        raise InputError("give --document or --document-sha256, not both")
    sha = sha_of(document) if document else (document_sha256 or "").strip().lower()
    fields: dict[str, Any] = {
        "scope": scope, "information_description": information.strip(), "discloser": discloser.strip(),
        "recipients": recipients.strip(), "purpose": purpose.strip(), "expires_at": _time(expires, "--expires"),
        "expiration_event": (expiration_event or "").strip() or None, "signed_at": _time(signed_at, "--signed-at"),
        "signature_present": signature, "statement_revocation": statement_revocation,
        "statement_conditioning": statement_conditioning, "statement_redisclosure": statement_redisclosure,
        "plain_language": plain_language, "copy_provided": copy_provided, "signer": signer,
        "representative_authority": (representative_authority or "").strip() or None,
        "remuneration": remuneration, "remuneration_statement": remuneration_statement,
        "third_party": (third_party or "").strip() or None, "compound": compound,
        "treatment_conditioned": treatment_conditioned, "document_sha256": sha,
    }
    rt = runtime(ctx)
    cid = resolve_contact(ctx, contact)
    new_id, v = grant_checked(rt.engine, rt.keyring, rt.ledger, contact_id=cid, fields=fields,
                              actor=act(ctx, Action.AUTHORIZATIONS_GRANT))
    if fmt == "json":
        print_json({"id": new_id, "contact_id": cid, "scope": scope, **v.as_dict()})
        return
    out.print(f"recorded authorization {new_id} for contact {cid}, scope {scope}: {v.status}"
              + (f" ({', '.join(v.rules)})" if v.rules else ""), markup=False)
    for reason in v.reasons:
        out.print(f"  {reason}", markup=False)


@auth_app.command("revoke")
def revoke_cmd(
    ctx: typer.Context,
    contact: Annotated[str, typer.Option(help="Contact id or address.")],
    scope: Annotated[str, typer.Option(help="Authorization scope, e.g. condition-targeted-marketing.")],
    at: Annotated[str | None, typer.Option(help="When the written revocation was received (ISO time, UTC if no zone). Default: now.")] = None,
) -> None:
    """Record a written revocation; it blocks every message not yet sent (AUTH-7)."""
    from mailer.models import utcnow
    from mailer.store.auth_records import check_known_scope, revoke

    rt = runtime(ctx)
    when = _time(at, "--at")
    if when is not None and when > utcnow():
        raise InputError("--at is in the future; a revocation takes effect when it is received",
                         rules=("AUTH-7",), hint="give the time the written revocation arrived")
    cid = resolve_contact(ctx, contact)
    check_known_scope(rt.engine, cid, scope)
    ids = revoke(rt.engine, rt.ledger, contact_id=cid, scope=scope, at=when, actor=act(ctx, Action.AUTHORIZATIONS_REVOKE))
    if ids:
        out.print(f"revoked {len(ids)} authorization(s) of contact {cid} for scope {scope}: "
                  f"{', '.join(map(str, ids))}", markup=False)
    else:
        out.print(f"no authorization of contact {cid} for scope {scope} to revoke; the revocation is recorded "
                  "in the ledger", markup=False)


@auth_app.command("list")
def list_cmd(
    ctx: typer.Context,
    contact: Annotated[str | None, typer.Option(help="Only this contact (id or address).")] = None,
    scope: Annotated[str | None, typer.Option(help="Only this scope.")] = None,
    expiring_within: Annotated[str | None, typer.Option(help="Only records valid now whose expiration date falls within this, e.g. 30d.")] = None,
    at: Annotated[str | None, typer.Option(help="Evaluate validity at this time instead of now (ISO).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Records with their validity now: ids, scope, status, rule IDs and dates; never names or addresses."""
    from mailer.models import utcnow
    from mailer.store.auth_records import list_authorizations

    rt = runtime(ctx)
    when = _time(at, "--at") or utcnow()
    cid = resolve_contact(ctx, contact) if contact else None
    within = parse_duration(expiring_within) if expiring_within else None
    rows = list_authorizations(rt.engine, rt.keyring, at=when, contact_id=cid, scope=scope, expiring_within=within)
    if fmt == "json":
        print_json({"at": when.isoformat(), "authorizations": [r.as_dict() for r in rows]})
        return
    from rich.table import Table

    table = Table("id", "contact", "scope", "status", "rules", "signed", "expires", "revoked", "keep until")
    n = 0

    def day(t: dt.datetime | None) -> str:
        return t.date().isoformat() if t else "-"

    for r in rows:
        n += 1
        expires = day(r.expires_at) if r.expires_at else ("event" if r.expiration_event else "-")
        table.add_row(str(r.id), str(r.contact_id), r.scope, r.status, ",".join(r.rules), day(r.signed_at),
                      expires, day(r.revoked_at), day(r.retention_until) if r.retention_until else "in effect")
    out.print(table)
    out.print(f"{n} authorization(s), validity at {when.isoformat(timespec='minutes')} UTC", markup=False)


@auth_app.command("purge")
def purge_cmd(
    ctx: typer.Context,
    contact: Annotated[str, typer.Option(help="Contact id or address.")],
    scope: Annotated[str | None, typer.Option(help="Only this scope (default: every scope).")] = None,
) -> None:
    """Delete a contact's records after their 6-year retention (AUTH-9); refused with exit 3 before it."""
    from mailer.store.auth_records import purge

    rt = runtime(ctx)
    cid = resolve_contact(ctx, contact)
    ids = purge(rt.engine, rt.ledger, contact_id=cid, scope=scope, actor=act(ctx, Action.AUTHORIZATIONS_PURGE))
    out.print(f"purged {len(ids)} authorization(s) of contact {cid}", markup=False)
