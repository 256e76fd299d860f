"""`mailer authorizations ...`: the marketing-authorization registry (164.508)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.common import actor, new_app, out, runtime
from mailer.store.auth_records import import_authorizations

auth_app = new_app("Marketing authorizations (45 CFR 164.508): import, grant, revoke, list.")


@auth_app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV: email, scope, the 164.508(c) elements and statements, dates.")],
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows; report the bad ones.")] = False,
) -> None:
    """Import authorization records; each one is a ledger event."""
    rt = runtime(ctx)
    report = import_authorizations(rt.engine, rt.keyring, rt.ledger, file, skip_invalid=skip_invalid, actor=actor(ctx))
    out.print(f"imported {report.imported} authorization(s)")
    for p in report.problems:
        out.print(f"  {file}:{p.line}: {p.field}: {p.reason}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(auth_app, name="authorizations")


def resolve_contact(ctx: typer.Context, contact: str) -> int:
    """A contact id, or an address looked up by its HMAC (never echoed back)."""
    from mailer.errors import InputError
    from mailer.store.contacts import contact_id_for

    if contact.isdigit():
        return int(contact)
    rt = runtime(ctx)
    cid = contact_id_for(rt.engine, rt.keyring, contact)
    if cid is None:
        raise InputError("no contact with that address", hint="check the address, or pass the contact id")
    return cid


@auth_app.command("revoke")
def revoke_cmd(
    ctx: typer.Context,
    contact: Annotated[str, typer.Option(help="Contact id or address.")],
    scope: Annotated[str, typer.Option(help="Authorization scope, e.g. condition-targeted-marketing.")],
    at: Annotated[str | None, typer.Option(help="When the written revocation was received (ISO time, UTC if no zone). Default: now.")] = None,
) -> None:
    """Record a written revocation; it blocks every message not yet sent (AUTH-7)."""
    from mailer.errors import InputError
    from mailer.store.auth_records import parse_time, revoke

    rt = runtime(ctx)
    try:
        when = parse_time(at) if at else None
    except ValueError:
        raise InputError("--at is not an ISO date-time", hint="e.g. 2026-11-03T10:00:00Z") from None
    cid = resolve_contact(ctx, contact)
    ids = revoke(rt.engine, rt.ledger, contact_id=cid, scope=scope, at=when, actor=actor(ctx))
    out.print(f"revoked {len(ids)} authorization(s) of contact {cid} for scope {scope}")
