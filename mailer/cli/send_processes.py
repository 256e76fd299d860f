"""`campaign send --processes N`: N sender processes on one campaign, one summary (issue 20).

The event loop of one sender is busy ~90% of the time at full speed; the second core is
the lever. Each child is an ordinary `mailer campaign send ID --processes 1 --format json`
under its own lease (mailer.store.leases), so the children never send a recipient twice
and a child that dies leaves only its own in-flight rows `uncertain`. The parent adds up
their summaries; the campaign totals are read from the database as usual.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from mailer.pipeline import Summary
from mailer.send_fanout import auto_processes, rows_left
from mailer.send_fanout import merge as add

__all__ = ["auto_processes", "child_command", "merge", "rows_left", "run_children"]

_CHILD = ("-c", "from mailer.cli.entry import main; main()")


def child_command(campaign_id: int, config: Path | None) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if config is not None:
        env["MAILER_CONFIG"] = str(Path(config).resolve())
    return [sys.executable, *_CHILD, "campaign", "send", str(campaign_id), "--processes", "1",
            "--format", "json"], env


def run_children(campaign_id: int, n: int, config: Path | None,
                 on_start: Any = None) -> tuple[list[dict[str, Any]], list[int]]:
    """Start N senders, forward SIGINT/SIGTERM to them, wait. Returns their JSON reports and exit codes."""
    cmd, env = child_command(campaign_id, config)
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)  # noqa: S603
             for _ in range(n)]
    if on_start is not None:
        on_start([p.pid for p in procs])
    forwarded: list[int] = []

    def forward(num: int, _frame: Any) -> None:
        forwarded.append(num)
        for p in procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, num)
                except ProcessLookupError:
                    pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        outs = [p.communicate()[0] for p in procs]
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    reports: list[dict[str, Any]] = []
    for raw in outs:
        try:
            got = json.loads(raw.decode() or "null")
        except ValueError:
            got = None
        if isinstance(got, dict):
            reports.append(got)
    return reports, [p.returncode for p in procs]


def from_report(campaign_id: int, run: int, r: dict[str, Any]) -> Summary:
    """A child's `--format json` report back as the Summary it printed."""
    t = r.get("this_run") or {}
    paused = r.get("paused") or {}
    return Summary(campaign_id, run, sent=int(t.get("sent", 0)), failed=int(t.get("failed", 0)),
                   uncertain=int(t.get("uncertain", 0)), released=int(t.get("not_attempted", 0)),
                   deferred=int(t.get("retried_attempts", 0)), bounced=int(t.get("bounced", 0)),
                   elapsed=float(t.get("elapsed_seconds", 0.0)),
                   skipped={k: int(v) for k, v in (t.get("skipped") or {}).items()},
                   failures={k: int(v) for k, v in (r.get("failure_reasons") or {}).items()},
                   paused=paused.get("reason", ""), paused_rules=tuple(paused.get("rules", ())),
                   interrupted=r.get("interrupted") or "")


def merge(campaign_id: int, run: int, reports: list[dict[str, Any]]) -> Summary:
    """One summary for the run: the children's reports added up (send_fanout.merge)."""
    s = Summary(campaign_id, run)
    for r in reports:
        add(s, from_report(campaign_id, run, r))
    return s
