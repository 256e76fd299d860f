"""`mailer campaign send ...`: deliver a campaign run, with a progress bar and a summary."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mailer import sending
from mailer.cli.campaign import campaign_app
from mailer.cli.common import actor, out, runtime
from mailer.errors import EXIT_FAILURE, EXIT_REFUSED
from mailer.pipeline import Summary
from mailer.store import deliveries as dq


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

        return asyncio.run(sending.send(rt, campaign_id, actor=actor(ctx), progress=progress,
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



def register(app: typer.Typer) -> None:
    """Commands join the `campaign` group that mailer.cli.campaign registers."""
