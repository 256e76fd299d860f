"""The ledger head anchored outside the database (SEC-5): an older copy of `ledger` and
`ledger_checkpoint` restored, or both wiped, no longer verify; delivery rows are checked
against their ledger outcomes; retry-failed never re-sends what the ledger records as sent."""

from __future__ import annotations

import re
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update

from mailer import sending
from mailer.db import writing
from mailer.ledger_anchor import anchor_path, read_anchors
from mailer.models import Delivery
from mailer.store import deliveries as dq
from tests.conftest import NO_GATES
from tests.helpers_accounts import cli_env
from tests.test_ledger_support import cli, drop_triggers, fill, send_event, sql, write_config
from tests.test_send_support import ledger_rows, newsletter


def _snapshot(engine: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with engine.connect() as conn:
        entries = [dict(r) for r in conn.execute(text("SELECT * FROM ledger ORDER BY seq")).mappings()]
        cps = [dict(r) for r in conn.execute(text("SELECT * FROM ledger_checkpoint")).mappings()]
    return entries, cps


def _restore(engine: Any, snap: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """What restoring an older copy of both tables amounts to."""
    entries, cps = snap
    drop_triggers(engine)
    sql(engine, "DELETE FROM ledger")
    sql(engine, "DELETE FROM ledger_checkpoint")
    for values in entries:
        cols = ", ".join(f'"{k}"' for k in values)
        sql(engine, f"INSERT INTO ledger ({cols}) VALUES ({', '.join(':' + k for k in values)})", values)
    for values in cps:
        cols = ", ".join(f'"{k}"' for k in values)
        sql(engine, f"INSERT INTO ledger_checkpoint ({cols}) VALUES ({', '.join(':' + k for k in values)})", values)


@pytest.fixture
def lrt(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    fill(rt, 20)
    rt.ledger.anchor()
    return rt


def test_a_restored_older_copy_fails_verify(lrt: Any) -> None:
    rt = lrt
    old = _snapshot(rt.engine)
    fill(rt, 10)
    rt.ledger.append([send_event(99)])
    rt.ledger.anchor()
    assert rt.ledger.verify().ok
    _restore(rt.engine, old)
    v = rt.ledger.verify()
    assert not v.ok and v.reason == "rollback", v
    assert "entry 20" in v.problem and "older copy" in v.problem


def test_a_wiped_ledger_fails_verify(lrt: Any) -> None:
    rt = lrt
    _restore(rt.engine, ([], []))
    v = rt.ledger.verify()
    assert not v.ok and v.reason == "rollback" and "is empty" in v.problem


def test_a_rewritten_ledger_of_the_same_length_fails(lrt: Any) -> None:
    rt = lrt
    anchored = read_anchors(rt.ledger.anchor_file)[-1]
    _restore(rt.engine, ([], []))
    fill(rt, anchored.seq)  # same length, different content (new times, hashes)
    v = rt.ledger.verify(anchor_file=rt.ledger.anchor_file)
    assert not v.ok and v.reason == "rollback" and f"entry {anchored.seq} differs" in v.problem


def test_a_forged_anchor_line_is_reported(lrt: Any) -> None:
    rt = lrt
    with rt.ledger.anchor_file.open("a") as fh:
        fh.write('{"seq": 1000, "hash": "' + "0" * 64 + '", "at": "x", "key_id": "L1", "mac": "00"}\n')
    v = rt.ledger.verify()
    assert not v.ok and v.reason == "anchor-file"


def test_the_anchor_file_sits_beside_the_key_file_and_only_grows(lrt: Any) -> None:
    rt = lrt
    path = rt.ledger.anchor_file
    assert path == anchor_path(rt.settings.keys.file) and path.parent == rt.settings.keys.file.parent
    first = path.read_bytes()
    n = len(read_anchors(path))
    fill(rt, 3)
    rt.ledger.anchor()
    assert path.read_bytes().startswith(first) and len(read_anchors(path)) == n + 1
    assert read_anchors(path)[-1].seq == 23
    assert (path.stat().st_mode & 0o077) == 0


def test_cli_commands_anchor_and_verify_against_a_copy(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    cfg = write_config(rt, tmp_path)
    fill(rt, 5)
    cli_env(cfg, "auditor")  # the account exists before the snapshot (its creation is in the ledger)
    old = _snapshot(rt.engine)
    before = rt.ledger.last_seq()
    res = cli(cfg, "ledger", "export", "--out", str(tmp_path / "x.jsonl"))  # records a data-export entry
    assert res.exit_code == 0, res.output
    anchors = read_anchors(rt.ledger.anchor_file)
    # the export entry (and the sign-in's access entries, issue 12) come after the snapshot
    assert anchors and anchors[-1].seq == rt.ledger.last_seq() > before
    res = cli(cfg, "ledger", "verify")
    assert res.exit_code == 0 and "matches the anchor" in res.output, res.output
    copy = tmp_path / "auditor-copy.jsonl"
    shutil.copy(rt.ledger.anchor_file, copy)
    rt.ledger.anchor_file.unlink()  # the attacker removes the file beside the key file too
    _restore(rt.engine, old)
    res = cli(cfg, "ledger", "verify")
    assert res.exit_code == 0 and "no anchor outside the database" in res.output
    res = cli(cfg, "ledger", "verify", "--anchor", str(copy))
    assert res.exit_code == 1 and "older copy" in res.output, res.output
    res = cli(cfg, "ledger", "verify", "--anchor", str(tmp_path / "nope.jsonl"))
    assert res.exit_code == 2


def test_the_report_and_evidence_print_the_head(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    cfg = write_config(rt, tmp_path)
    fill(rt, 5)
    from datetime import datetime
    q = datetime.utcnow()
    quarter = f"{q.year}Q{(q.month - 1) // 3 + 1}"
    res = cli(cfg, "ledger", "report", "--quarter", quarter)
    assert res.exit_code == 0, res.output
    # the head the report printed is a real entry of the chain (signing in appends access entries first)
    m = re.search(r"Ledger head entry (\d+) ([0-9a-f]{64})", res.output)
    assert m, res.output
    with rt.engine.connect() as conn:
        stored = conn.execute(text("SELECT entry_hash FROM ledger WHERE seq = :s"), {"s": int(m.group(1))}).scalar()
    assert int(m.group(1)) >= 5 and stored == m.group(2)


def test_the_worker_anchors_at_least_hourly(runtime_factory: Any) -> None:
    from mailer.scheduler import Worker

    rt = runtime_factory()
    fill(rt, 4)
    rt.ledger.anchor_file.unlink(missing_ok=True)
    rt.ledger._anchored_seq = 0
    w = Worker(rt, poll=0.1)
    w.start()
    try:
        job = w.scheduler.get_job("ledger-anchor")
        assert job is not None and job.trigger.interval <= timedelta(hours=1)
        deadline = time.monotonic() + 10
        while not read_anchors(rt.ledger.anchor_file) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        w.stop()
    assert read_anchors(rt.ledger.anchor_file)[-1].seq == 4


# -- delivery rows against the ledger ----------------------------------------------------

async def test_a_flipped_delivery_is_found_and_retry_failed_does_not_resend_it(
        sample_rt: Any, sink: Any, tmp_path: Path) -> None:
    rt = sample_rt
    c = newsletter(rt)
    first = await sending.send(rt, c.id, preflight=NO_GATES)
    assert first.sent > 2
    cfg = write_config(rt, tmp_path)
    assert cli(cfg, "ledger", "verify").exit_code == 0
    t = Delivery.__table__
    with writing(rt.engine) as conn:
        victim = conn.execute(t.select().where(t.c.campaign_id == c.id).order_by(t.c.id).limit(1)).first()
        conn.execute(update(t).where(t.c.id == victim.id).values(status=dq.FAILED))
    res = cli(cfg, "ledger", "verify")
    assert res.exit_code == 1, res.output
    assert f"delivery {victim.id} (contact {victim.contact_id}): row says failed, ledger says sent" in res.output
    before = len(sink.messages)
    again = await sending.send(rt, c.id, preflight=NO_GATES, statuses=(dq.FAILED,))
    assert again.sent == 0 and len(sink.messages) == before
    refusals = ledger_rows(rt, kind="refusal", campaign_id=c.id)
    assert [r.contact_id for r in refusals] == [victim.contact_id] and "SEC-5" in refusals[0].rule_ids


async def test_a_second_sender_works_beside_the_first_without_touching_its_rows(sample_rt: Any, sink: Any) -> None:
    """Two `campaign send` runs at once (issue 20): the second sends beside the first under
    its own lease; no row of the first becomes `uncertain` and nobody gets two messages."""
    import asyncio

    rt = sample_rt
    c = newsletter(rt)
    started, release = threading.Event(), threading.Event()
    real = sink.handler.handle_DATA

    async def slow(server: Any, session: Any, envelope: Any) -> str:
        started.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        return await real(server, session, envelope)

    sink.handler.handle_DATA = slow
    first = asyncio.create_task(sending.send(rt, c.id, preflight=NO_GATES))
    while not started.is_set():
        await asyncio.sleep(0.01)
    second = asyncio.create_task(sending.send(rt, c.id, preflight=NO_GATES))
    await asyncio.sleep(0.3)
    release.set()
    one, two = await first, await second
    assert one.uncertain == two.uncertain == 0
    assert dq.counts(rt.engine, c.id) == {dq.SENT: one.sent + two.sent}
    assert len(sink.messages) == one.sent + two.sent
    assert not ledger_rows(rt, kind="send", outcome="uncertain", campaign_id=c.id)


async def test_a_row_the_ledger_records_as_sent_is_never_left_uncertain(sample_rt: Any, sink: Any) -> None:
    """Defence in depth: if a row is relabelled `uncertain` while its message is in flight,
    recording the real outcome still lands."""
    rt = sample_rt
    c = newsletter(rt)
    sending.prepare(rt, sending.get(rt, c.id))
    got = dq.claim_batch(rt.engine, rt.ledger, c.id, 0, 2, domain="riverside-imaging.example")
    dq.mark_uncertain(rt.engine, rt.ledger, c.id, 0)  # another run relabels our in-flight rows
    outcomes = [dq.Outcome(g.delivery_id, dq.SENT, send_event(g.contact_id, campaign_id=c.id)) for g in got]
    dq.commit_cycle(rt.engine, rt.ledger, outcomes=outcomes, campaign_id=c.id)
    st = dq.counts(rt.engine, c.id)
    assert st.get(dq.UNCERTAIN, 0) == 0 and st[dq.SENT] == 2
