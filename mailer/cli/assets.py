"""`mailer assets ...`: patient testimonials, quotes, stories and images with consent (TST-1, TST-5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mailer.accounts.permissions import Action
from mailer.cli.common import new_app, out, print_json, runtime, signed_in
from mailer.compliance import assets
from mailer.compliance.common import parse_day
from mailer.models import utcnow

assets_app = new_app("Patient testimonials, quotes, stories and images, each with its written consent (TST-5). "
                     "Templates use them only as {{ asset('key') }}.")

Fmt = Annotated[str, typer.Option("--format", help="text or json.")]


def _show(info: assets.AssetInfo, fmt: str) -> None:
    d = info.as_dict(utcnow())
    if fmt == "json":
        print_json(d)
        return
    out.print(f"asset {d['key']} ({d['kind']}, contact {d['contact_id']}): consent for {', '.join(d['channels'])} "
              f"until {d['consent_expires']}; email: {d['email_status']}" + (f" ({d['reason']})" if d["reason"] else ""),
              markup=False)


@assets_app.command("register")
def register_cmd(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key templates use: {{ asset('KEY') }}. Never the patient's name.")],
    kind: Annotated[str, typer.Option("--kind", help=f"One of {', '.join(assets.KINDS)}.")],
    contact: Annotated[int, typer.Option("--contact", help="The patient's contact id.")],
    signed: Annotated[str, typer.Option("--signed", help="Date the consent was signed, YYYY-MM-DD.")],
    expires: Annotated[str, typer.Option("--expires", help="Date the consent ends, YYYY-MM-DD (it states how long).")],
    consent_document: Annotated[Path, typer.Option("--consent-document", help="The signed consent; its SHA-256 is kept.")],
    uses: Annotated[str, typer.Option("--uses", help="Exactly what may be used, as the consent says.")],
    channels: Annotated[str, typer.Option("--channels", help="Where it may appear: email, web, social (comma-separated).")] = "email",
    text: Annotated[str | None, typer.Option("--text", help="The exact words the patient approved (testimonial, quote, story).")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="The image file (image, before-after).")] = None,
    fmt: Fmt = "text",
) -> None:
    """Register an asset with its consent: content and terms stored encrypted, by hash in the ledger."""
    p = signed_in(ctx, Action.ASSETS_REGISTER)
    info = assets.register(runtime(ctx), p, key, kind=kind, contact_id=contact, channels=channels.split(","),
                           signed=parse_day(signed, "--signed"), expires=parse_day(expires, "--expires"),
                           consent_document=consent_document, uses=uses, text=text, file=file)
    _show(info, fmt)


@assets_app.command("revoke")
def revoke(ctx: typer.Context, key: Annotated[str, typer.Argument(help="Asset key.")], fmt: Fmt = "text") -> None:
    """Record the patient's written revocation: no unsent message uses the asset from now on."""
    p = signed_in(ctx, Action.ASSETS_REVOKE)
    _show(assets.revoke(runtime(ctx), p, key), fmt)


@assets_app.command("list")
def list_cmd(ctx: typer.Context, fmt: Fmt = "text") -> None:
    """Assets and whether their consent covers email now (ids and hashes, never the content)."""
    p = signed_in(ctx, Action.ASSETS_READ)
    now = utcnow()
    rows = [a.as_dict(now) for a in assets.list_assets(runtime(ctx), p)]
    if fmt == "json":
        print_json(rows)
        return
    t = Table()
    for col in ("key", "kind", "contact", "channels", "signed", "expires", "revoked", "email"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["key"], r["kind"], str(r["contact_id"]), ",".join(r["channels"]), (r["consent_signed"] or "")[:10],
                  (r["consent_expires"] or "")[:10], (r["revoked"] or "")[:10], r["email_status"])
    out.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(assets_app, name="assets")
