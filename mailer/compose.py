"""Recipient + rendered template -> RFC 5322 message bytes, one recipient per message.

The message is assembled as bytes from a per-campaign skeleton (perf-notes: the stdlib
`EmailMessage` builder costs ~4 ms a message; this costs ~60 µs). Encoders are the
stdlib's (binascii quoted-printable, email.header for RFC 2047); tests parse every
shape of output back with the stdlib parser.
"""

from __future__ import annotations

import binascii
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr

from mailer.errors import InputError
from mailer.memo import RepeatMemo
from mailer.templates import Rendered

CRLF = b"\r\n"
ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"  # RFC 8058 §3.1, exactly


@dataclass(frozen=True)
class OutboundMessage:
    """What the transport needs: one envelope recipient (SEND-1) and the bytes."""

    envelope_from: str
    recipient: str
    data: bytes
    message_id: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _header_value(value: str, name: str) -> bytes:
    """RFC 2047-encode non-ASCII, fold long lines (STD-1: lines <= 998)."""
    if any(c in value for c in "\r\n"):
        raise InputError(f"header {name} contains a line break", hint="remove line breaks from the template field")
    if value.isascii() and len(value) + len(name) < 76:
        return value.encode("ascii")
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n").encode("ascii")


def _qp_whole(body: str) -> bytes:
    return binascii.b2a_qp(body.encode("utf-8"), quotetabs=False, istext=True, header=False)


class _QuotedPrintable:
    """Quoted-printable per line, memoised: a campaign's messages share almost every line.

    Encoding each line with its newline gives the bytes b2a_qp gives for the whole text
    (a property test holds them equal), so only the lines a recipient's values changed
    are encoded again. A line is kept once two messages contained it, so a line unique to
    one recipient (their name, their unsubscribe link) is never held beyond its message.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.lines: RepeatMemo[str, bytes] = RepeatMemo(limit)

    def __call__(self, text: str) -> bytes:
        body = text.replace("\r\n", "\n")
        if "\r" in body:  # a bare CR: b2a_qp treats it across lines, encode the whole
            return _qp_whole(body).replace(b"\n", CRLF)
        lines = body.split("\n")
        last = lines.pop()
        out: list[bytes] = []
        get = self.lines.get
        for line in lines:
            enc = get(line)
            if enc is None:
                enc = _qp_whole(line + "\n")
                self.lines.offer(line, enc)
            out.append(enc)
        if last:
            out.append(_qp_whole(last))
        return b"".join(out).replace(b"\n", CRLF)


def message_id(campaign_id: int, delivery_id: int, domain: str) -> str:
    """Campaign and delivery ids plus 128 random bits; never derived from the address (PHI-6)."""
    return f"<{campaign_id}.{delivery_id}.{secrets.token_hex(16)}@{domain}>"


class Composer:
    """Builds the campaign's fixed part once; `compose` fills in the per-recipient part."""

    def __init__(
        self,
        *,
        from_address: str,
        from_domain: str | None = None,
        envelope_from: str,
        list_id: str,
        reply_to: str = "",
        campaign_id: int = 0,
        signer: Callable[[bytes], bytes] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.from_address = from_address
        self.envelope_from = envelope_from
        self.domain = from_domain or from_address.rpartition("@")[2]
        self.campaign_id = campaign_id
        self.signer = signer
        self.clock = clock or (lambda: datetime.now(UTC))
        self.boundary = "=_m_" + secrets.token_hex(12)
        fixed = [
            b"MIME-Version: 1.0",
            b"List-Id: <" + list_id.encode("ascii") + b">",
        ]
        if reply_to:
            fixed.append(b"Reply-To: " + reply_to.encode("ascii"))
        fixed.append(b'Content-Type: multipart/alternative; boundary="' + self.boundary.encode() + b'"')
        self._fixed = CRLF.join(fixed) + CRLF
        b = self.boundary.encode()
        self._text_open = b"--" + b + CRLF + b'Content-Type: text/plain; charset="utf-8"' + CRLF + \
            b"Content-Transfer-Encoding: quoted-printable" + CRLF + CRLF
        self._html_open = CRLF + b"--" + b + CRLF + b'Content-Type: text/html; charset="utf-8"' + CRLF + \
            b"Content-Transfer-Encoding: quoted-printable" + CRLF + CRLF
        self._close = CRLF + b"--" + b + b"--" + CRLF
        self._from_cache: dict[str, bytes] = {}
        self._qp = _QuotedPrintable()
        self._date_at: datetime | None = None
        self._date_bytes = b""

    def _date(self) -> bytes:
        """The Date header, formatted once a second (it has one-second resolution)."""
        now = self.clock().replace(microsecond=0)
        if now != self._date_at:
            self._date_at, self._date_bytes = now, format_datetime(now).encode("ascii")
        return self._date_bytes

    def message_id(self, delivery_id: int) -> str:
        return message_id(self.campaign_id, delivery_id, self.domain)

    def _from(self, name: str) -> bytes:
        cached = self._from_cache.get(name)
        if cached is None:
            cached = b"From: " + formataddr((name, self.from_address), charset="utf-8").encode("ascii")
            self._from_cache[name] = cached
        return cached

    def compose(self, *, recipient: str, rendered: Rendered, message_id: str, unsubscribe_url: str,
                envelope_from: str | None = None) -> OutboundMessage:
        if not unsubscribe_url.startswith("https://"):
            raise InputError("unsubscribe URL must be https", rules=("STD-3",), hint="set unsubscribe.base_url to an https URL")
        if any(c in recipient for c in "\r\n,;<>"):
            raise InputError("recipient address has characters not allowed in a single address", rules=("SEND-1",))
        head = b"".join((
            self._from(rendered.from_name), CRLF,
            b"To: ", recipient.encode("utf-8"), CRLF,
            b"Subject: ", _header_value(rendered.subject, "Subject"), CRLF,
            b"Date: ", self._date(), CRLF,
            b"Message-ID: ", message_id.encode("ascii"), CRLF,
            b"List-Unsubscribe: <", unsubscribe_url.encode("ascii"), b">", CRLF,
            ONE_CLICK, CRLF,
            self._fixed,
        ))
        qp = self._qp
        body = b"".join((CRLF, self._text_open, qp(rendered.text), self._html_open, qp(rendered.html), self._close))
        data = head + body
        if self.signer is not None:
            data = self.signer(data) + data
        return OutboundMessage(envelope_from or self.envelope_from, recipient, data, message_id)
