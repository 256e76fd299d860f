"""Style rule 5: no log line carries an address or a long identifier."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from mailer.redact import RedactingFilter, scrub


def test_the_filter_scrubs_messages_args_and_tracebacks(caplog) -> None:  # type: ignore[no-untyped-def]
    logger = logging.getLogger("mailer.test")
    handler = logging.Handler()
    records: list[logging.LogRecord] = []
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("delivery to %s failed", "ann.smith@example.com")
        try:
            raise ValueError("550 <bob@example.org> user unknown, MRN 123456789")
        except ValueError:
            logger.exception("relay said no")
    finally:
        logger.removeHandler(handler)
    text = " ".join(r.getMessage() + (r.exc_text or "") for r in records)
    assert "example.com" not in text and "bob@" not in text and "123456789" not in text
    assert "<address>" in text


@given(st.emails())
def test_scrub_removes_any_address(addr: str) -> None:
    assert addr not in scrub(f"reply: 550 {addr} rejected")
