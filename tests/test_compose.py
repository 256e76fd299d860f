"""compose: the memoised quoted-printable encoder gives the stdlib's bytes, line cache or not."""

from __future__ import annotations

import binascii
import email

from hypothesis import given
from hypothesis import strategies as st

from mailer.compose import _QuotedPrintable

PIECES = ["a", "b", " ", "\t", "=", ".", "é", "€", "<p>", "\n", "\r\n", "\r", "x" * 70, "y" * 80, " " * 3, " \n", "\t\n"]


def _stdlib(text: str) -> bytes:
    body = text.replace("\r\n", "\n").encode("utf-8")
    return binascii.b2a_qp(body, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=40).map("".join), min_size=1, max_size=4))
def test_memoised_lines_encode_exactly_like_b2a_qp_of_the_whole_text(texts: list[str]) -> None:
    qp = _QuotedPrintable(limit=8)  # small: the cache fills, clears and refills within one example
    for text in [*texts, *texts, *texts]:  # the second and third passes hit the cache
        assert qp(text) == _stdlib(text)


def test_a_line_seen_once_is_not_kept() -> None:
    qp = _QuotedPrintable()
    qp("Hello Ana,\nshared line\n")
    assert "Hello Ana," not in qp.lines  # unique to one recipient: only its hash is remembered
    qp("Hello Ben,\nshared line\n")
    assert "shared line" in qp.lines and "Hello Ben," not in qp.lines


def test_the_encoded_part_decodes_to_the_text() -> None:
    text = "Caf\u00e9 = 100%  \n" + "z" * 200 + "\nend\t\n"
    raw = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    msg = email.message_from_bytes(raw + _QuotedPrintable()(text))
    assert msg.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n") == text
