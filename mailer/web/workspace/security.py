"""The web layer's own protections: response headers, CSRF, and the sign-in rate limit.

Pure pieces (no database): the headers every workspace response carries (the ones the
unsubscribe pages send, plus a strict CSP with no inline script at all), the CSRF
comparison, and a per-client sliding window for sign-in attempts (account lockout after
repeated failures is the account service's job; this one slows a spray across accounts).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque

CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
       "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# The campaign preview frame: the email's own inline styles, nothing else, in an opaque origin.
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox"

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Content-Security-Policy": CSP,
}

SESSION_COOKIE = "mailer_session"
PRE_COOKIE = "mailer_pre"  # the anonymous CSRF token of the sign-in form (double submit)
CSRF_FIELD = "csrf_token"


def csrf_ok(expected: str | None, given: object) -> bool:
    """Constant-time comparison; a missing or empty token never matches."""
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass"))


class RateLimiter:
    """At most `limit` events per `window` seconds per key (a client address)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            if len(self._hits) > 10000:  # forget idle clients rather than grow without bound
                for k in [k for k, v in self._hits.items() if not v][:5000]:
                    del self._hits[k]
            return True
