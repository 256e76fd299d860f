"""`mailer vendors ...`: business associates and their BAAs (BAA-1)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mailer import vendors
from mailer.accounts.permissions import Action
from mailer.campaigns import display_time, local_time
from mailer.cli.common import act, new_app, out, print_json, runtime
from mailer.errors import InputError
from mailer.models import utcnow

vendors_app = new_app("Vendors (relays, ESPs) and their business associate agreements (BAA-1).")


@vendors_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Vendor name, e.g. 'Acme Relay'.")],
    host: Annotated[str, typer.Option(help="Host it operates; the SMTP relay in config must match (smtp.host).")],
    baa_signed: Annotated[str | None, typer.Option(help="Date the BAA was signed (YYYY-MM-DD, center time zone).")] = None,
    baa_expires: Annotated[str | None, typer.Option(help="Date the BAA ends, if it does.")] = None,
    document: Annotated[Path | None, typer.Option(help="The signed BAA file; only its SHA-256 is stored.")] = None,
    document_sha256: Annotated[str | None, typer.Option(help="SHA-256 of the signed BAA, instead of --document.")] = None,
    covered_entity: Annotated[bool, typer.Option(help="The host is run by the covered entity itself (no BAA needed).")] = False,
) -> None:
    """Record a vendor and its BAA (signature date, expiry, document hash)."""
    rt = runtime(ctx)
    tz = rt.settings.center.timezone
    digest = (document_sha256 or "").lower()
    if document is not None:
        if not document.is_file():
            raise InputError(f"BAA document {document} not found")
        digest = hashlib.sha256(document.read_bytes()).hexdigest()
    v = vendors.add(rt.engine, rt.ledger, name=name, host=host,
                    baa_signed_at=local_time(baa_signed, tz) if baa_signed else None,
                    baa_expires_at=local_time(baa_expires, tz) if baa_expires else None,
                    document_sha256=digest, operated_by_covered_entity=covered_entity, actor=act(ctx, Action.VENDORS_MANAGE))
    status = vendors.baa_status(v, utcnow())
    out.print(f"vendor {v.id} {v.name} ({v.host}): {'BAA in force' if status.in_force else status.reason}", markup=False)


@vendors_app.command("list")
def list_cmd(ctx: typer.Context, fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text") -> None:
    """Vendors, their BAA dates and whether the BAA is in force now."""
    rt = runtime(ctx)
    tz = rt.settings.center.timezone
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for v in vendors.list_vendors(rt.engine):
        st = vendors.baa_status(v, now)
        rows.append({"id": v.id, "name": v.name, "host": v.host, "covered_entity": v.operated_by_covered_entity,
                     "baa_signed": display_time(v.baa_signed_at, tz), "baa_expires": display_time(v.baa_expires_at, tz),
                     "expired": display_time(v.expired_at, tz), "document_sha256": v.document_sha256,
                     "in_force": st.in_force or v.operated_by_covered_entity, "relay": v.host == rt.settings.smtp.host.lower()})
    if fmt == "json":
        print_json(rows)
        return
    t = Table()
    for col in ("id", "name", "host", "BAA signed", "expires", "in force", "document"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), r["name"], r["host"] + (" (relay)" if r["relay"] else ""), r["baa_signed"],
                  r["expired"] or r["baa_expires"], "yes" if r["in_force"] else "NO", r["document_sha256"][:12])
    out.print(t)


@vendors_app.command("expire")
def expire(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Vendor name.")]) -> None:
    """Mark a vendor's BAA as ended now; campaigns through it stop passing preflight (BAA-1)."""
    rt = runtime(ctx)
    v = vendors.expire(rt.engine, rt.ledger, name, actor=act(ctx, Action.VENDORS_MANAGE))
    out.print(f"vendor {v.id} {v.name}: BAA no longer in force", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(vendors_app, name="vendors")
