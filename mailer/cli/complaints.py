"""`mailer complaints ...`: complaints and privacy concerns (CMP-1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mailer.accounts.permissions import Action
from mailer.cli.common import new_app, out, print_json, runtime, signed_in
from mailer.compliance import complaints
from mailer.compliance.common import parse_day
from mailer.private_files import write_private

complaints_app = new_app("Complaints and privacy concerns: intake, status, resolution (CMP-1). "
                         "The text is stored encrypted; lists show ids, dates and categories only.")
Fmt = Annotated[str, typer.Option("--format", help="text or json.")]


def _line(d: dict) -> str:  # type: ignore[type-arg]
    return (f"complaint {d['id']} ({d['status']}): {d['category']} by {d['channel']} on {d['received'][:10]}"
            + (f", campaign {d['campaign']}" if d["campaign"] else "")
            + (f", contact {d['contact_hash'][:12]}" if d["contact_hash"] else ""))


@complaints_app.command("record")
def record(
    ctx: typer.Context,
    received: Annotated[str, typer.Option("--received", help="Date received, YYYY-MM-DD.")],
    channel: Annotated[str, typer.Option("--channel", help=f"One of {', '.join(complaints.CHANNELS)}.")],
    category: Annotated[str, typer.Option("--category", help=f"One of {', '.join(complaints.CATEGORIES)}.")],
    text: Annotated[str, typer.Option("--text", help="What the person reported (stored encrypted).")],
    contact: Annotated[int | None, typer.Option("--contact", help="The patient's contact id (linked by its lookup hash).")] = None,
    email: Annotated[str | None, typer.Option("--email", help="Or their address: only its lookup hash is kept.")] = None,
    campaign: Annotated[int | None, typer.Option("--campaign", help="The campaign it concerns, if any.")] = None,
    fmt: Fmt = "text",
) -> None:
    """Record a complaint or privacy concern."""
    p = signed_in(ctx, Action.COMPLAINTS_RECORD)
    c = complaints.record(runtime(ctx), p, received=parse_day(received, "--received"), channel=channel,
                          category=category, text=text, contact_id=contact, email=email, campaign_id=campaign)
    if fmt == "json":
        print_json(c.as_dict())
    else:
        out.print(_line(c.as_dict()), markup=False)


@complaints_app.command("status")
def status(
    ctx: typer.Context,
    complaint_id: Annotated[int, typer.Argument(help="Complaint id.")],
    new: Annotated[str, typer.Argument(help="investigating or resolved.")],
    resolution: Annotated[str, typer.Option("--resolution", help="What was done (required to resolve; encrypted).")] = "",
    fmt: Fmt = "text",
) -> None:
    """Move a complaint to investigating or resolved (a reviewer)."""
    p = signed_in(ctx, Action.COMPLAINTS_RESOLVE)
    c = complaints.set_status(runtime(ctx), p, complaint_id, new, resolution=resolution)
    if fmt == "json":
        print_json(c.as_dict())
    else:
        out.print(_line(c.as_dict()), markup=False)


@complaints_app.command("show")
def show(
    ctx: typer.Context,
    complaint_id: Annotated[int, typer.Argument(help="Complaint id.")],
    out_file: Annotated[Path, typer.Option("--out", help="JSON file for the complaint with its text and "
                                                         "resolution (created 0600; it may hold PHI).")],
) -> None:
    """One complaint with its text and resolution, written to a private file for the reviewer
    (never to the terminal, whose scrollback and logs are not private); the view is recorded."""
    p = signed_in(ctx, Action.COMPLAINTS_RESOLVE)
    d = complaints.show(runtime(ctx), p, complaint_id)
    write_private(out_file, (json.dumps(d, indent=2, ensure_ascii=False) + "\n").encode())
    out.print(f"complaint {complaint_id}: written to {out_file} (0600); the view is recorded in the ledger",
              markup=False)


@complaints_app.command("list")
def list_cmd(ctx: typer.Context, open_only: Annotated[bool, typer.Option("--open", help="Only unresolved ones.")] = False,
             fmt: Fmt = "text") -> None:
    """Complaints with status and age (no text)."""
    p = signed_in(ctx, Action.COMPLIANCE_READ)
    rows = [c.as_dict() for c in complaints.list_complaints(runtime(ctx), p, open_only=open_only)]
    if fmt == "json":
        print_json(rows)
        return
    t = Table()
    for col in ("id", "received", "channel", "category", "campaign", "contact", "status", "age (days)"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), r["received"][:10], r["channel"], r["category"], str(r["campaign"] or ""),
                  (r["contact_hash"] or "")[:12], r["status"], str(r["age_days"]))
    out.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(complaints_app, name="complaints")
