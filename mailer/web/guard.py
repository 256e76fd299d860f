"""What stands between the internet and the unsubscribe app (hardening for a public endpoint).

- Host: only the configured hosts are served (400 otherwise). Nothing builds a URL from it.
- Bodies: a declared Content-Length over MAX_BODY is answered 413 before a byte is read;
  a chunked body is counted as it arrives and cut off at MAX_BODY with 413.
- Time: the whole body must arrive within BODY_SECONDS (408 otherwise); headers within
  HEADER_SECONDS of the connection opening (`HeaderTimeoutH11`, for uvicorn).
- Headers: every response, errors and 404/405 included, gets the same security headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 4096  # bytes: the one-click body is 26; the browser form's a few hundred
BODY_SECONDS = 10.0
HEADER_SECONDS = 10.0


def default_hosts(base_url: str) -> list[str]:
    """The host of the public unsubscribe URL, plus this machine (a local proxy or health check)."""
    host = (urlsplit(base_url).hostname or "").lower()
    return [h for h in (host, "localhost", "127.0.0.1", "::1") if h]


class Guard:
    def __init__(self, app: ASGIApp, *, hosts: Sequence[str], headers: Mapping[str, str],
                 max_body: int = MAX_BODY, body_seconds: float = BODY_SECONDS) -> None:
        self.app = app
        self.hosts = {h.lower() for h in hosts}
        self.any_host = "*" in self.hosts
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.max_body = max_body
        self.body_seconds = body_seconds

    def _host_ok(self, scope: Scope) -> bool:
        if self.any_host:
            return True
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        host = raw[1:].partition("]")[0] if raw.startswith("[") else raw.rpartition(":")[0] if ":" in raw else raw
        return host in self.hosts

    async def _plain(self, send: Send, status: int, text: str) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                                *self.headers]})
        await send({"type": "http.response.body", "body": text.encode()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._host_ok(scope):
            await self._plain(send, 400, "Bad request\n")
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body
            except ValueError:
                await self._plain(send, 400, "Bad request\n")
                return
            if too_big:
                await self._plain(send, 413, "Request body too large\n")
                return
        # The body (at most max_body bytes) is read here, against the deadline, before the
        # app runs; the app is handed the bytes already read.
        body = bytearray()
        more = scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_seconds
        while more:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - loop.time(), 0.001))
            except TimeoutError:
                await self._plain(send, 408, "Request took too long\n")
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._plain(send, 413, "Request body too large\n")
                return
            more = bool(message.get("more_body"))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in self.headers}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *self.headers]}
            await send(message)

        await self.app(scope, replay, secured_send)


def header_timeout_protocol() -> Any:
    """uvicorn's h11 protocol with a deadline for the request head: a client that opens a
    connection and trickles headers (slowloris) is cut off after HEADER_SECONDS."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):  # type: ignore[misc]
        header_seconds = HEADER_SECONDS

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_cycle: Any = None
            self._head_timer: Any = None
            self._arm()

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(self.header_seconds, self._head_timeout)
            self._head_cycle = self.cycle

        def _head_timeout(self) -> None:
            if self.cycle is self._head_cycle and not self.transport.is_closing():
                self.transport.close()  # no complete request head in time

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._head_cycle and self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def on_response_complete(self) -> None:
            # armed before the base class starts a pipelined next request (which disarms it)
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._arm()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return HeaderTimeoutH11


def server_config(app: ASGIApp, *, host: str, port: int) -> Any:
    """The uvicorn config `mailer serve` uses: h11 with the header deadline, bounded header
    size, no access log (URLs carry tokens), no server header."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=header_timeout_protocol(), access_log=False,
                          server_header=False, log_level="warning", proxy_headers=True,
                          h11_max_incomplete_event_size=16 * 1024, timeout_keep_alive=5, limit_concurrency=512)
