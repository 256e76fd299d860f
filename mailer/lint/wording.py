"""Wording checks: disguised marketing (DIS-2), sponsors (DIS-3), ad labels (SPAM-3), testimonials (TST-1).

These read literal text only (Jinja blocks masked). They are tuned to stay quiet on
honest health education: "osteoporosis affects 1 in 4 women" is fine, "because your
bone density scan showed..." is not.
"""

from __future__ import annotations

import re

from mailer.lint.findings import Finding, finding
from mailer.lint.source import Source

FAKE_REPLY = re.compile(r"^[\s\x00]*(?:re|fwd?|fw|aw|tr)\s*:", re.IGNORECASE)
_TESTS = r"(?:lab|test|scan|mri|ct|x-?ray|mammogram|ultrasound|biopsy|imaging|screening|blood\s*work|pathology|pet)"
# Subject-like wording of a personal clinical message.
POSING = re.compile(
    rf"\byour\s+(?:{_TESTS}\s+)?(?:results?|report|diagnosis|findings|images?\s+(?:is|are)\s+ready)\b"
    r"|\byour\s+(?:doctor|physician|radiologist)\s+(?:has\s+)?(?:ordered|requested|referred|reviewed)\b",
    re.IGNORECASE,
)
# Claims to know the recipient's clinical data: never acceptable in commercial mail.
CLAIMS_KNOWLEDGE = re.compile(
    rf"\bbecause\s+your\s+(?:[\w-]+\s+){{0,2}}?{_TESTS}\b[^.\n]{{0,40}}?\b(?:showed|shows|revealed|found|indicated|detected)\b"
    r"|\bbecause\s+of\s+your\s+(?:recent\s+)?(?:diagnosis|condition|results?)\b"
    rf"|\byour\s+(?:recent\s+|last\s+|latest\s+)?{_TESTS}\s+(?:showed|shows|revealed|found|indicated|detected)\b",
    re.IGNORECASE,
)
CLINICIAN = re.compile(r"\bDr\.?\s+[A-Z]|,\s*(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C)\b|\b(?:MD|M\.D\.)\s*$")
SPONSOR = re.compile(
    r"\b(?:sponsored|paid\s+for|brought\s+to\s+you|underwritten|funded|presented)\s+by\s+[\w&]"
    r"|\bsponsor(?:ed)?\s*:\s*[\w&]|\bin\s+partnership\s+with\s+[\w&]",
    re.IGNORECASE,
)
AD_LABEL = re.compile(r"\badvertise?ment\b|\[\s*ad\s*\]|\bpaid\s+advertising\b", re.IGNORECASE)
PROMO = re.compile(
    r"\b(?:\d+\s*%\s*off|discount\w*|special\s+offer|limited[-\s]time|act\s+now|book\s+(?:now|today)"
    r"|free\s+(?:gift|trial|consultation|screening|scan)|save\s+\$?\d+|sale|deals?|promo(?:tion)?|coupons?"
    r"|offer\s+ends)\b",
    re.IGNORECASE,
)
CLINICAL_TERMS = re.compile(
    r"\b(?:cancer|tumou?rs?|oncolog\w*|osteoporosis|osteopenia|bone\s+density|dexa|mammogra\w*|diabet\w*"
    r"|pregnan\w*|hiv|aids|hepatitis|dementia|alzheimer\w*|parkinson\w*|depress\w*|stroke|aneurysms?"
    r"|nodules?|lesions?|fractures?|arthritis|copd|emphysema|biops\w*|prostate|breast|colonoscopy"
    r"|heart\s+disease|kidney\s+disease|liver\s+disease|thyroid|multiple\s+sclerosis)\b",
    re.IGNORECASE,
)
_TESTIMONIAL = re.compile(
    r"\btestimonials?\b|\bpatient\s+stor(?:y|ies)\b|\bin\s+(?:her|his|their)\s+own\s+words\b"
    r"|“[^”\n]{20,}”|\"[^\"\n]{20,}\"",
    re.IGNORECASE,
)
_BLOCKQUOTE = re.compile(r"<(?:blockquote|q)\b|class\s*=\s*[\"'][^\"']*testimonial", re.IGNORECASE)
# A name right after a dash, ending the line or followed by a comma, period or a tag.
_ATTRIBUTION = re.compile(
    r"(?:^|[\s(>])(?:—|–|--|-|~)[ \t]*(?P<a>[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]*\.?)?)(?=[ \t]*(?:[,.;:)<\n]|$)|[ \t]{2,})"
    r"|\b(?:says|said|shares|writes|explains|recalls)\s+(?:patient\s+)?(?P<b>[A-Z][a-z]+(?:\s+[A-Z][a-z]*\.?)?)"
)
_NOT_A_PERSON = frozenset(
    {"anonymous", "a", "an", "the", "patient", "one", "our", "name", "withheld", "staff", "team",
     "local", "former", "satisfied", "happy", "grateful", "member", "mother", "father", "daughter",
     "son", "wife", "husband", "imaging", "center", "clinic", "radiology", "hospital", "department",
     "reader", "neighbor", "friend", "volunteer", "nurse", "technologist"}
)
AUTH_REF = re.compile(
    r"authori[sz]ation\s*(?:ref(?:erence)?|id|no\.?|number|#)?\s*[:#]?\s*[A-Z0-9][A-Z0-9-]*\d[A-Z0-9-]*"
    r"|data-authorization\s*=\s*[\"'][^\"']+",
    re.IGNORECASE,
)


def at(src: Source, offset: int, code: str, message: str) -> Finding:
    line, col = src.position(offset)
    return finding(code, src.path, line, col, message)


def testimonials(src: Source, text: str, marked_html: str, *, authorized: bool) -> list[Finding]:
    """TST-1: an attributed testimonial needs an authorization reference in the template.

    TEXT is the visible literal text; MARKED_HTML is the masked source (for <blockquote>).
    """
    if authorized:
        return []
    windows = [(m.start(), m.end() + 120) for m in _TESTIMONIAL.finditer(text)]
    for m in _BLOCKQUOTE.finditer(marked_html):
        close = re.compile(r"</(?:blockquote|q)\s*>|</div\s*>", re.IGNORECASE).search(marked_html, m.end())
        windows.append((m.start(), (close.end() if close else m.end() + 400) + 120))
    out: list[Finding] = []
    seen: set[int] = set()
    for start, end in sorted(windows):
        for m in _ATTRIBUTION.finditer(text, start, min(len(text), end)):
            group = "a" if m.group("a") else "b"
            words = m.group(group).replace(".", "").lower().split()
            if any(w in _NOT_A_PERSON for w in words) or m.start(group) in seen:
                continue
            tail = text[m.end(group) : m.end(group) + 40].lower()
            if re.match(r"\s*(?:team|staff|imaging|center|clinic|radiology|hospital)\b", tail):
                continue
            seen.add(m.start(group))
            out.append(at(src, m.start(group), "TST101", "testimonial attributed to a named person without an authorization reference"))
    return out
