"""Checks on what a part says (issue 13), over every delivered piece of text: visible text,
hidden text (a preheader), alt and title attributes and HTML comments, all normalised
first (mailer.lint.normalize), in English and Spanish.

- DIS202: claims to know the recipient's clinical data in commercial mail ("because you
  were diagnosed", "your doctor asked us", "sus resultados están listos"); general
  education ("if your mammogram shows") and process text ("results are sent to your
  doctor") are not claims about the recipient;
- TST101 (review): testimonials and patient stories, attributed or narrative;
- TST102 (review): patient photos and before/after images;
- DIS302/DIS303: paid or partner blocks in any purpose (the declared purpose is not
  trusted over the content, DIS-1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.lint import wording
from mailer.lint.detect import _NAME, _own_names
from mailer.lint.findings import Finding, finding
from mailer.lint.normalize import fold
from mailer.lint.settings import LintSettings
from mailer.lint.source import Source


@dataclass(frozen=True)
class Piece:
    text: str  # normalised, Jinja replaced by spaces
    line: int
    where: str  # "visible" | "hidden" | "alt" | "title" | "comment"


_STORY_CUE = re.compile(
    r"(?i)\btestimonials?\b|\btestimonios?\b|\bpatient\s+(?:stor(?:y|ies)|spotlight|corner|voices?)\b"
    r"|\bhistorias?\s+(?:de\s+(?:nuestr[oa]s\s+)?pacientes?|que\s+inspiran|reales)\b|\bin\s+(?:her|his|their)\s+own\s+words\b"
    r"|\ben\s+sus\s+propias\s+palabras\b|\bwhat\s+our\s+patients\s+say\b|\blo\s+que\s+dicen\s+nuestros\s+pacientes\b"
)
_ATTRIBUTED = re.compile(
    r"\b(?:says|said|shares|shared|writes|wrote|tells\s+us|told\s+us|recalls|explains|remembers|adds"
    r"|cuenta|dice|comparte|relata|recuerda|explica|nos\s+cuenta)[ \t,]+(?:(?:longtime|former|our|a|patient|paciente)[ \t]+)*"
    rf"(?P<name>{_NAME})"
)
_NARRATIVE = re.compile(
    rf"\b(?:Meet|Conozca\s+a|Les\s+presentamos\s+a|La\s+historia\s+de)[ \t]+(?P<name>{_NAME})"
    rf"|(?P<poss>{_NAME})[’']s\s+(?:story|journey)\b"
    rf"|(?P<from>{_NAME}(?:[ \t]+[A-Z]\.)?)[ \t]+(?:from|de)[ \t]+[A-Z][a-z]+[ \t]+(?:tells|says|shares|cuenta|dice|comparte)\b"
    rf"|(?P<aged>{_NAME}),[ \t]+(?:\d{{1,3}}|de[ \t]+\d{{1,3}}[ \t]+a[ñn]os),"
    r"|(?P<dash>(?<=[—–~][ \t])[A-ZÁÉÍÓÚÑ][a-záéíóúñ]+(?:[ \t]+(?:[A-Z]\.?|[A-ZÁÉÍÓÚÑ][a-záéíóúñ]+))?)(?=[ \t]*(?:[,.;)\n]|$))"
)
_STAFF_AFTER = re.compile(
    r"(?i)[ \t]*,?[ \t]*(?:our|nuestr[oa])\s+(?:new\s+|nuev[oa]\s+)?(?:[\w-]+\s+){0,2}"
    r"(?:coordinator|technologist|nurse|radiologist|physician|doctor|director|manager|receptionist|team|staff"
    r"|volunteer|therapist|assistant|coordinador[a]?|enfermer[oa]|t[ée]cnic[oa]|m[ée]dic[oa]|director[a]?|equipo)"
)
_NOT_PERSON = frozenset(
    """anonymous patient patients our the a an one name withheld staff team local former satisfied happy
    grateful member imaging center clinic radiology hospital department reader neighbor friend volunteer nurse
    technologist doctor dr everyone""".split()
)
_PATIENT_IMAGE = re.compile(
    r"(?i)before[\s_-]*(?:and|&|y|/)?[\s_-]*after|antes[\s_-]*(?:y|/)?[\s_-]*despu[eé]s|\bpatients?\b|pacientes?"
    r"|survivor|sobreviviente|testimonial|testimonio|spotlight"
)


def _person(name: str, settings: LintSettings) -> bool:
    words = [w.strip(".,").lower() for w in name.split()]
    if not words or any(w in _NOT_PERSON for w in words):
        return False
    own = _own_names(settings)
    return not all(w in own for w in words)


def _at(src: Source, piece: Piece, needle: str, code: str, message: str) -> Finding:
    line, col = src.locate(piece.line - src.line0 + 1 if src.line0 > 1 else piece.line, needle[:30])
    return finding(code, src.path, line, col, message)


def claims(src: Source, pieces: list[Piece], *, commercial: bool, marketing: bool) -> list[Finding]:
    out: list[Finding] = []
    if not commercial:
        return out
    for p in pieces:
        for m in wording.CLAIMS_KNOWLEDGE.finditer(p.text):
            if wording.general(p.text, m.start()):
                continue
            where = "" if p.where == "visible" else f" ({p.where} text)"
            out.append(_at(src, p, m.group(), "DIS202", f"text claims knowledge of the recipient's clinical data{where}"))
        if marketing and p.where == "visible":
            for m in wording.POSING.finditer(p.text):
                out.append(_at(src, p, m.group(), "DIS202", "marketing text poses as a clinical message"))
    return out


def testimonials(src: Source, pieces: list[Piece], settings: LintSettings) -> list[Finding]:
    """TST-1: quotes and stories about patients go to review (or come from a registered asset)."""
    out: list[Finding] = []
    story = any(_STORY_CUE.search(p.text) for p in pieces)
    for p in pieces:
        if p.where == "comment":
            continue
        for m in _ATTRIBUTED.finditer(p.text):
            before = p.text[max(0, m.start("name") - 4): m.start("name")]
            if "Dr" in before or not _person(m.group("name"), settings):
                continue
            out.append(_at(src, p, m.group("name"), "TST101", "a quote or story attributed to a named person"))
        for m in _NARRATIVE.finditer(p.text):
            name = next(g for g in (m.group("name"), m.group("poss"), m.group("from"), m.group("aged"), m.group("dash")) if g)
            if _STAFF_AFTER.match(p.text, m.end()):
                continue  # "Meet Sarah, our new front-desk coordinator"
            if m.group("dash") and not story and not re.search(r"[”\"»]\s*$", p.text[: m.start()].rstrip(" —–")):
                continue
            if _person(name, settings):
                out.append(_at(src, p, name, "TST101", "a patient story or testimonial about a named person"))
    if story and not out:
        for p in pieces:
            cue = _STORY_CUE.search(p.text)
            if cue:
                out.append(_at(src, p, cue.group(), "TST101", "a testimonial or patient story section"))
                break
    return out


def patient_images(src: Source, images: list[tuple[str, str, int]]) -> list[Finding]:
    out = []
    for url, alt, line in images:
        path = url.rsplit("/", 1)[-1]
        if _PATIENT_IMAGE.search(fold(alt)) or _PATIENT_IMAGE.search(path):
            at_line, at_col = src.locate(line, "<img")
            out.append(finding("TST102", src.path, at_line, at_col, "a patient photo or before/after image"))
    return out


def paid_blocks(src: Source, pieces: list[Piece], *, purpose: str | None, labelled: bool) -> list[Finding]:
    """DIS-1/DIS-3: a paid block counts whatever the template's declared purpose."""
    if purpose == "third-party-marketing":
        return []
    for p in pieces:
        if p.where not in ("visible", "hidden"):
            continue
        m = wording.PAID_BLOCK.search(p.text)
        if m:
            if labelled:
                return [_at(src, p, m.group(), "DIS303", f"a paid or partner block in a '{purpose}' message")]
            return [_at(src, p, m.group(), "DIS302", "a paid or partner block is not labelled as an advertisement")]
    return []
