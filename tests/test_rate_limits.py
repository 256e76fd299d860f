"""Send-rate limits: the global pace and per-domain sliding windows, on an injected clock (no waiting)."""

from __future__ import annotations

import asyncio

from mailer.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_global_pace_spaces_messages_evenly() -> None:
    t = FakeTime()
    lim = RateLimiter(10, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(30):
        await lim.acquire("example.com")
        stamps.append(t.now)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9
    assert abs((stamps[-1] - stamps[0]) - 2.9) < 1e-6


async def test_per_domain_sliding_window() -> None:
    t = FakeTime()
    lim = RateLimiter(0, {"gmail.com": 5, "*": 100}, clock=t.clock, sleep=t.sleep)
    gmail = []
    for _ in range(12):
        await lim.acquire("GMAIL.com")
        gmail.append(t.now)
    # never more than 5 in any 60 s window
    assert all(sum(1 for s in gmail if a <= s < a + 60) <= 5 for a in gmail)
    assert gmail[5] - gmail[0] >= 60 and gmail[10] - gmail[5] >= 60
    before = t.now
    for _ in range(50):  # another domain is not held up by gmail's window
        await lim.acquire("example.org")
    assert t.now == before


async def test_no_limits_means_no_waiting() -> None:
    t = FakeTime()
    lim = RateLimiter(clock=t.clock, sleep=t.sleep)
    for _ in range(100):
        await lim.acquire("example.com")
    assert t.now == 1000.0


async def test_concurrent_senders_share_the_pace() -> None:
    t = FakeTime()
    lim = RateLimiter(4, clock=t.clock, sleep=t.sleep)
    stamps: list[float] = []

    async def one() -> None:
        for _ in range(5):
            await lim.acquire("example.com")
            stamps.append(t.now)

    await asyncio.gather(*(one() for _ in range(4)))
    stamps.sort()
    assert len(stamps) == 20 and stamps[-1] - stamps[0] >= 19 * 0.25 - 1e-6
