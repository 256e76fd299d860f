"""Keeps addresses and other identifiers out of logs, errors and the ledger (style rule 5)."""

from __future__ import annotations

import logging
import re

# Local part: any RFC 5322 atext or dot (not only [\w.+-]); domain: labels with dots.
_EMAIL = re.compile(r"[^\s<>@,;:\"()\[\]\\]+@[\w-]+(?:\.[\w-]+)+")
_LONG_DIGITS = re.compile(r"\b\d[\d -]{7,}\d\b")


def scrub(text: str) -> str:
    """Replace addresses and long digit runs (phone, MRN, SSN-like) with placeholders."""
    return _LONG_DIGITS.sub("<digits>", _EMAIL.sub("<address>", text))


class RedactingFilter(logging.Filter):
    """Attach to every handler: a log line never carries an address or a long number."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = scrub(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    target = logger or logging.getLogger()
    for handler in target.handlers or []:
        handler.addFilter(RedactingFilter())
    target.addFilter(RedactingFilter())
