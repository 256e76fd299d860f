"""What of an SMTP reply the ledger keeps (SEC-5, PHI-2): the enhanced status code and a
short free text with no PHI.

A relay's reply can quote the recipient ("550 5.1.1 Ben Quinn <ben@...>: no such user")
or anything the message said, and a ledger entry is kept for six years. The reply code goes
in its own column; the text keeps the enhanced status code (RFC 3463), then the free text
with addresses and long numbers replaced, this recipient's own values removed, and is
dropped entirely when the send-time PHI check (the rendered-output lint) still finds
something in it. Truncated to MAX_TEXT characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mailer.redact import scrub

MAX_TEXT = 120
WITHHELD = "<text withheld: PHI check>"
_ENHANCED = re.compile(r"^\s*(?:[245]\d\d[ -])?\s*([245]\.\d{1,3}\.\d{1,3})(?=\s|$)")


class _ReplyParts:
    """Looks like a rendered message to the send-time check: one part, the reply text."""

    def __init__(self, text: str) -> None:
        self._text = text

    def parts(self) -> dict[str, str]:
        return {"smtp-reply": self._text}


def enhanced_code(text: str) -> str:
    m = _ENHANCED.match(text or "")
    return m.group(1) if m else ""


def _clinical_terms() -> re.Pattern[str] | None:
    """The lint's clinical vocabulary (the same words the wording checks know), if present."""
    try:
        from mailer.lint import wording
    except ImportError:  # pragma: no cover - the lint is optional to this module
        return None
    pattern = getattr(wording, "CLINICAL_TERMS", None)
    return pattern if isinstance(pattern, re.Pattern) else None


def _absent(needle: str, text: str, lowered: str) -> bool:
    """NEEDLE cannot match TEXT case-insensitively: a cheap test that skips compiling a regex
    per recipient value (most replies quote none). Only claimed for ASCII on both sides, where
    `str.lower` and re.IGNORECASE agree; otherwise the regex decides."""
    return needle.isascii() and text.isascii() and needle.lower() not in lowered


def _remove_values(text: str, values: Iterable[str]) -> str:
    lowered = text.lower()
    for v in sorted({v.strip() for v in values if v and len(v.strip()) >= 2}, key=len, reverse=True):
        if not _absent(v, text, lowered):
            text = re.sub(re.escape(v), "<value>", text, flags=re.IGNORECASE)
            lowered = text.lower()
        for part in v.split():  # "Ben Quinn" quoted as "Quinn, Ben"
            if len(part) >= 3 and not _absent(part, text, lowered):
                text = re.sub(rf"\b{re.escape(part)}\b", "<value>", text, flags=re.IGNORECASE)
                lowered = text.lower()
    return text


def stored_reply(text: str | None, *, values: Sequence[str] = (),
                 check: Callable[[Any, Sequence[str]], Sequence[str]] | None = None) -> str | None:
    """The reply text as the ledger stores it: "<enhanced code> <scrubbed text>", or None."""
    if not text:
        return None
    code = enhanced_code(text)
    m = _ENHANCED.match(text)
    rest = text[m.end():] if m else re.sub(r"^\s*[245]\d\d[ -]", "", text)
    rest = _remove_values(scrub(rest), values)
    terms = _clinical_terms()
    if terms is not None:
        rest = terms.sub("<clinical>", rest)
    rest = " ".join(rest.split())
    if rest and check is not None:
        try:
            if check(_ReplyParts(rest), list(values)):
                rest = WITHHELD
        except Exception:  # noqa: BLE001 - a check that cannot run keeps nothing rather than everything
            rest = WITHHELD
    if len(rest) > MAX_TEXT:
        rest = rest[: MAX_TEXT - 1] + "…"
    out = f"{code} {rest}".strip()
    return out or None
