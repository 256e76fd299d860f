"""`mailer campaign send|resend|retry-failed ...`: deliver a campaign run, with a progress bar."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mailer import campaigns, sending
from mailer.accounts.permissions import Action
from mailer.cli.campaign import campaign_app
from mailer.cli.common import act, out, runtime
from mailer.errors import EXIT_FAILURE, EXIT_REFUSED, InputError
from mailer.pipeline import Summary
from mailer.store import deliveries as dq


def summary_table(s: Summary) -> Table:
    t = Table(title=f"campaign {s.campaign_id} run {s.run}" + (" (dry run)" if s.dry_run else ""))
    t.add_column("outcome")
    t.add_column("count", justify="right")
    t.add_column("rule IDs")
    t.add_row("written as .eml" if s.dry_run else "sent", str(s.sent), "")
    for rules, n in sorted(s.skipped.items()):
        t.add_row("skipped", str(n), rules)
    if not s.dry_run:
        t.add_row("failed", str(s.failed), "")
        if s.bounced:
            t.add_row("  of which address unknown", str(s.bounced), "BNC-1 (suppressed)")
        if s.deferred:
            t.add_row("retried attempts", str(s.deferred), "")
    if s.uncertain:
        t.add_row("uncertain", str(s.uncertain), "not resent: `campaign resend --uncertain`")
    if s.released:
        t.add_row("not attempted", str(s.released), "back in the queue")
    return t


def run_send(ctx: typer.Context, campaign_id: int, statuses: tuple[str, ...] = (dq.PENDING,),
             transport: object = None, dry_run: Path | None = None) -> Summary:
    rt = runtime(ctx)
    run = campaigns.get(rt, campaign_id).run
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=out, transient=True,
                  disable=not out.is_terminal) as bar:
        task = bar.add_task("dry run" if dry_run else "sending", total=None, detail="")

        def progress(s: Summary) -> None:
            if bar.tasks[task].total is None:
                counts = dq.counts(rt.engine, campaign_id, run)
                bar.update(task, total=s.done + sum(counts.get(st, 0) for st in (*statuses, dq.CLAIMED)))
            bar.update(task, completed=s.done,
                       detail=f"sent {s.sent} skipped {s.skipped_total} failed {s.failed} ({s.rate:.0f}/s)")

        return asyncio.run(sending.send(rt, campaign_id, actor=act(ctx, Action.CAMPAIGN_SEND), progress=progress,
                                        statuses=statuses, transport=transport, dry_run=dry_run))


def _report(s: Summary) -> None:
    out.print(summary_table(s))
    if s.dry_run:
        out.print(f"{s.sent} message(s) written; nothing was sent or recorded as sent")
        return
    out.print(f"{s.sent} sent in {s.elapsed:.1f}s ({s.rate:.0f} msgs/s)")
    if s.paused:
        out.print(f"PAUSED [{', '.join(s.paused_rules)}]: {s.paused}", markup=False)
        raise typer.Exit(EXIT_REFUSED if any(r.startswith("TLS") for r in s.paused_rules) else EXIT_FAILURE)


@campaign_app.command("send")
def send(
    ctx: typer.Context,
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    dry_run: Annotated[Path | None, typer.Option(
        "--dry-run", help="Write one .eml per recipient into this folder instead of sending (they hold PHI).")] = None,
) -> None:
    """Send (or resume) a campaign: one message per recipient over verified TLS.

    Resuming sends only recipients never claimed; those claimed by a run that stopped
    before recording them are reported as uncertain and not resent.
    """
    _report(run_send(ctx, campaign_id, dry_run=dry_run))


@campaign_app.command("resend")
def resend(
    ctx: typer.Context,
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    uncertain: Annotated[bool, typer.Option(
        "--uncertain", help="Resend the recipients whose outcome is unknown (they may get the message twice).")] = False,
) -> None:
    """Resend recipients left uncertain by an interrupted run (same Message-ID, so receivers can de-duplicate)."""
    if not uncertain:
        raise InputError("say which recipients to resend", hint="pass --uncertain (failed ones: `campaign retry-failed`)")
    _report(run_send(ctx, campaign_id, statuses=(dq.UNCERTAIN,)))


@campaign_app.command("retry-failed")
def retry_failed(ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(help="Campaign id.")]) -> None:
    """Send again to the recipients whose delivery failed, and only to them (suppressions still apply)."""
    _report(run_send(ctx, campaign_id, statuses=(dq.FAILED,)))


def register(app: typer.Typer) -> None:
    """Commands join the `campaign` group that mailer.cli.campaign registers; `mailer dkim` prints the DNS record."""

    @app.command("dkim")
    def dkim_record(ctx: typer.Context) -> None:
        """Print the DKIM TXT record to publish for the key in the key file (STD-4)."""
        from mailer.dkim import dns_record

        rt = runtime(ctx)
        d = rt.settings.dkim
        pem = rt.keyring.dkim_private_pem
        if not pem:
            raise InputError("the key file holds no DKIM key", hint="create one with `mailer init --dkim`")
        name = f"{d.selector or '<selector>'}._domainkey.{d.domain or '<domain>'}"
        out.print(f"{name} TXT \"{dns_record(pem)}\"", markup=False)
