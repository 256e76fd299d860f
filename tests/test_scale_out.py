"""Several sender processes on one campaign (issue 20): leases, not a per-campaign lock.

1. Three `mailer campaign send` processes on one campaign against a counting STARTTLS
   sink (20,000 recipients on PostgreSQL, 3,000 on SQLite); one is killed with SIGKILL
   mid-run and started again. Every recipient ends sent exactly once or uncertain, the
   uncertain rows are the killed process's in-flight rows only (at most its window), the
   global rate limit held at the sink, and the ledger verifies.
2. A manual `campaign send` started while a worker sends the same campaign: no row of the
   worker's becomes uncertain, nobody gets two messages.
3. `campaign send --processes 2` adds up its children's summaries.

No timing assertions on speed: the rate check is an upper bound measured at the sink.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer import approvals, campaigns
from mailer.models import Delivery
from mailer.store import deliveries as dq
from tests.conftest import ROOT
from tests.helpers_accounts import token
from tests.helpers_workflow import write_config
from tests.test_send_support import (
    CountingHandler,
    as_sink,
    bulk_contacts,
    newsletter,
    start_server,
    tls_server_context,
)

MAILER = str(Path(sys.executable).with_name("mailer"))
WINDOW = 32
RATE = 400.0  # messages a second for the whole campaign, whatever the number of senders


class TimedHandler(CountingHandler):
    """Counts at the sink: when each message arrived and its Message-ID."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(keep_data=False, **kw)
        self.arrivals: list[float] = []
        self.message_ids: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        head = data[:4096].split(b"\r\n\r\n", 1)[0]
        mid = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                    if line.lower().startswith(b"message-id:")), "")
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.message_ids.append(mid)
        return await super().handle_DATA(server, session, envelope)


def hold_until_senders(handler: TimedHandler, rt: Any, cid: int, k: int, *, after: int = 0) -> None:
    """The sink answers DATA only once K senders hold a lease on the campaign (from message
    AFTER on): no race with a process that takes a second or two to start."""
    import asyncio

    from mailer.store import leases

    real = handler.handle_DATA
    seen = [False]

    async def gated(server: Any, session: Any, envelope: Any) -> str:
        waited = 0.0
        while handler.count >= after and not seen[0] and waited < 120:
            if len(leases.live_owners(rt.engine, cid)) >= k:
                seen[0] = True
                break
            await asyncio.sleep(0.05)
            waited += 0.05
        return await real(server, session, envelope)

    handler.handle_DATA = gated  # type: ignore[method-assign]


def wait_for(predicate: Any, what: str, timeout: float = 600.0) -> None:
    ev = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        ev.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def max_in_window(times: list[float], width: float) -> int:
    """The most arrivals in any window of WIDTH seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def _campaign(runtime_factory: Any, certs: Any, tmp_path: Path, n: int, **limits: Any) -> tuple[Any, Any, Any, Path, dict[str, str]]:
    handler = TimedHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs), require_starttls=True)
    rt = runtime_factory(as_sink(handler, port, certs, controller), limits={"claim_batch": WINDOW, **limits},
                         smtp={"connections": 4})
    bulk_contacts(rt, n, tmp_path)
    c = newsletter(rt)
    campaigns.submit(rt, c.id, actor="marketer")
    approvals.approve(rt, c.id, reviewer="reviewer")
    cfg = write_config(rt, tmp_path / "mailer.toml")
    env = {**os.environ, "COLUMNS": "120", "MAILER_TOKEN": token(rt, "marketer", "marketer")}
    return handler, controller, rt, cfg, env | {"_campaign": str(c.id)}


def _send(cfg: Path, env: dict[str, str], campaign_id: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([MAILER, "--config", str(cfg), "campaign", "send", str(campaign_id), "--processes", "1",
                             "--format", "json", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.mark.slow
def test_three_senders_one_killed_nobody_twice_limits_held(runtime_factory: Any, certs: Any, tmp_path: Path,
                                                           db_url: str) -> None:
    pg = db_url.startswith("postgresql")
    n = int(os.environ.get("MAILER_SCALE_N", "20000" if pg else "3000"))
    handler, controller, rt, cfg, env = _campaign(runtime_factory, certs, tmp_path, n, messages_per_second=RATE)
    cid = int(env.pop("_campaign"))
    try:
        procs = [_send(cfg, env, cid) for _ in range(3)]
        victim = procs[1]
        wait_for(lambda: handler.count >= n // 3 or victim.poll() is not None, "a third of the campaign sent")
        assert victim.poll() is None, victim.communicate()[1].decode()[-2000:]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        again = _send(cfg, env, cid)  # the killed sender started again, on the same machine
        results = [p.communicate(timeout=900) for p in (procs[0], procs[2], again)]
        codes = [p.returncode for p in (procs[0], procs[2], again)]
    finally:
        controller.stop()
    counts = dq.counts(rt.engine, cid)
    uncertain = counts.get(dq.UNCERTAIN, 0)
    assert set(counts) <= {dq.SENT, dq.UNCERTAIN}, counts
    assert sum(counts.values()) == n
    assert uncertain <= WINDOW  # at most the killed sender's in-flight window
    for (stdout, stderr), code in zip(results, codes, strict=True):
        assert code in (0, 1), stderr.decode()[-2000:]
        report = json.loads(stdout)
        assert report["totals"].get(dq.SENT, 0) + report["totals"].get(dq.UNCERTAIN, 0) <= n  # the campaign's totals
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        rows = conn.execute(select(t.c.message_id, t.c.status, t.c.worker).where(t.c.campaign_id == cid)).all()
    # only the killed process's rows are uncertain: its owner id starts with its pid
    assert all(r.worker.startswith(f"{victim.pid}.") for r in rows if r.status == dq.UNCERTAIN)
    received = Counter(handler.message_ids)
    assert not [m for m, k in received.items() if k > 1], "a Message-ID reached the sink twice"
    sent = [r.message_id for r in rows if r.status == dq.SENT]
    assert all(received[m] == 1 for m in sent)  # everything recorded as sent arrived exactly once
    assert len(handler.message_ids) <= len(sent) + uncertain
    # the campaign-wide pace held at the sink, three senders or not
    # (2 s windows: arrival times carry the sink's own queueing, a few ms either way)
    assert max_in_window(handler.arrivals, 2.0) <= RATE * 2 * 1.05 + 8, max_in_window(handler.arrivals, 2.0)
    span = max(handler.arrivals) - min(handler.arrivals)
    assert (len(handler.arrivals) - 1) / span <= RATE * 1.02
    assert rt.ledger.verify().ok
    assert campaigns.get(rt, cid).status == "done"


def test_a_manual_send_beside_a_worker_leaves_the_workers_rows_alone(runtime_factory: Any, certs: Any,
                                                                     tmp_path: Path) -> None:
    """The worker sends (paced by the rate limit); a manual `campaign send` of the
    same campaign starts meanwhile. No row becomes uncertain, nobody gets two messages."""
    from mailer import scheduler

    n = 300
    # paced (~7 s), and held after 10 messages until the manual sender is up: it starts mid-way
    handler, controller, rt, cfg, env = _campaign(runtime_factory, certs, tmp_path, n, messages_per_second=40.0)
    cid = int(env.pop("_campaign"))
    hold_until_senders(handler, rt, cid, 2, after=10)
    w = scheduler.Worker(rt, name="worker-test")
    with rt.engine.begin() as conn:  # as if the schedule had fired
        conn.execute(campaigns.Campaign.__table__.update().where(campaigns.Campaign.__table__.c.id == cid)
                     .values(status="scheduled"))
    thread = threading.Thread(target=w.run_campaign, args=(cid,))
    try:
        thread.start()
        wait_for(lambda: handler.count >= 10, "the worker to be sending")
        manual = subprocess.run([MAILER, "--config", str(cfg), "campaign", "send", str(cid), "--processes", "1",
                                 "--format", "json"], cwd=ROOT, env=env, capture_output=True, timeout=300)
        thread.join(300)
    finally:
        controller.stop()
    assert manual.returncode == 0, manual.stderr.decode()[-2000:]
    report = json.loads(manual.stdout)
    assert report["this_run"]["sent"] > 0 and report["this_run"]["uncertain"] == 0
    assert dq.counts(rt.engine, cid) == {dq.SENT: n}
    assert not [e for e in rt.ledger.rows() if e.kind == "send" and e.outcome == "uncertain"]
    received = Counter(handler.message_ids)
    assert len(received) == n and max(received.values()) == 1
    assert rt.ledger.verify().ok
    assert campaigns.get(rt, cid).status == "done"


def test_processes_option_adds_up_its_children(runtime_factory: Any, certs: Any, tmp_path: Path) -> None:
    n = 300
    handler, controller, rt, cfg, env = _campaign(runtime_factory, certs, tmp_path, n)
    cid = int(env.pop("_campaign"))
    try:
        got = subprocess.run([MAILER, "--config", str(cfg), "campaign", "send", str(cid), "--processes", "2",
                              "--format", "json"], cwd=ROOT, env=env, capture_output=True, timeout=300)
    finally:
        controller.stop()
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert b"2 sender processes" in got.stderr
    report = json.loads(got.stdout)
    assert report["this_run"]["sent"] == n and report["totals"] == {dq.SENT: n}
    assert len(set(handler.message_ids)) == len(handler.message_ids) == n
    assert rt.ledger.verify().ok


def test_worker_with_two_sender_processes(runtime_factory: Any, certs: Any, tmp_path: Path) -> None:
    """`mailer worker --processes 2`: the worker sends and one spawned process beside it."""
    from mailer import scheduler

    n = 300
    handler, controller, rt, cfg, env = _campaign(runtime_factory, certs, tmp_path, n)
    cid = int(env.pop("_campaign"))
    hold_until_senders(handler, rt, cid, 2)  # the spawned sender is up before the worker is done alone
    with rt.engine.begin() as conn:  # as if the schedule had fired
        conn.execute(campaigns.Campaign.__table__.update().where(campaigns.Campaign.__table__.c.id == cid)
                     .values(status="scheduled"))
    try:
        scheduler.Worker(rt, name="worker-test", processes=2).run_campaign(cid)
    finally:
        controller.stop()
    assert dq.counts(rt.engine, cid) == {dq.SENT: n}
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        owners = {r[0] for r in conn.execute(select(t.c.worker).where(t.c.campaign_id == cid))}
    assert len(owners) == 2  # both processes sent
    assert len(set(handler.message_ids)) == len(handler.message_ids) == n
    assert rt.ledger.verify().ok
    assert campaigns.get(rt, cid).status == "done"


def test_processes_parent_settles_a_child_killed_mid_run(runtime_factory: Any, certs: Any, tmp_path: Path) -> None:
    """`campaign send --processes 3`, one child SIGKILLed: the others finish the campaign, the
    parent reports the dead child's in-flight rows uncertain (only those) and exits 1."""
    n = 1500
    handler, controller, rt, cfg, env = _campaign(runtime_factory, certs, tmp_path, n, messages_per_second=150.0)
    cid = int(env.pop("_campaign"))
    hold_until_senders(handler, rt, cid, 3)
    try:
        parent = subprocess.Popen([MAILER, "--config", str(cfg), "campaign", "send", str(cid), "--processes", "3",
                                   "--format", "json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        assert parent.stderr is not None
        line = parent.stderr.readline().decode()
        assert "3 sender processes: pids" in line, line
        pids = [int(p) for p in line.split("pids", 1)[1].split()]
        wait_for(lambda: handler.count >= n // 4, "a quarter of the campaign sent")
        os.kill(pids[0], signal.SIGKILL)
        out, errs = parent.communicate(timeout=600)
    finally:
        controller.stop()
    counts = dq.counts(rt.engine, cid)
    assert set(counts) <= {dq.SENT, dq.UNCERTAIN} and sum(counts.values()) == n, counts
    assert counts.get(dq.UNCERTAIN, 0) <= WINDOW
    assert parent.returncode == (1 if counts.get(dq.UNCERTAIN) else 0), errs.decode()[-2000:]
    report = json.loads(out)
    assert report["totals"] == counts
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        rows = conn.execute(select(t.c.status, t.c.worker).where(t.c.campaign_id == cid)).all()
    assert all(r.worker.startswith(f"{pids[0]}.") for r in rows if r.status == dq.UNCERTAIN)
    assert len(set(handler.message_ids)) == len(handler.message_ids)
    assert rt.ledger.verify().ok
    assert campaigns.get(rt, cid).status == "done"
