"""End to end with real processes: `mailer worker` subprocesses, the STARTTLS sink, HTTP unsubscribe.

1. Schedule a campaign one second ahead, run a worker, kill it (SIGKILL), start another:
   every recipient receives exactly one message, no earlier than the scheduled time.
2. A recurring newsletter: run 1, one recipient unsubscribes over HTTP (a real uvicorn
   server), run 2 skips them and the ledger names the rule (SPAM-5).

No timing assertions: the tests wait for states (with a generous ceiling) and check counts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import select

from mailer import campaigns, scheduler
from mailer.models import Delivery, utcnow
from mailer.web import create_app
from tests.helpers_workflow import approved, write_config

MAILER = str(Path(sys.executable).with_name("mailer"))


def wait_for(predicate, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    ev = threading.Event()
    waited = 0.0
    while waited < timeout:
        if predicate():
            return
        ev.wait(0.1)
        waited += 0.1
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def worker(cfg: Path, *, poll: float) -> Iterator[subprocess.Popen[str]]:
    """A `mailer worker` process; yields once it printed its ready line."""
    from tests.helpers_accounts import cli_env

    env = {**os.environ, "PYTHONUNBUFFERED": "1", **cli_env(cfg, "scheduler", "service")}  # a service account
    proc = subprocess.Popen([MAILER, "--config", str(cfg), "worker", "--poll", str(poll)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "worker ready" in line, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def deliveries(rt, campaign_id: int, run: int | None = None) -> list:  # type: ignore[no-untyped-def]
    t = Delivery.__table__
    q = select(t.c.contact_id, t.c.status, t.c.run).where(t.c.campaign_id == campaign_id)
    if run is not None:
        q = q.where(t.c.run == run)
    with rt.engine.connect() as conn:
        return conn.execute(q).all()


def test_scheduled_one_second_ahead_survives_a_killed_worker(sample_rt, sink, tmp_path) -> None:
    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    c = approved(sample_rt)
    with worker(cfg, poll=60) as first:  # looks at the store only every minute
        at = utcnow() + timedelta(seconds=1)
        scheduler.schedule(sample_rt, c.id, at=at, actor="marketer")
        first.send_signal(signal.SIGKILL)  # dies before it ever saw the job
        first.wait(30)
    assert sink.messages == [] and campaigns.get(sample_rt, c.id).status == "scheduled"
    with worker(cfg, poll=0.2):  # the job is in the database: the new worker fires it
        wait_for(lambda: campaigns.get(sample_rt, c.id).status == "done", "the run to finish")
    rows = deliveries(sample_rt, c.id)
    assert rows and all(r.status == "sent" for r in rows)
    received = [m.rcpt_tos[0] for m in sink.messages]
    assert len(received) == len(set(received)) == len(rows)  # exactly one message each
    sends = [e for e in sample_rt.ledger.rows() if e.kind == "send" and e.campaign_id == c.id]
    assert len(sends) == len(rows) and all(e.at >= at for e in sends)  # not before the scheduled time
    assert sample_rt.ledger.verify().ok


def test_worker_killed_mid_run_resumes_without_sending_twice(runtime_factory, sink, tmp_path) -> None:
    """A run interrupted by SIGKILL is resumed by the next worker: pending rows are sent,
    claimed-but-unrecorded ones are reported uncertain and never resent (nobody gets two)."""
    from mailer.store.contacts import import_contacts
    from tests.conftest import ROOT

    sample_rt = runtime_factory(sink, limits={"messages_per_second": 20.0, "claim_batch": 4})  # a run of ~3 s
    import_contacts(sample_rt.engine, sample_rt.keyring, sample_rt.ledger, ROOT / "examples/contacts.csv",
                    dict(sample_rt.settings.fields.clinical))
    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    c = approved(sample_rt)
    with worker(cfg, poll=0.2) as first:
        scheduler.schedule(sample_rt, c.id, at=utcnow() + timedelta(seconds=1), actor="marketer")
        wait_for(lambda: len(sink.messages) >= 1 or campaigns.get(sample_rt, c.id).status == "done", "sending to start")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    with worker(cfg, poll=0.2):
        wait_for(lambda: campaigns.get(sample_rt, c.id).status == "done", "the resumed run to finish")
    received = [m.rcpt_tos[0] for m in sink.messages]
    assert len(received) == len(set(received))  # never twice
    statuses = [r.status for r in deliveries(sample_rt, c.id)]
    assert set(statuses) <= {"sent", "uncertain"}
    assert statuses.count("sent") <= len(received) <= len(statuses)
    assert statuses.count("uncertain") <= 4  # at most the claimed window (limits.claim_batch)


@contextmanager
def http_server(rt) -> Iterator[str]:  # type: ignore[no-untyped-def]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(rt), log_level="warning", access_log=False))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    try:
        wait_for(lambda: server.started, "the web server")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()


def run_finished(rt, campaign_id: int, run: int) -> bool:  # type: ignore[no-untyped-def]
    """The worker put the recurring campaign back to scheduled after this run."""
    return any(e.kind == "campaign" and e.outcome == "scheduled" and '"action":"next-run"' in e.detail
               and f'"run":{run}' in e.detail for e in rt.ledger.rows() if e.campaign_id == campaign_id)


def test_unsubscribe_over_http_between_two_runs_of_a_recurring_newsletter(sample_rt, sink, tmp_path) -> None:
    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    c = approved(sample_rt)
    scheduler.schedule(sample_rt, c.id, cron="0 9 * * MON", actor="marketer")
    base = sample_rt.settings.unsubscribe.base_url
    with worker(cfg, poll=0.2), http_server(sample_rt) as url:
        scheduler.run_now(sample_rt, c.id)  # Monday's run comes round
        wait_for(lambda: run_finished(sample_rt, c.id, 1), "run 1 to finish")
        first = list(sink.messages)
        assert first and all(r.status == "sent" for r in deliveries(sample_rt, c.id, 1))
        # one patient clicks the one-click link of their message (RFC 8058 POST)
        msg = message_from_bytes(first[0].data, policy=policy.default)
        token = str(msg["List-Unsubscribe"]).strip("<>")[len(base):]
        gone = first[0].rcpt_tos[0]
        r = httpx.post(f"{url}/u/{token}", content="List-Unsubscribe=One-Click",
                       headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200
        scheduler.run_now(sample_rt, c.id)  # the next Monday
        wait_for(lambda: run_finished(sample_rt, c.id, 2), "run 2 to finish")
    second = sink.messages[len(first):]
    assert gone not in {m.rcpt_tos[0] for m in second}
    assert len(second) == len(first) - 1
    assert scheduler.next_run(sample_rt, c.id) is not None  # still recurring
    skipped = [e for e in sample_rt.ledger.rows() if e.kind == "skip" and e.campaign_id == c.id]
    assert len(skipped) == 1 and skipped[0].rule_ids == "SPAM-5"
    assert '"run":2' in skipped[0].detail
    unsub = [e for e in sample_rt.ledger.rows() if e.kind == "unsubscribe"]
    assert len(unsub) == 1 and unsub[0].recipient_hash == skipped[0].recipient_hash
