"""A local STARTTLS SMTP sink (aiosmtpd) that records what a relay would have received.

Used by `mailer demo`, the tests and the benchmark. It records, per transaction, the
number of RCPT TO commands and whether TLS was up at MAIL FROM, so SEND-1 and TLS-1
are checked against what actually crossed the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    rcpt_commands: int
    tls_at_mail_from: bool
    tls_version: str | None
    data: bytes


@dataclass
class RecordingHandler:
    """Records each transaction; `reply` maps a recipient to a forced SMTP reply."""

    keep_data: bool = True
    messages: list[Received] = field(default_factory=list)
    reply: dict[str, str] = field(default_factory=dict)
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.__dict__["_tls_at_mail"] = session.ssl is not None
        envelope.__dict__["_rcpt_cmds"] = 0
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        envelope.__dict__["_rcpt_cmds"] = envelope.__dict__.get("_rcpt_cmds", 0) + 1
        forced = self.reply.get(address)
        if forced and forced.startswith(("4", "5")) and "@rcpt" in forced:
            return forced.replace("@rcpt", "")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            forced = self.reply.get(rcpt)
            if forced:
                return forced
        ssl_obj = session.ssl.get("ssl_object") if isinstance(session.ssl, dict) else None
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        rec = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            rcpt_commands=envelope.__dict__.get("_rcpt_cmds", 0),
            tls_at_mail_from=bool(envelope.__dict__.get("_tls_at_mail")),
            tls_version=ssl_obj.version() if ssl_obj is not None else None,
            data=data if self.keep_data else b"",
        )
        with self._lock:
            self.messages.append(rec)
            self.count += 1
        return "250 OK queued"


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


class _Controller(Controller):
    def factory(self) -> SMTP:
        return SMTP(self.handler, **self.SMTP_kwargs)


def start_sink(
    handler: Any,  # RecordingHandler, mailer.sink.EmlWriter, or any aiosmtpd handler
    *,
    cert_file: Path | None,
    key_file: Path | None,
    host: str = "127.0.0.1",
    port: int = 0,
    require_starttls: bool = True,
    tls_context: ssl.SSLContext | None = None,
) -> tuple[Controller, int]:
    """Start on a free port (port=0) in a thread; returns the controller and its port."""
    ctx = tls_context or (server_tls_context(cert_file, key_file) if cert_file and key_file else None)
    kwargs: dict[str, Any] = {"data_size_limit": 10 * 1024 * 1024}
    if ctx is not None:
        kwargs["tls_context"] = ctx
        kwargs["require_starttls"] = require_starttls
    controller = _Controller(handler, hostname=host, port=port, ready_timeout=10, server_hostname="localhost", **kwargs)
    if port == 0:
        import socket

        with socket.socket() as s:
            s.bind((host, 0))
            controller.port = s.getsockname()[1]
    controller.start()
    return controller, controller.port


def main() -> None:
    """Run a sink in its own process (the benchmark keeps it off the client's core)."""
    ap = argparse.ArgumentParser(description="mailer development STARTTLS sink")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    args = ap.parse_args()
    handler = RecordingHandler(keep_data=False)
    controller, port = start_sink(handler, cert_file=args.cert, key_file=args.key, port=args.port)
    print(f"ready {port}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
