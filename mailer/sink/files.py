"""The sink's handler: each accepted message becomes one private .eml file.

What it prints per message is the Message-ID, the size and the file name: never an
address, a subject or a body (they are PHI in a patient campaign).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+<>$-]")


@dataclass
class SinkStats:
    """What crossed the wire, in counts only (SEND-1: one RCPT TO; TLS-1: TLS before MAIL FROM)."""

    messages: int = 0
    bytes: int = 0
    one_rcpt_each: bool = True
    tls_each: bool = True
    tls_versions: set[str] = field(default_factory=set)


def message_id(data: bytes) -> str:
    """The Message-ID header, or "(none)"; only the headers are parsed."""
    headers = BytesHeaderParser(policy=default_policy).parsebytes(data)
    value = headers.get("Message-ID")
    return str(value).strip() if value else "(none)"


def private_folder(path: Path) -> Path:
    """Create (or tighten) the output folder: 0700, since it holds whole messages."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@dataclass
class EmlWriter:
    """aiosmtpd handler: writes NNNNNN.eml (0600) into `out`, reports one line per message."""

    out: Path
    report: Callable[[str], None] = print
    stats: SinkStats = field(default_factory=SinkStats)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        private_folder(self.out)
        existing = [int(p.stem) for p in self.out.glob("*.eml") if p.stem.isdigit()]
        self._next = max(existing, default=0) + 1

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.__dict__["_tls_at_mail"] = session.ssl is not None
        envelope.__dict__["_rcpt_cmds"] = 0
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        envelope.__dict__["_rcpt_cmds"] = envelope.__dict__.get("_rcpt_cmds", 0) + 1
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        ssl_obj = session.ssl.get("ssl_object") if isinstance(session.ssl, dict) else None
        with self._lock:
            number = self._next
            self._next += 1
            name = f"{number:06d}.eml"
            fd = os.open(self.out / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            s = self.stats
            s.messages += 1
            s.bytes += len(data)
            s.one_rcpt_each &= envelope.__dict__.get("_rcpt_cmds", 0) == 1 and len(envelope.rcpt_tos) == 1
            s.tls_each &= bool(envelope.__dict__.get("_tls_at_mail"))
            s.tls_versions.add(ssl_obj.version() if ssl_obj is not None else "none")
        self.report(f"received {_UNSAFE.sub('?', message_id(data))} {len(data)} bytes -> {name}")
        return "250 OK queued"
