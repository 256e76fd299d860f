"""Property tests (issue 13) for the normaliser and the detectors it feeds, lint and send time."""

from __future__ import annotations

import unicodedata

from gen2cases import SETTINGS
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.lint import check_rendered, wording
from mailer.lint.normalize import INVISIBLE, fold, fold_map
from mailer.lint.patterns import scan

invisible = st.sampled_from(sorted(INVISIBLE))
CYRILLIC = {"o": "\u043e", "e": "\u0435", "a": "\u0430", "c": "\u0441", "p": "\u0440", "y": "\u0443"}


@settings(deadline=None)
@given(st.text())
def test_fold_is_idempotent_and_removes_every_invisible_character(text: str) -> None:
    once = fold(text)
    assert fold(once) == once
    assert not (set(once) & INVISIBLE)


@settings(deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_text_is_left_as_it_is(text: str) -> None:
    assert fold(text) == text
    assert fold_map(text) == (text, None)


@settings(deadline=None)
@given(st.text())
def test_fold_map_offsets_point_back_into_the_text_in_order(text: str) -> None:
    folded, offsets = fold_map(text)
    if offsets is None:
        assert folded == text
        return
    assert len(offsets) == len(folded)
    assert offsets == sorted(offsets)
    assert all(0 <= o < len(text) for o in offsets)
    assert not (set(folded) & INVISIBLE)


@settings(deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Mn", "Mc", "Me", "Cs"))))
def test_fold_map_agrees_with_fold_without_combining_marks(text: str) -> None:
    folded, _ = fold_map(text)
    assert unicodedata.normalize("NFC", folded) == fold(text)


def _sprinkle(draw: st.DrawFn, word: str) -> str:
    out = []
    for ch in word:
        out.append(CYRILLIC.get(ch, ch) if draw(st.booleans()) else ch)
        if ch.isalpha() and draw(st.integers(0, 3)) == 0:
            out.append(draw(invisible))
    return "".join(out)


@st.composite
def disguised(draw: st.DrawFn, phrase: str) -> str:
    return _sprinkle(draw, phrase)


@settings(deadline=None)
@given(disguised("your results"))
def test_homoglyphs_and_invisibles_do_not_hide_a_posing_subject(subject: str) -> None:
    assert wording.posing(fold(subject)) is not None


@settings(deadline=None)
@given(disguised("because you were diagnosed with"))
def test_homoglyphs_and_invisibles_do_not_hide_a_claim(text: str) -> None:
    assert wording.CLAIMS_KNOWLEDGE.search(fold(text))


@settings(deadline=None)
@given(st.integers(0, 99_999_999), st.sampled_from(["MRN ", "MR# ", "Medical record number "]), st.data())
def test_record_numbers_are_found_however_they_are_split(n: int, label: str, data: st.DataObject) -> None:
    text = f"Bring {_sprinkle(data.draw, label)}{n:08d} to the desk."
    assert "PHI306" in {h.code for h in scan(text, SETTINGS)}, text


@st.composite
def us_phone(draw: st.DrawFn) -> str:
    area = draw(st.sampled_from(["312", "415", "708", "773", "212"]))
    line = f"{draw(st.integers(100, 199)):04d}"
    sep = draw(st.sampled_from(["-", ".", " ", ""]))
    prefix = draw(st.sampled_from(["", "+1 ", "1-", "+1"]))
    first = f"({area}) " if draw(st.booleans()) else f"{area}{sep}"
    return f"{prefix}{first}555{sep}{line}"


@settings(deadline=None)
@given(us_phone())
def test_phone_numbers_in_any_common_form_are_found(phone: str) -> None:
    text = f"Questions? Text our coordinator at {phone} today."
    assert {"PHI301"} & {h.code for h in scan(text, SETTINGS)}, text


@settings(deadline=None)
@given(st.integers(1, 665), st.integers(1, 99), st.integers(1, 9999), st.sampled_from([" ", "."]))
def test_ssns_with_spaces_or_dots_are_found(a: int, b: int, c: int, sep: str) -> None:
    text = f"On file: {a:03d}{sep}{b:02d}{sep}{c:04d}."
    assert "PHI305" in {h.code for h in scan(text, SETTINGS)}, text


@settings(deadline=None)
@given(st.text(max_size=300))
def test_scan_never_fails_and_hits_lie_inside_the_text(text: str) -> None:
    for h in scan(text, SETTINGS):
        assert 0 <= h.start <= h.end <= len(text)


@settings(deadline=None)
@given(st.integers(0, 99_999_999), st.data())
def test_send_time_check_shares_the_normalisation(n: int, data: st.DataObject) -> None:
    html = f"<p>Ref MRN {data.draw(invisible)}{n:08d}</p>"
    findings = check_rendered({"html": html}, recipient_values=[], settings=SETTINGS)
    assert "PHI306" in {f.code for f in findings}
