"""Leases and shared limits of several senders (issue 20), on SQLite and PostgreSQL.

Stand-ins for processes: several lease owners and several `SharedRateLimiter`s on one
database, on an injected clock (no waiting).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from mailer import approvals, campaigns, sending
from mailer.models import Delivery
from mailer.ratelimit import SharedRateLimiter
from mailer.store import deliveries as dq
from mailer.store import leases
from tests.test_send_support import bulk_contacts, newsletter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def _frozen(runtime_factory: Any, tmp_path: Path, n: int = 40) -> tuple[Any, int]:
    rt = runtime_factory(None)
    bulk_contacts(rt, n, tmp_path)
    c = newsletter(rt)
    campaigns.submit(rt, c.id, actor="marketer")
    approvals.approve(rt, c.id, reviewer="reviewer")
    sending.prepare(rt, campaigns.get(rt, c.id))
    return rt, c.id or 0


def _workers(rt: Any, cid: int) -> dict[int, tuple[str, str | None]]:
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        return {r.id: (r.status, r.worker) for r in conn.execute(select(t.c.id, t.c.status, t.c.worker)
                                                                 .where(t.c.campaign_id == cid))}


def test_reservations_hand_out_each_row_once(runtime_factory: Any, tmp_path: Path) -> None:
    rt, cid = _frozen(runtime_factory, tmp_path, 40)
    a, b = leases.new_owner(), leases.new_owner()
    for o in (a, b):
        leases.register(rt.engine, o, cid, 0, seconds=30)
    got_a = leases.reserve(rt.engine, a, cid, 0, (dq.PENDING,), n=15)
    got_b = leases.reserve(rt.engine, b, cid, 0, (dq.PENDING,), n=30)
    assert len(got_a) == 15 and len(got_b) == 25 and not set(got_a) & set(got_b)
    assert leases.reserve(rt.engine, a, cid, 0, (dq.PENDING,)) == []  # nothing free is left
    leases.release(rt.engine, b)  # b is gone: its reserved rows are free again, never lost
    assert sorted(leases.reserve(rt.engine, a, cid, 0, (dq.PENDING,), n=100)) == sorted(got_b)


def test_only_rows_of_an_expired_lease_become_uncertain(runtime_factory: Any, tmp_path: Path) -> None:
    rt, cid = _frozen(runtime_factory, tmp_path, 12)
    t = FakeTime()
    live, dead = leases.new_owner(), leases.new_owner()
    leases.register(rt.engine, live, cid, 0, seconds=30, clock=t.clock)
    leases.register(rt.engine, dead, cid, 0, seconds=5, clock=t.clock)
    mine = dq.claim_batch(rt.engine, rt.ledger, cid, 0, 4, domain="example.org", worker=live)
    theirs = dq.claim_batch(rt.engine, rt.ledger, cid, 0, 3, domain="example.org", worker=dead)
    assert leases.sweep(rt.engine, rt.ledger, cid, 0, clock=t.clock) == 0  # both alive: nobody's rows change
    t.now += 10  # the second sender's heartbeat stopped: its lease runs out
    assert leases.sweep(rt.engine, rt.ledger, cid, 0, clock=t.clock) == 3
    rows = _workers(rt, cid)
    assert {rows[c.delivery_id][0] for c in mine} == {dq.CLAIMED}
    assert {rows[c.delivery_id][0] for c in theirs} == {dq.UNCERTAIN}
    uncertain = [e for e in rt.ledger.rows() if e.kind == "send" and e.outcome == "uncertain"]
    assert len(uncertain) == 3 and all(dead in e.detail for e in uncertain)
    assert rt.ledger.verify().ok


def test_a_dead_process_on_this_host_loses_its_lease_at_once(runtime_factory: Any, tmp_path: Path) -> None:
    rt, cid = _frozen(runtime_factory, tmp_path, 6)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    owner = f"{pid}.deadbeef0000@here"
    leases.register(rt.engine, owner, cid, 0, seconds=3600)
    with rt.engine.begin() as conn:  # as the dead process registered it
        conn.execute(text("UPDATE send_lease SET pid = :p WHERE owner = :o"), {"p": pid, "o": owner})
    dq.claim_batch(rt.engine, rt.ledger, cid, 0, 2, domain="example.org", worker=owner)
    assert dq.mark_uncertain(rt.engine, rt.ledger, cid, 0) == 2  # no need to wait an hour


async def test_three_limiters_share_the_global_pace(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory(None)
    t = FakeTime()
    lims = [SharedRateLimiter(rt.engine, 7, 50, clock=t.clock, sleep=t.sleep) for _ in range(3)]
    stamps: list[float] = []
    for i in range(150):  # the three "processes" take turns
        await lims[i % 3].acquire("example.com")
        stamps.append(t.now)
    assert all(b >= a for a, b in zip(stamps, stamps[1:], strict=False))
    # never more than 50 a second for the campaign as a whole
    assert all(sum(1 for s in stamps if a <= s < a + 1.0) <= 50 + 1 for a in stamps)
    assert stamps[-1] - stamps[0] >= 149 / 50 - 1e-6


async def test_three_limiters_share_a_domain_window(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory(None)
    t = FakeTime()
    lims = [SharedRateLimiter(rt.engine, 7, 0, {"gmail.com": 6, "*": 1000}, clock=t.clock, sleep=t.sleep)
            for _ in range(3)]
    gmail: list[float] = []
    for i in range(18):
        await lims[i % 3].acquire("gmail.com")
        gmail.append(t.now)
    # never more than 6 in any 60 s window, across the three senders
    assert all(sum(1 for s in gmail if a <= s < a + 60) <= 6 for a in gmail)
    assert gmail[-1] - gmail[0] >= 120
    before = t.now
    for i in range(30):  # another domain is not held up by gmail's window
        await lims[i % 3].acquire("example.org")
    assert t.now == before
    with rt.engine.connect() as conn:  # the domain is stored as a hash, never in clear
        keys = [r[0] for r in conn.execute(text("SELECT key FROM rate_grant"))]
    assert keys and not any("gmail" in k or "example" in k for k in keys)


async def test_a_pause_reaches_every_sender_even_a_slow_one(runtime_factory: Any, tmp_path: Path) -> None:
    """Two senders of one campaign, held back by the rate limit (their producers idle):
    an operator's pause stops both, and the messages waiting for the limit are released,
    never sent (SenderOptions.status_poll_seconds, not the next page read)."""
    from mailer import scheduler
    from mailer.transport import MemoryTransport, SendResult
    from tests.conftest import NO_GATES

    rt = runtime_factory(None, limits={"messages_per_second": 4.0})  # a window of 32 lasts 8 s
    bulk_contacts(rt, 200, tmp_path)
    c = newsletter(rt)
    campaigns.submit(rt, c.id, actor="marketer")
    approvals.approve(rt, c.id, reviewer="reviewer")
    delivered: list[str] = []
    paused_at: list[int] = []

    class Pausing(MemoryTransport):
        async def send(self, message, /) -> SendResult:  # type: ignore[no-untyped-def]
            result = await super().send(message)
            delivered.append(message.message_id)
            if len(delivered) == 10:
                scheduler.pause(rt, c.id, actor="operator", reason="wrong date in the text")
                paused_at.append(len(delivered))
            return result

    one, two = await asyncio.gather(
        sending.send(rt, c.id, transport=Pausing(connections=2), preflight=NO_GATES),
        sending.send(rt, c.id, transport=Pausing(connections=2), preflight=NO_GATES))
    assert "operator" in one.paused and "operator" in two.paused
    assert one.sent + two.sent == len(delivered) == len(set(delivered))
    # after the pause: what the 4 connections had in hand, plus the pace for one poll (0.5 s)
    assert len(delivered) - paused_at[0] <= 4 + 2
    counts = dq.counts(rt.engine, c.id)
    assert counts.get(dq.CLAIMED, 0) == counts.get(dq.UNCERTAIN, 0) == 0
    assert counts.get(dq.SENT) == len(delivered) and counts.get(dq.PENDING) == 200 - len(delivered)
    assert campaigns.get(rt, c.id).status == "paused"
