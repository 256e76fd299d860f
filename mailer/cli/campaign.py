"""`mailer campaign ...`: create, send and follow campaigns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from mailer import campaigns
from mailer.cli.common import actor, new_app, out, print_json, runtime
from mailer.errors import EXIT_FAILURE, EXIT_REFUSED
from mailer.models import Campaign
from mailer.pipeline import Summary
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
    p = campaigns.prepare(rt, campaigns.get(rt, campaign_id), actor=actor(ctx))
    note = f", matched of {p.counts.considered} considered" if p.counts else " (already frozen)"
    out.print(f"campaign {campaign_id}: audience of {p.frozen} recipient(s){note}")


def summary_table(s: Summary) -> Table:
    t = Table(title=f"campaign {s.campaign_id} run {s.run}")
    t.add_column("outcome")
    t.add_column("count", justify="right")
    t.add_column("rule IDs")
    t.add_row("sent", str(s.sent), "")
    for rules, n in sorted(s.skipped.items()):
        t.add_row("skipped", str(n), rules)
    t.add_row("failed", str(s.failed), "")
    if s.uncertain:
        t.add_row("uncertain", str(s.uncertain), "not resent: `campaign resend --uncertain`")
    if s.released:
        t.add_row("not attempted", str(s.released), "back in the queue")
    return t


def run_send(ctx: typer.Context, campaign_id: int, statuses: tuple[str, ...] = (dq.PENDING,), transport: object = None) -> Summary:
    rt = runtime(ctx)
    with Progress(TextColumn("[bold]sending"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=out, transient=True,
                  disable=not out.is_terminal) as bar:
        task = bar.add_task("send", total=None, detail="")

        def progress(s: Summary) -> None:
            done = s.sent + s.failed + s.skipped_total
            if bar.tasks[task].total is None:
                counts = dq.counts(rt.engine, campaign_id)
                bar.update(task, total=sum(counts.values()))
            bar.update(task, completed=done,
                       detail=f"sent {s.sent} skipped {s.skipped_total} failed {s.failed} ({s.rate:.0f}/s)")

        return asyncio.run(campaigns.send(rt, campaign_id, actor=actor(ctx), progress=progress,
                                          statuses=statuses, transport=transport))


@campaign_app.command("send")
def send(ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(help="Campaign id.")]) -> None:
    """Send (or resume) a campaign: one message per recipient over verified TLS."""
    s = run_send(ctx, campaign_id)
    out.print(summary_table(s))
    out.print(f"{s.sent} sent in {s.elapsed:.1f}s ({s.rate:.0f} msgs/s)")
    if s.paused:
        out.print(f"PAUSED [{', '.join(s.paused_rules)}]: {s.paused}", markup=False)
        raise typer.Exit(EXIT_REFUSED if any(r.startswith("TLS") for r in s.paused_rules) else EXIT_FAILURE)


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
