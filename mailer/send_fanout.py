"""The worker's `--processes N`: extra sender processes for one campaign run (issue 20).

The worker sends in its own process and starts N-1 more (spawned, so none inherits the
worker's database connections or scheduler threads). Each is an ordinary sender under
its own lease (mailer.store.leases); their summaries are added up for the worker's log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

from mailer.errors import MailerError
from mailer.pipeline import Summary
from mailer.store import deliveries as dq

PER_PROCESS = 5000  # the automatic count starts one more process per this many rows left


def auto_processes(left: int, cores: int | None = None) -> int:
    """Default `--processes`: the number of cores, but one per PER_PROCESS rows left (a
    process costs ~0.5 s to start; a small campaign is done sooner by one)."""
    import os

    n = cores or os.cpu_count() or 1
    return max(1, min(n, -(-left // PER_PROCESS)))


def rows_left(engine: Any, campaign_id: int, run: int) -> int:
    """Rows left to send; before the audience is frozen, the contacts there are (an upper bound)."""
    from sqlalchemy import text

    counts = dq.counts(engine, campaign_id, run)
    if counts:
        return counts.get(dq.PENDING, 0)
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM contact")).scalar() or 0)


def _child(settings: Any, campaign_id: int, actor: str, out: Any) -> None:
    from mailer import sending
    from mailer.runtime import Runtime

    rt = Runtime(settings)
    try:
        s = asyncio.run(sending.send(rt, campaign_id, actor=actor))
        out.put(dataclasses.asdict(s))
    except MailerError as err:  # refusals and state errors: the worker's own run reports them too
        out.put({"error": err.message})
    finally:
        rt.dispose()


def merge(into: Summary, other: Summary) -> Summary:
    """Add OTHER's counts to INTO (the first pause and interruption are kept)."""
    for name in ("sent", "failed", "deferred", "uncertain", "released", "bounced"):
        setattr(into, name, getattr(into, name) + getattr(other, name))
    for k, v in other.skipped.items():
        into.skipped[k] = into.skipped.get(k, 0) + v
    for k, v in other.failures.items():
        into.failures[k] = into.failures.get(k, 0) + v
    into.elapsed = max(into.elapsed, other.elapsed)
    if other.paused and not into.paused:
        into.paused, into.paused_rules = other.paused, other.paused_rules
    into.interrupted = into.interrupted or other.interrupted
    return into


def send_with_helpers(rt: Any, campaign_id: int, run: int, actor: str, extra: int,
                      own: Callable[[], Summary]) -> tuple[Summary, list[str]]:
    """Start EXTRA sender processes, run OWN here, wait for them; one summary and their errors."""
    settings = rt.settings
    ctx = multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(settings, campaign_id, actor, results), name=f"sender-{i + 1}")
             for i in range(extra)]
    for p in procs:
        p.start()
    try:
        summary = own()
    finally:
        for p in procs:
            p.join()
    errors: list[str] = []
    if any(p.exitcode for p in procs) and not summary.paused:  # a sender died: its in-flight rows are known now
        from mailer import sending

        summary.uncertain += sending.settle(rt, campaign_id, run, actor=actor)
    while True:
        try:
            got = results.get(timeout=0.5)
        except queue.Empty:
            break
        if "error" in got:
            errors.append(str(got["error"]))
            continue
        got["skipped"], got["failures"] = dict(got["skipped"]), dict(got["failures"])
        got["paused_rules"] = tuple(got["paused_rules"])
        merge(summary, Summary(**got))
    return summary, errors
