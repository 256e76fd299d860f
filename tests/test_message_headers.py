"""STD-1..STD-3 and SEND-1 on the wire: the headers each recipient's message carries."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from mailer import sending
from mailer.compose import Composer
from mailer.errors import InputError
from mailer.templates import Rendered
from tests.conftest import NO_GATES
from tests.test_send_support import newsletter, parsed

SINGLE = ("From", "To", "Date", "Message-ID", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id",
          "MIME-Version", "Content-Type")


async def test_each_message_has_the_required_headers_once(sample_rt, sink) -> None:
    c = newsletter(sample_rt)
    summary = await sending.send(sample_rt, c.id, preflight=NO_GATES)
    assert summary.sent == len(sink.messages) > 0
    ids = set()
    for m in sink.messages:
        rcpt = m.rcpt_tos[0]
        msg = parsed(m.data)
        for name in SINGLE:  # STD-1: single-instance headers appear exactly once
            assert len(msg.get_all(name) or []) == 1, name
        assert msg["To"] == rcpt and msg["Cc"] is None and msg["Bcc"] is None  # SEND-1
        assert msg["From"].addresses[0].addr_spec == "news@riverside-imaging.example"
        assert msg["Date"].datetime is not None
        # unique, from campaign and delivery ids plus randomness, never from the address (PHI-6)
        mid = msg["Message-ID"]
        assert re.fullmatch(rf"<{c.id}\.\d+\.[0-9a-f]{{32}}@riverside-imaging\.example>", mid)
        assert rcpt.split("@")[0] not in mid
        ids.add(mid)
        # STD-2/STD-3: one https URI with an opaque token; the exact one-click value
        lu = msg["List-Unsubscribe"]
        assert re.fullmatch(r"<https://riverside-imaging\.example/u/[A-Za-z0-9_-]{22}>", lu), lu
        assert rcpt.split("@")[0] not in lu
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Id"] == "<news.riverside-imaging.example>"  # no PHI: the configured list id
        # multipart/alternative with a text and an HTML part
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert lu[1:-1] in msg.get_body(("html",)).get_content()
        assert all(len(line) <= 998 for line in m.data.split(b"\r\n"))
    assert len(ids) == len(sink.messages)


def _composer(**kw) -> Composer:  # type: ignore[no-untyped-def]
    return Composer(from_address="news@example.org", envelope_from="bounces@example.org", list_id="news.example.org",
                    campaign_id=7, clock=lambda: datetime(2026, 11, 28, 12, 0, tzinfo=UTC), **kw)


def _rendered(subject: str = "Hello", from_name: str = "Clinic") -> Rendered:
    return Rendered(subject=subject, preheader="", from_name=from_name, html="<p>Hi é " + "x" * 2000 + "</p>",
                    text="Hi é\n" + "y " * 1000)


def test_non_ascii_subject_and_long_lines_stay_within_the_standard() -> None:
    m = _composer().compose(recipient="a@example.com", rendered=_rendered(("Nouveautés à la clinique " * 5).strip(), "Clinique Évry"),
                            message_id="<7.1.ab@example.org>", unsubscribe_url="https://example.org/u/tok")
    assert m.data.isascii()
    assert all(len(line) <= 998 for line in m.data.split(b"\r\n"))
    msg = parsed(m.data)
    assert msg["Subject"] == ("Nouveautés à la clinique " * 5).strip()
    assert msg["From"].addresses[0].display_name == "Clinique Évry"
    assert "é" in msg.get_body(("plain",)).get_content()
    assert msg["Date"].datetime == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("recipient", "url", "rule"), [
    ("a@example.com", "http://example.org/u/tok", "STD-3"),
    ("a@example.com, b@example.com", "https://example.org/u/tok", "SEND-1"),
    ("a@example.com\r\nBcc: b@example.com", "https://example.org/u/tok", "SEND-1"),
], ids=["http-unsubscribe", "two-recipients", "header-injection"])
def test_compose_refuses(recipient: str, url: str, rule: str) -> None:
    with pytest.raises(InputError) as info:
        _composer().compose(recipient=recipient, rendered=_rendered(), message_id="<7.1.ab@example.org>",
                            unsubscribe_url=url)
    assert rule in info.value.rules


def test_message_ids_are_random_and_carry_the_ids() -> None:
    comp = _composer()
    ids = {comp.message_id(42) for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("<7.42.") and i.endswith("@example.org>") for i in ids)
