"""Bounce and complaint messages -> a `Report`. Pure: bytes in, a decision's inputs out.

Standard reports first, with the stdlib parser: RFC 3464 delivery status notifications
(`multipart/report; report-type=delivery-status`) and RFC 5965 feedback reports
(`report-type=feedback-report`). Then auto-replies (RFC 3834 `Auto-Submitted`, the
usual vacation headers), which are kept for review and never acted on. Anything else
goes to `flufl.bounce`, whose detectors know the many non-standard formats of older
MTAs and providers. What none of them recognises is `unparseable` (kept for review);
a report whose own fields are broken is `malformed` (rejected). Nothing here raises on
any input: a bug in a detector makes the message unparseable, not a crash.

The reported recipient address is returned only so the processor can compare its lookup
hash with the delivery's; it is never stored, logged or printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from mailer.bounces.verp import tokens_in

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
AUTO_REPLY, UNPARSEABLE, INFORMATIONAL = "auto-reply", "unparseable", "informational"
MALFORMED, OVERSIZED = "malformed", "oversized"
ACTIONABLE = (HARD, SOFT, COMPLAINT)
REVIEW = (AUTO_REPLY, UNPARSEABLE, INFORMATIONAL)  # kept aside, never acted on
REJECTED = (MALFORMED, OVERSIZED)

_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_STATUS_IN_TEXT = re.compile(rb"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# mailer's own Message-ID shape (compose.message_id): campaign.delivery.128 random bits
_OUR_MESSAGE_ID = re.compile(rb"<(\d{1,12})\.(\d{1,12})\.([0-9a-f]{32})@([A-Za-z0-9.-]{1,253})>")
_COMPLAINT_TYPES = ("abuse", "fraud", "virus")
_AUTO_SUBJECT = re.compile(r"\b(out of (the )?office|auto(matic)?[- ]?(reply|response)|autoreply|vacation|abwesenheit)\b",
                           re.IGNORECASE)
_TOKEN_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_TEXT_SCAN = 262_144  # bytes of a non-standard bounce searched for a status code or Message-ID


@dataclass(frozen=True)
class Report:
    kind: str  # one of ACTIONABLE, REVIEW or REJECTED
    status: str = ""  # RFC 3463 code ("5.1.1") or the feedback type ("abuse")
    reason: str = ""  # why it is kept aside or rejected; never content
    recipients: tuple[str, ...] = ()  # reported recipient addresses (memory only)
    redacted_ok: bool = False  # a feedback report: providers redact the local part, compare the domain
    tokens: tuple[str, ...] = ()  # return-path tokens, the envelope's first
    message_ids: tuple[tuple[int, int, str], ...] = ()  # (campaign, delivery, full Message-ID) of ours
    parser: str = ""  # rfc3464 | rfc5965 | flufl | headers

    @property
    def actionable(self) -> bool:
        return self.kind in ACTIONABLE


@dataclass
class _Found:
    tokens: list[str] = field(default_factory=list)
    ids: list[tuple[int, int, str]] = field(default_factory=list)


def classify(raw: bytes, /, *, local_part: str = "bounces", domain: str = "", envelope_to: Sequence[str] = (),
             max_bytes: int = 1_048_576) -> Report:
    """What RAW is. Never raises; never reads more than `max_bytes`."""
    if len(raw) > max_bytes:
        return Report(OVERSIZED, reason=f"over {max_bytes} bytes")
    found = _Found()
    if domain:
        for rcpt in envelope_to:
            found.tokens += tokens_in(rcpt, local_part, domain)
    try:
        msg = message_from_bytes(raw, policy=compat32)
        report = _classify(msg, raw, found, local_part, domain)
    except Exception as err:  # noqa: BLE001 - any input: a parser bug is a message for review, never a crash
        return Report(UNPARSEABLE, reason=f"parser error {type(err).__name__}", tokens=tuple(dict.fromkeys(found.tokens)))
    return report


def _header_tokens(msg: Message, found: _Found, local_part: str, domain: str, names: Sequence[str]) -> None:
    if not domain:
        return
    for name in names:
        for value in msg.get_all(name, ()) or ():
            found.tokens += tokens_in(str(value), local_part, domain)


def _our_ids(data: bytes, found: _Found) -> None:
    for m in _OUR_MESSAGE_ID.finditer(data[:_TEXT_SCAN]):
        found.ids.append((int(m.group(1)), int(m.group(2)), m.group(0).decode("ascii")))


def _original(part: Message, found: _Found, local_part: str, domain: str) -> None:
    """The returned original (message/rfc822 or text/rfc822-headers): our Message-ID and return path."""
    ctype = part.get_content_type()
    if ctype == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        if isinstance(inner, Message):
            _header_tokens(inner, found, local_part, domain, ("Return-Path",))
            mid = inner.get("Message-ID")
            if mid:
                _our_ids(str(mid).encode("ascii", "replace"), found)
    elif ctype == "text/rfc822-headers":
        body = part.get_payload(decode=True)
        body = body if isinstance(body, bytes) else b""
        headers = BytesHeaderParser(policy=compat32).parsebytes(body[:_TEXT_SCAN])
        _header_tokens(headers, found, local_part, domain, ("Return-Path",))
        mid = headers.get("Message-ID")
        if mid:
            _our_ids(str(mid).encode("ascii", "replace"), found)


def _address(value: str | None) -> str:
    """`rfc822; someone@example.org` -> the address (RFC 3464 §2.3.1-2.3.2)."""
    if not value:
        return ""
    kind, _, addr = str(value).partition(";")
    if not addr:
        addr = kind
    elif kind.strip().lower() not in ("rfc822", "rfc-822"):
        return ""
    return " ".join(addr.split()).strip("<> ")


def _done(kind: str, found: _Found, **kw: object) -> Report:
    return Report(kind, tokens=tuple(dict.fromkeys(found.tokens)), message_ids=tuple(dict.fromkeys(found.ids)),
                  **kw)  # type: ignore[arg-type]


def _classify(msg: Message, raw: bytes, found: _Found, local_part: str, domain: str) -> Report:
    _header_tokens(msg, found, local_part, domain, _TOKEN_HEADERS)
    if msg.get_content_type() == "multipart/report":
        rtype = str(msg.get_param("report-type", "") or "").lower()
        parts = [p for p in msg.walk() if isinstance(p, Message)]
        for p in parts:
            _original(p, found, local_part, domain)
        if rtype == "delivery-status":
            return _dsn(parts, found, local_part, domain)
        if rtype == "feedback-report":
            return _arf(parts, found)
    if _auto_reply(msg):
        return _done(AUTO_REPLY, found, reason="auto-reply (RFC 3834)", parser="headers")
    return _nonstandard(msg, raw, found)


def _dsn(parts: list[Message], found: _Found, local_part: str, domain: str) -> Report:
    status_part = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        return _done(MALFORMED, found, reason="delivery-status report without a message/delivery-status part",
                     parser="rfc3464")
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        return _done(MALFORMED, found, reason="delivery-status part without a per-recipient block", parser="rfc3464")
    per_message = blocks[0]
    if not isinstance(per_message, Message):
        return _done(MALFORMED, found, reason="unreadable per-message block", parser="rfc3464")
    _header_tokens(per_message, found, local_part, domain, ("X-Postfix-Sender", "X-Original-Sender"))
    worst: tuple[int, str, str] | None = None  # (rank, kind, status)
    recipients: list[str] = []
    for block in blocks[1:]:
        if not isinstance(block, Message):
            return _done(MALFORMED, found, reason="unreadable per-recipient block", parser="rfc3464")
        action = str(block.get("Action", "")).strip().lower()
        status = str(block.get("Status", "")).strip().split(" ")[0]
        if not action or not _STATUS.match(status):
            return _done(MALFORMED, found, reason="per-recipient block without a valid Action and Status",
                         parser="rfc3464")
        for name in ("Original-Recipient", "Final-Recipient"):
            a = _address(block.get(name))
            if a:
                recipients.append(a)
        if action == "failed" and status.startswith("5"):
            cand = (3, HARD, status)
        elif action in ("failed", "delayed") and status.startswith("4"):
            cand = (2, SOFT, status)
        elif action == "failed":  # "failed" with a 2.x.x status contradicts itself
            return _done(MALFORMED, found, reason="Action failed with a success Status", parser="rfc3464")
        else:  # delivered, relayed, expanded: not a bounce
            cand = (1, INFORMATIONAL, status)
        if worst is None or cand[0] > worst[0]:
            worst = cand
    assert worst is not None
    _, kind, status = worst
    if kind == INFORMATIONAL:
        return _done(kind, found, status=status, reason="delivery-status report of a success", parser="rfc3464")
    return _done(kind, found, status=status, recipients=tuple(dict.fromkeys(recipients)), parser="rfc3464")


def _arf(parts: list[Message], found: _Found) -> Report:
    fb = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if fb is None:
        return _done(MALFORMED, found, reason="feedback report without a message/feedback-report part",
                     parser="rfc5965")
    fields = fb.get_payload()
    fields = fields[0] if isinstance(fields, list) and fields else fields
    if not isinstance(fields, Message):
        return _done(MALFORMED, found, reason="unreadable message/feedback-report part", parser="rfc5965")
    ftype = str(fields.get("Feedback-Type", "")).strip().lower()
    if not ftype or not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", ftype):
        return _done(MALFORMED, found, reason="feedback report without a valid Feedback-Type", parser="rfc5965")
    recipients = [a for a in (_address(v) for name in ("Original-Rcpt-To", "Removal-Recipient")
                              for v in (fields.get_all(name, ()) or ())) if a]
    if ftype in _COMPLAINT_TYPES:
        return _done(COMPLAINT, found, status=ftype, recipients=tuple(dict.fromkeys(recipients)), redacted_ok=True,
                     parser="rfc5965")
    return _done(INFORMATIONAL, found, status=ftype, reason=f"feedback type {ftype} is not a complaint",
                 parser="rfc5965")


def _auto_reply(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) is not None for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(str(msg.get("Subject", ""))))


def _nonstandard(msg: Message, raw: bytes, found: _Found) -> Report:
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(msg)  # flufl.bounce: (temporary, permanent)
    _our_ids(raw[raw.find(b"\n\n") + 1 if b"\n\n" in raw else 0:], found)
    if not permanent and not temporary:
        return _done(UNPARSEABLE, found, reason="not a report the parsers recognise")
    codes = [m.group(0).decode() for m in _STATUS_IN_TEXT.finditer(raw[:_TEXT_SCAN])]
    addrs = tuple(dict.fromkeys(a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)
                                for a in sorted(permanent or temporary)))
    if permanent:
        status = next((c for c in codes if c.startswith("5")), "5.0.0")
        return _done(HARD, found, status=status, recipients=addrs, parser="flufl")
    status = next((c for c in codes if c.startswith("4")), "4.0.0")
    return _done(SOFT, found, status=status, recipients=addrs, parser="flufl")
