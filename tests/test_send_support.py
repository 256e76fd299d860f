"""Helpers for the sending tests: misbehaving SMTP servers, bulk contacts, campaigns, ledger reads.

(No tests here; the module name keeps it with the sending tests it serves.)
"""

from __future__ import annotations

import csv
import email
import ssl
from collections.abc import Callable
from email import policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from mailer import campaigns
from mailer.devcerts import DevCerts
from mailer.devsink import RecordingHandler, server_tls_context
from mailer.models import Campaign, Delivery, LedgerEntry
from mailer.store.contacts import import_contacts
from tests.conftest import ROOT, Sink


class CountingHandler(RecordingHandler):
    """RecordingHandler that also counts MAIL FROM commands (anything sent in clear shows here)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.mail_commands = 0
        self.mail_in_clear = 0
        self.peers: list[Any] = []  # the client's (host, port) per accepted message: one port per connection
        self.on_data: Callable[[RecordingHandler, Session, Envelope], str | None] | None = None
        self.strip_starttls = False
        self.rcpt_once: dict[str, str] = {}  # recipient -> reply to its first RCPT TO only
        self.data_once: dict[str, str] = {}  # recipient -> reply (or "DISCONNECT") to its first DATA only
        self.dropped_peers: list[Any] = []

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.strip_starttls:  # what an attacker in the path does (RFC 3207 §6)
            return [r for r in responses if "STARTTLS" not in r.upper()]
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        self.mail_commands += 1
        implicit = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        if session.ssl is None and not implicit:
            self.mail_in_clear += 1
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        forced = self.rcpt_once.pop(address, None)
        if forced is not None:
            envelope.__dict__["_rcpt_cmds"] = envelope.__dict__.get("_rcpt_cmds", 0) + 1
            return forced
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            forced = self.data_once.pop(rcpt, None)
            if forced == "DISCONNECT":  # the connection drops in the middle of the transaction
                self.dropped_peers.append(session.peer)
                assert server.transport is not None
                server.transport.close()
                return "421 4.4.2 connection dropped"
            if forced is not None:
                return forced
        if self.on_data is not None:
            forced = self.on_data(self, session, envelope)
            if forced is not None:
                if forced == "DISCONNECT":
                    assert server.transport is not None
                    server.transport.close()
                    return "421 closing"
                return forced
        before = len(self.messages)
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.messages) > before:
            self.peers.append(session.peer)
        return reply


class _SMTP454(SMTP):
    async def smtp_STARTTLS(self, arg: str) -> None:
        await self.push("454 4.7.0 TLS not available due to temporary reason")


def start_server(handler: RecordingHandler, *, tls: ssl.SSLContext | None, implicit: bool = False,
                 require_starttls: bool = False, refuse_starttls: bool = False) -> tuple[Controller, int]:
    """An aiosmtpd server on a free port: STARTTLS (tls), implicit TLS, plain (tls=None), or a 454 to STARTTLS."""
    import socket

    kwargs: dict[str, Any] = {"data_size_limit": 10 * 1024 * 1024}
    if tls is not None and not implicit:
        kwargs["tls_context"] = tls
        kwargs["require_starttls"] = require_starttls
    cls = _SMTP454 if refuse_starttls else SMTP

    class _C(Controller):
        def factory(self) -> SMTP:
            return cls(self.handler, **self.SMTP_kwargs)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = _C(handler, hostname="127.0.0.1", port=port, ready_timeout=10, server_hostname="localhost",
                    ssl_context=tls if implicit else None, **kwargs)
    controller.start()
    return controller, port


def as_sink(handler: RecordingHandler, port: int, certs: DevCerts, controller: Any) -> Sink:
    return Sink(handler, port, certs, controller)


def tls_server_context(certs: DevCerts, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = server_tls_context(certs.cert_file, certs.key_file)
    if max_version is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = max_version
        if max_version < ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL 3 really offer the old protocol
    return ctx


def newsletter(rt: Any, name: str = "Evening hours") -> Campaign:
    return campaigns.create(rt, name=name, purpose="newsletter", template=ROOT / "templates/newsletter",
                            segment=ROOT / "segments/newsletter.toml", author="marketer")


def bulk_contacts(rt: Any, n: int, folder: Path, *, domains: tuple[str, ...] = ("example.com",)) -> list[str]:
    """Import n synthetic newsletter subscribers; returns their addresses in import order."""
    path = folder / f"contacts-{n}.csv"
    addresses = [f"patient{i:05d}@{domains[i % len(domains)]}" for i in range(n)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "first_name", "last_name", "preferred_name", "language", "newsletter_opt_in",
                    "conditions", "procedures", "last_exam_date"])
        for i, a in enumerate(addresses):
            w.writerow([a, f"Pat{chr(97 + i % 26)}", "Doe", "", "en", "true", "", "", ""])
    import_contacts(rt.engine, rt.keyring, rt.ledger, path, dict(rt.settings.fields.clinical))
    return addresses


def parsed(data: bytes) -> Any:
    return email.message_from_bytes(data, policy=policy.default)


def statuses(rt: Any, campaign_id: int) -> dict[int, str]:
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        return {r.contact_id: r.status for r in conn.execute(select(t.c.contact_id, t.c.status).where(t.c.campaign_id == campaign_id))}


def ledger_rows(rt: Any, **where: Any) -> list[Any]:
    t = LedgerEntry.__table__
    conds = [getattr(t.c, k) == v for k, v in where.items()]
    with rt.engine.connect() as conn:
        return conn.execute(select(t).where(*conds).order_by(t.c.seq)).all()


def campaign_row(rt: Any, campaign_id: int) -> Campaign:
    return campaigns.get(rt, campaign_id)
