"""`mailer campaign ...`: create, send and follow campaigns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from mailer import campaigns, sending
from mailer.cli.common import actor, new_app, out, print_json, runtime
from mailer.models import Campaign
from mailer.store import deliveries as dq

campaign_app = new_app("Campaigns: create, check, send and follow them.")


@campaign_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="A name for people (no PHI).")],
    template: Annotated[Path, typer.Option(help="Template folder, e.g. templates/newsletter.")],
    segment: Annotated[Path, typer.Option(help="Segment file, e.g. segments/newsletter.toml.")],
    purpose: Annotated[str | None, typer.Option(help="Defaults to the template's purpose.")] = None,
    third_party: Annotated[str | None, typer.Option(help="Sponsor of a paid campaign (MKT-3).")] = None,
) -> None:
    """Create a draft campaign bound to the template and segment content hashes."""
    rt = runtime(ctx)
    from mailer.templates import load_meta

    purpose = purpose or load_meta(template)["purpose"]
    c = campaigns.create(rt, name=name, purpose=purpose, template=template, segment=segment,
                         author=actor(ctx), third_party=third_party)
    out.print(f"campaign {c.id} created (draft): template {c.template_hash[:12]}, segment {c.segment_hash[:12]}")


@campaign_app.command("freeze")
def freeze(ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(help="Campaign id.")]) -> None:
    """Evaluate the segment now and freeze the audience; its hash goes to the ledger."""
    rt = runtime(ctx)
    p = sending.prepare(rt, campaigns.get(rt, campaign_id), actor=actor(ctx))
    note = f", matched of {p.counts.considered} considered" if p.counts else " (already frozen)"
    out.print(f"campaign {campaign_id}: audience of {p.frozen} recipient(s){note}")


@campaign_app.command("status")
def status(ctx: typer.Context,
           campaign_id: Annotated[int | None, typer.Argument(help="Campaign id; all campaigns when omitted.")] = None,
           fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text") -> None:
    """Campaign state and per-recipient outcome counts."""
    rt = runtime(ctx)
    t = Campaign.__table__  # type: ignore[attr-defined]
    q = select(t).order_by(t.c.id)
    if campaign_id is not None:
        q = q.where(t.c.id == campaign_id)
    with rt.engine.connect() as conn:
        rows = conn.execute(q).all()
    data = [{"id": r.id, "name": r.name, "purpose": r.purpose, "status": r.status, "reason": r.status_reason,
             "run": r.run, "recipients": dq.counts(rt.engine, r.id)} for r in rows]
    if fmt == "json":
        print_json(data)
        return
    table = Table()
    for col in ("id", "name", "purpose", "status", "recipients"):
        table.add_column(col)
    for d in data:
        table.add_row(str(d["id"]), d["name"], d["purpose"], d["status"] + (f" ({d['reason']})" if d["reason"] else ""),
                      ", ".join(f"{k} {v}" for k, v in sorted(d["recipients"].items())))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
