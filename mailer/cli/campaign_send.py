"""`mailer campaign send|resend|retry-failed ...`: deliver a campaign run, with a progress bar."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mailer import campaigns, sending
from mailer.accounts.permissions import Action
from mailer.cli import send_processes
from mailer.cli.campaign import campaign_app
from mailer.cli.common import act, err, out, print_json, runtime, state
from mailer.errors import EXIT_FAILURE, EXIT_REFUSED, InputError, StateError
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
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=out, transient=True, disable=not out.is_terminal) as bar:
        task = bar.add_task("checking gates and freezing the audience", total=None, detail="")

        def progress(s: Summary) -> None:
            if bar.tasks[task].total is None:
                counts = dq.counts(rt.engine, campaign_id, run)
                bar.update(task, description="dry run" if dry_run else "sending",
                           total=s.done + sum(counts.get(st, 0) for st in (*statuses, dq.CLAIMED)))
            bar.update(task, completed=s.done,
                       detail=f"sent {s.sent} skipped {s.skipped_total} failed {s.failed} ({s.rate:.0f}/s)")

        return asyncio.run(_send_with_signals(rt, campaign_id, actor=act(ctx, Action.CAMPAIGN_SEND), progress=progress,
                                              statuses=statuses, transport=transport, dry_run=dry_run))


async def _send_with_signals(rt: Any, campaign_id: int, **kwargs: Any) -> Summary:
    """Ctrl-C or SIGTERM: the first stops claiming and lets in-flight messages finish
    (each bounded by smtp.timeout) and be recorded; a second exits at once (the crash
    path: rows still claimed become `uncertain` and are never resent without an operator)."""
    loop = asyncio.get_running_loop()
    senders: list[Any] = []
    caught: list[str] = []

    def on_signal(name: str) -> None:
        if caught:
            err.print(f"second {name}: exiting now; claimed rows will show as uncertain", markup=False)
            os._exit(128 + _SIGNALS[name])
        caught.append(name)
        err.print(f"{name}: stopping after the messages in flight (press Ctrl-C again to exit now)", markup=False)
        for sender in senders:
            sender.interrupt(name)

    installed = []
    for name, num in _SIGNALS.items():
        try:
            loop.add_signal_handler(num, on_signal, name)
            installed.append(num)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            pass
    def got_sender(sender: Any) -> None:
        senders.append(sender)
        if caught:  # Ctrl-C while the gates were checked: stop before claiming anyone
            sender.interrupt(caught[0])

    try:
        summary = await sending.send(rt, campaign_id, on_sender=got_sender, **kwargs)
    finally:
        for num in installed:
            loop.remove_signal_handler(num)
    if caught and not summary.interrupted:  # the signal came before the run started
        summary.interrupted = caught[0]
    return summary


_SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


def campaign_totals(rt: Any, campaign_id: int) -> dict[str, int]:
    """Outcome counts of the campaign's current run, across every resume of it."""
    c = campaigns.get(rt, campaign_id)
    return dq.counts(rt.engine, campaign_id, c.run)


def _report(ctx: typer.Context, s: Summary, fmt: str = "text") -> None:
    """The summary, the campaign's totals, grouped failure reasons; the exit code says
    whether everything was delivered: 0 all done, 1 failures/uncertain/paused, 3 a TLS
    rule refused the relay, 130/143 interrupted."""
    rt = runtime(ctx)
    totals = {} if s.dry_run else campaign_totals(rt, s.campaign_id)
    c = campaigns.get(rt, s.campaign_id)
    status = campaigns.display_status(c.status, c.status_reason, totals)
    code = 0
    if s.interrupted:
        code = 128 + _SIGNALS.get(s.interrupted, signal.SIGINT)
    elif s.paused:
        code = EXIT_REFUSED if any(r.startswith("TLS") for r in s.paused_rules) else EXIT_FAILURE
    elif not s.dry_run and (s.failed or totals.get(dq.FAILED) or totals.get(dq.UNCERTAIN)):
        code = EXIT_FAILURE
    if fmt == "json":
        print_json({"campaign": s.campaign_id, "run": s.run, "dry_run": s.dry_run, "status": status,
                    "this_run": {"sent": s.sent, "failed": s.failed, "bounced": s.bounced, "skipped": s.skipped, "uncertain": s.uncertain,
                                 "not_attempted": s.released, "retried_attempts": s.deferred,
                                 "elapsed_seconds": round(s.elapsed, 3)},
                    "failure_reasons": s.failures, "totals": totals,
                    "paused": {"reason": s.paused, "rules": list(s.paused_rules)} if s.paused else None,
                    "interrupted": s.interrupted or None, "exit_code": code})
        if code:
            raise typer.Exit(code)
        return
    if s.done or s.uncertain or s.released or s.dry_run or not s.paused:
        out.print(summary_table(s))
    if s.dry_run:
        out.print(f"{s.sent} message(s) written; nothing was sent or recorded as sent")
        return
    if s.done or not s.paused:
        out.print(f"{s.sent} sent in {s.elapsed:.1f}s ({s.rate:.0f} msgs/s)")
    if totals:
        order = (dq.SENT, dq.FAILED, dq.SKIPPED, dq.UNCERTAIN, dq.PENDING, dq.CLAIMED)
        parts = [f"{totals[k]} {k}" for k in order if totals.get(k)]
        out.print(f"campaign {s.campaign_id} totals, all runs: {', '.join(parts) or 'no recipients'}; "
                  f"status: {status}", markup=False)
    if s.failures:
        out.print(f"failed ({s.failed}):", markup=False)
        for reason, n in sorted(s.failures.items(), key=lambda kv: -kv[1]):
            out.print(f"  {n} x {reason}", markup=False)
    if s.interrupted:
        out.print(f"interrupted: {totals.get(dq.SENT, 0)} sent, {totals.get(dq.UNCERTAIN, 0) + totals.get(dq.CLAIMED, 0)} "
                  f"uncertain; resume with `mailer campaign send {s.campaign_id}`", markup=False)
    elif s.paused:
        rules = f" [{', '.join(s.paused_rules)}]" if s.paused_rules else ""
        out.print(f"PAUSED{rules}: {s.paused}", markup=False)
        if campaigns.stopped_by_run(c):
            out.print(f"nobody was claimed by this stop; after fixing it: mailer campaign send {s.campaign_id}",
                      markup=False)
    if totals.get(dq.UNCERTAIN):
        out.print(f"{totals[dq.UNCERTAIN]} uncertain: check the relay's log, then "
                  f"`mailer campaign resend {s.campaign_id} --uncertain`", markup=False)
    if code:
        raise typer.Exit(code)


@campaign_app.command("send")
def send(
    ctx: typer.Context,
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    dry_run: Annotated[Path | None, typer.Option(
        "--dry-run", help="Write one .eml per recipient into this folder instead of sending (they hold PHI).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    processes: Annotated[int | None, typer.Option(
        "--processes", min=1, max=64,
        help="Sender processes for this campaign on this machine (default: the number of cores, one per "
             "5,000 recipients left; 1 sends in this process).")] = None,
) -> None:
    """Send (or resume) a campaign: one message per recipient over verified TLS.

    Resuming sends only recipients never claimed; those claimed by a sender that died
    before recording them are reported as uncertain and not resent. Several senders
    (`--processes`, another `campaign send`, a worker) may send one campaign at once:
    each claims under its own lease, nobody gets a message twice.
    """
    if dry_run is None:
        n = processes or send_processes.auto_processes(_left(ctx, campaign_id))
        if n > 1:
            _report(ctx, _send_in_processes(ctx, campaign_id, n), fmt)
            return
    _report(ctx, run_send(ctx, campaign_id, dry_run=dry_run), fmt)


def _left(ctx: typer.Context, campaign_id: int) -> int:
    rt = runtime(ctx)
    return send_processes.rows_left(rt.engine, campaign_id, campaigns.get(rt, campaign_id).run)


def _send_in_processes(ctx: typer.Context, campaign_id: int, n: int) -> Summary:
    """Gates and the audience freeze once here, then N children send (issue 20)."""
    from mailer import preflight

    rt = runtime(ctx)
    actor = act(ctx, Action.CAMPAIGN_SEND)
    campaign = campaigns.get(rt, campaign_id)
    if campaign.status in ("done", "cancelled"):
        raise StateError(f"campaign {campaign_id} is {campaign.status}",
                         hint="`campaign retry-failed` or `campaign resend --uncertain` pick up what is left")
    preflight.require(rt, campaign, actor=actor)
    sending.prepare_once(rt, campaign, actor=actor)
    rt.dispose()  # the children open their own connections
    reports, codes = send_processes.run_children(
        campaign_id, n, state(ctx).config,
        on_start=lambda pids: err.print(f"{n} sender processes: pids {' '.join(map(str, pids))}", markup=False))
    summary = send_processes.merge(campaign_id, campaign.run, reports)
    if len(reports) < n and not summary.paused:  # a child died: its in-flight rows are known now
        summary.uncertain += sending.settle(rt, campaign_id, campaign.run, actor=actor)
    if not reports:  # every child stopped before reporting (its error is on stderr)
        raise typer.Exit(max(codes) or EXIT_FAILURE)
    return summary


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
    _report(ctx, run_send(ctx, campaign_id, statuses=(dq.UNCERTAIN,)))


@campaign_app.command("retry-failed")
def retry_failed(ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(help="Campaign id.")]) -> None:
    """Send again to the recipients whose delivery failed, and only to them (suppressions still apply)."""
    _report(ctx, run_send(ctx, campaign_id, statuses=(dq.FAILED,)))
