"""`mailer bounces receive`: an SMTP receiver for the bounce domain (aiosmtpd, STARTTLS required).

It sits behind the center's MX for the bounce domain. Only recipients in that domain are
accepted (anything else: 550, it is not an open relay); a message is answered 250 only
after its batch committed (a processing error answers 451, so the sending MTA keeps it
and tries again: nothing is lost). aiosmtpd refuses anything over twice the size bound
(552) without reading it all; between the bound and that, the message is read and
recorded as rejected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailer.bounces.process import Incoming, Outcome, Processor, Totals
from mailer.devsink import server_tls_context

log = logging.getLogger(__name__)


@dataclass
class BounceHandler:
    processor: Processor
    on_outcome: Callable[[Totals], None] | None = None
    totals: Totals = field(default_factory=Totals)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        domain = self.processor.settings.domain
        if not domain or address.rpartition("@")[2].lower() != domain:
            return "550 5.7.1 not a bounce address of this receiver"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        item = Incoming(data, "smtp", tuple(envelope.rcpt_tos))
        try:
            outcomes: list[Outcome] = await asyncio.to_thread(self.processor.process, [item])
        except Exception:  # noqa: BLE001 - the sending MTA keeps the message and retries; no PHI logged
            log.exception("bounce processing failed; answered 451")
            return "451 4.3.0 temporary processing failure, try again later"
        self.totals.add(outcomes)
        if self.on_outcome:
            self.on_outcome(self.totals)
        if any(o.disposition == "rejected" and o.reason.startswith("oversized") for o in outcomes):
            return "552 5.3.4 message too big for a bounce report (recorded)"
        return "250 OK processed"


class _Controller(Controller):
    def factory(self) -> SMTP:
        return SMTP(self.handler, **self.SMTP_kwargs)


def start_receiver(processor: Processor, *, host: str, port: int, cert_file: Path, key_file: Path,
                   hostname: str = "localhost", on_outcome: Callable[[Totals], None] | None = None
                   ) -> tuple[Controller, int, BounceHandler]:
    """Start in a thread on HOST:PORT (0: a free port). STARTTLS is required before MAIL FROM."""
    handler = BounceHandler(processor, on_outcome)
    kwargs: dict[str, Any] = {"data_size_limit": 2 * processor.settings.max_message_bytes,
                              "tls_context": server_tls_context(cert_file, key_file), "require_starttls": True}
    controller = _Controller(handler, hostname=host, port=port, ready_timeout=10, server_hostname=hostname,
                             **kwargs)
    if port == 0:
        import socket

        with socket.socket() as s:
            s.bind((host, 0))
            controller.port = s.getsockname()[1]
    controller.start()
    return controller, controller.port, handler
