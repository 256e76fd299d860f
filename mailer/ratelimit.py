"""Send-rate limits: a global pace and per-recipient-domain sliding windows (from config)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping


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
