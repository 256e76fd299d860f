"""The parser on a corpus of DSN and ARF samples in several providers' formats (issue 19).

Postfix, Gmail, Exchange/Outlook, Yahoo (RFC 3464); Exim and qmail (non-standard, via
flufl.bounce); Yahoo and AOL feedback reports (RFC 5965); vacation and Outlook
auto-replies; success DSNs; a human reply; broken reports. EXPECTED.txt gives each
file's class and status. Plus property tests: random bytes never crash the parser and
are never acted on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.bounces.parse import ACTIONABLE, OVERSIZED, classify

CORPUS = Path(__file__).parent / "corpus"
DOMAIN = "bounce.riverside-imaging.example"


def _expected() -> list[tuple[str, str, str]]:
    rows = []
    for line in (CORPUS / "EXPECTED.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, klass, status = line.split()
            rows.append((name, klass, status))
    return rows


CASES = _expected()


def test_every_sample_is_listed() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(n for n, _k, _s in CASES)


@pytest.mark.parametrize(("name", "klass", "status"), CASES, ids=[c[0] for c in CASES])
def test_sample_has_its_class_and_status(name: str, klass: str, status: str) -> None:
    r = classify((CORPUS / name).read_bytes(), domain=DOMAIN)
    assert r.kind == klass, r.reason
    if status != "-":
        assert r.status == status


def test_the_return_path_token_and_our_message_id_are_found() -> None:
    r = classify((CORPUS / "postfix-hard-5.1.1.eml").read_bytes(), domain=DOMAIN)
    assert r.tokens == ("0f1e2d3c4b5a69788796a5b4c3d2e1f0",)
    assert r.message_ids == ((1, 5, "<1.5.00112233445566778899aabbccddeeff@riverside-imaging.example>"),)
    assert r.recipients == ("no.such.one@patients.example.com",)
    # an envelope recipient (the SMTP receiver's RCPT TO) comes first
    env = classify((CORPUS / "postfix-hard-5.1.1.eml").read_bytes(), domain=DOMAIN,
                   envelope_to=("bounces+" + "a" * 32 + "@" + DOMAIN,))
    assert env.tokens[0] == "a" * 32


def test_complaints_find_the_token_in_the_returned_message() -> None:
    r = classify((CORPUS / "aol-arf-abuse-redacted.eml").read_bytes(), domain=DOMAIN)
    assert r.kind == "complaint" and r.tokens == ("e" * 32,) and r.redacted_ok


def test_oversized_is_rejected_unread() -> None:
    raw = (CORPUS / "postfix-hard-5.1.1.eml").read_bytes()
    r = classify(raw + b"x" * 5000, domain=DOMAIN, max_bytes=len(raw))
    assert r.kind == OVERSIZED and not r.tokens


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash_and_never_act(data: bytes) -> None:
    r = classify(data, domain=DOMAIN)
    assert r.kind not in ACTIONABLE or r.recipients  # acting needs a reported recipient ...
    assert r.kind not in ACTIONABLE or r.parser == "flufl"  # ... and random bytes are never a standard report


_HEADER = st.sampled_from([b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n",
                           b"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n",
                           b"Auto-Submitted: auto-replied\n", b"X-Failed-Recipients: a@b.example\n", b""])
_PART = st.sampled_from([b"--b\nContent-Type: message/delivery-status\n\n", b"--b\nContent-Type: message/feedback-report\n\n",
                         b"--b\nContent-Type: message/rfc822\n\n", b"--b\nContent-Type: text/rfc822-headers\n\n",
                         b"--b--\n", b"Action: failed\n", b"Status: 5.1.1\n", b"Status: 9.9\n", b"Feedback-Type: abuse\n",
                         b"Final-Recipient: rfc822; x@y.example\n", b"\n"])


@settings(max_examples=300)
@given(_HEADER, st.lists(st.one_of(_PART, st.binary(max_size=64)), max_size=20))
def test_report_shaped_noise_never_crashes(header: bytes, parts: list[bytes]) -> None:
    raw = b"From: x@y.example\n" + header + b"\n" + b"".join(parts)
    r = classify(raw, domain=DOMAIN)
    assert r.kind  # always a class; never an exception
    if r.kind in ACTIONABLE and r.parser == "rfc3464":
        assert r.status[0] in "45"
