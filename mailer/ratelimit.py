"""Send-rate limits: a global pace and per-recipient-domain sliding windows (from config)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any


class RateLimiter:
    """`await acquire(domain)` returns when one more message may go to that domain.

    Global: at most `per_second` messages a second, evenly spaced. Per recipient domain:
    at most N in any sliding 60 s window (`per_domain_per_minute`, "*" for any other
    domain). Retries go through `acquire` again, so they count against both.
    """

    def __init__(self, per_second: float = 0.0, per_domain_per_minute: Mapping[str, int] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.domain_limits = {k.lower(): v for k, v in (per_domain_per_minute or {}).items()}
        self.window = 60.0
        self.clock = clock
        self.sleep = sleep  # injectable with the clock: tests run the windows without waiting
        self._next = 0.0
        self._sent: dict[str, deque[float]] = {}
        self._lock = asyncio.Lock()

    def _domain_wait(self, domain: str, now: float) -> float:
        limit = self.domain_limits.get(domain) or self.domain_limits.get("*")
        if not limit:
            return 0.0
        q = self._sent.setdefault(domain, deque())
        while q and now - q[0] >= self.window:
            q.popleft()
        return 0.0 if len(q) < limit else self.window - (now - q[0])

    @property
    def active(self) -> bool:
        """False when no limit is configured: the sender then skips `acquire` altogether."""
        return bool(self.interval or self.domain_limits)

    async def acquire(self, domain: str) -> None:
        if not self.interval and not self.domain_limits:
            return
        domain = domain.lower()
        while True:
            async with self._lock:
                now = self.clock()
                wait = max(self._next - now, self._domain_wait(domain, now))
                if wait <= 0:
                    if self.interval:
                        self._next = max(self._next, now) + self.interval
                    if self.domain_limits:
                        self._sent.setdefault(domain, deque()).append(now)
                    return
            await self.sleep(wait)


GRANT_SECONDS = 0.1  # the global pace is handed out in runs of slots about this long
LATE = 0.05  # a slot missed by more than this is dropped, not used late (no bursts after a stall)
TOKEN_LIFE = 2.0  # a domain token not used this soon is dropped (it still counts: never an overshoot)


class SharedRateLimiter(RateLimiter):
    """The same limits for a campaign as a whole, whatever the number of sender processes.

    Global pace: the database holds the campaign's next free send slot (`rate_slot`); a
    sender takes a run of consecutive slots (about GRANT_SECONDS' worth) in one short write
    and sends on them, so slots of different senders never overlap. Per domain: a sender
    takes a few tokens at a time (`rate_grant`, the domain as a hash); a grant counts for
    60 s plus TOKEN_LIFE, and tokens older than TOKEN_LIFE are dropped, so the sends of all
    senders in any 60 s window stay within the limit. One write per grant, not per message.
    Times are epoch seconds (`time.time`): senders on several machines need synced clocks.
    """

    def __init__(self, engine: Any, campaign_id: int, per_second: float = 0.0,
                 per_domain_per_minute: Mapping[str, int] | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        super().__init__(per_second, per_domain_per_minute, clock=clock, sleep=sleep)
        self.engine = engine
        self.campaign_id = campaign_id
        self._slots: deque[float] = deque()
        self._tokens: dict[str, deque[float]] = {}  # domain -> grant times of unused tokens

    def _key(self, what: str) -> str:
        import hashlib

        return f"{self.campaign_id}:{hashlib.sha256(what.encode()).hexdigest()[:40]}"

    def _take_slots(self, now: float) -> None:
        from sqlalchemy import text

        from mailer.db import writing

        k = max(1, min(200, round(GRANT_SECONDS / self.interval)))
        key = f"{self.campaign_id}:*"
        with writing(self.engine) as conn:
            # two senders starting together: one row, whoever inserts it first
            conn.execute(text("INSERT INTO rate_slot (key, next_at) VALUES (:k, 0) ON CONFLICT (key) DO NOTHING"),
                         {"k": key})
            lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
            row = conn.execute(text(f"SELECT next_at FROM rate_slot WHERE key = :k{lock}"),  # noqa: S608 - constant
                               {"k": key}).first()
            start = max(now, row[0] if row else 0.0)
            conn.execute(text("UPDATE rate_slot SET next_at = :n WHERE key = :k"),
                         {"k": key, "n": start + k * self.interval})
        self._slots.extend(start + i * self.interval for i in range(k))

    def _take_tokens(self, domain: str, limit: int, now: float) -> float:
        """Tokens for DOMAIN from the shared window; returns how long to wait when none is free."""
        from sqlalchemy import text

        from mailer.db import writing

        key = self._key(domain)
        span = self.window + TOKEN_LIFE
        with writing(self.engine) as conn:
            if conn.dialect.name == "postgresql":  # one grant at a time per domain key
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "mailer-rate:" + key})
            conn.execute(text("DELETE FROM rate_grant WHERE key = :k AND at <= :old"), {"k": key, "old": now - span})
            rows = conn.execute(text("SELECT at, n FROM rate_grant WHERE key = :k ORDER BY at"), {"k": key}).all()
            used = sum(r.n for r in rows)
            free = limit - used
            if free <= 0:
                # wait until enough old grants fall out of the window
                need, acc = 1 - free, 0
                for r in rows:
                    acc += r.n
                    if acc >= need:
                        return max(0.01, r.at + span - now)
                return 1.0
            g = max(1, min(free, -(-limit // 20)))
            conn.execute(text("INSERT INTO rate_grant (key, at, n) VALUES (:k, :at, :n)"),
                         {"k": key, "at": now, "n": g})
        self._tokens.setdefault(domain, deque()).extend([now] * g)
        return 0.0

    def _try(self, domain: str) -> tuple[float, float]:
        """(wait and try again, or 0) and, once granted, how long until the message's slot."""
        now = self.clock()
        limit = self.domain_limits.get(domain) or self.domain_limits.get("*") or 0
        q = self._tokens.setdefault(domain, deque()) if limit else None
        if q is not None:
            while q and now - q[0] >= TOKEN_LIFE:
                q.popleft()
            if not q:
                wait = self._take_tokens(domain, limit, now)
                if wait > 0:
                    return wait, 0.0
        slot = now
        if self.interval:
            while self._slots and self._slots[0] < now - LATE:
                self._slots.popleft()  # a slot missed by a long wait is not used late, in a burst
            if not self._slots:
                self._take_slots(now)
            slot = self._slots.popleft()
        if q is not None:
            q.popleft()
        return 0.0, max(0.0, slot - now)

    async def acquire(self, domain: str) -> None:
        if not self.interval and not self.domain_limits:
            return
        domain = domain.lower()
        while True:
            async with self._lock:  # slots and tokens are handed out in order; no sleep while held
                wait, until_slot = self._try(domain)
            if wait <= 0:
                if until_slot > 0:
                    await self.sleep(until_slot)
                return
            await self.sleep(wait)
