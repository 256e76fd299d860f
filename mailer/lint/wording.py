"""Wording checks: disguised marketing (DIS-2), sponsors (DIS-3), ad labels (SPAM-3), testimonials (TST-1).

These read literal text only (Jinja blocks masked). They are tuned to stay quiet on
honest health education: "osteoporosis affects 1 in 4 women" is fine, "because your
bone density scan showed..." is not.
"""

from __future__ import annotations

import re

from mailer.lint.findings import Finding, finding
from mailer.lint.source import Source

FAKE_REPLY = re.compile(r"^[\s\x00]*(?:re|res|fwd?|fw|aw|tr|rv|rif|sv|vs|wg)\s*:", re.IGNORECASE)
_TESTS = (r"(?:lab|test|scan|mri|ct|x-?ray|mammogram|ultrasound|biopsy|imaging|screening|blood\s*work|pathology|pet"
          r"|exam|study|dexa|colonoscopy|ekg|ecg|echocardiogram)")
_TESTS_ES = (r"(?:estudio|resonancia|tomograf[ií]a|mamograf[ií]a|ecograf[ií]a|radiograf[ií]a|examen|biopsia|prueba"
             r"|an[aá]lisis|densitometr[ií]a|esc[aá]ner)")
_CLINICAL_NOUN = r"(?:diagnosis|condition|results?|report|findings|images?|scans?|" + _TESTS[3:-1] + r")"
# Subject-like wording of a personal clinical message (headers, and body text of marketing).
POSING = re.compile(
    rf"\byour\s+(?:{_TESTS}\s+)?(?:results?|report|diagnosis|findings)\b"
    r"|\byour\s+(?:images?|results?|reports?|scans?)\s+(?:is|are)\s+(?:now\s+)?(?:ready|available|in|here)\b"
    r"|\byour\s+(?:doctor|physician|radiologist|provider)\s+(?:has\s+)?(?:ordered|requested|referred|reviewed|asked)\b"
    r"|\bsus?\s+(?:resultados?|diagn[oó]stico|informe|hallazgos|im[aá]genes)\b",
    re.IGNORECASE,
)
# Claims to know the recipient's clinical data: never acceptable in commercial mail (DIS-2).
# Each names the recipient ("you", "your", "su") together with a clinical fact; general
# education ("if your mammogram shows", "results are sent to your doctor") does not match.
CLAIMS_KNOWLEDGE = re.compile(
    rf"\bbecause\s+your\s+(?:[\w-]+\s+){{0,2}}?{_TESTS}\b[^.\n]{{0,40}}?\b(?:showed|shows|revealed|found|indicated|detected)\b"
    rf"|\b(?:because\s+of|since|following|after|based\s+on|given|due\s+to|regarding|about)\s+your\s+(?:recent\s+|latest\s+|last\s+)?(?:diagnosis|condition|results?|{_TESTS}\s+results?)\b"
    rf"|(?<!\bif\s)(?<!\bwhen\s)\byour\s+(?:recent\s+|last\s+|latest\s+)?{_TESTS}\s+(?:showed|shows|revealed|found|indicated|detected)\b"
    r"|\b(?:because|since|as|now\s+that)\s+you\s+(?:were|have\s+been|are|got)\s+(?:recently\s+)?diagnosed\b"
    r"|\byou\s+(?:were|have\s+been)\s+(?:recently\s+)?diagnosed\s+with\b"
    r"|\byour\s+(?:doctor|physician|provider|radiologist)\s+(?:has\s+)?(?:asked|requested|wants|referred|told|recommended\s+that)\s+(?:us|you)\b"
    r"|\byour\s+(?:images?|results?|reports?|scans?)\s+(?:is|are)\s+(?:now\s+)?(?:ready|available|in)\b"
    rf"|\bfollowing\s+up\s+on\s+your\s+(?:recent\s+)?{_TESTS}\b"
    rf"|\byour\s+(?:recent\s+|last\s+)?{_TESTS}\s+(?:from|on)\s+(?:last|this|\d)"
    r"|\byour\s+diagnosis\s+of\b"
    # Spanish
    rf"|\b(?:tras|despu[eé]s\s+de|debido\s+a|por|sobre|seg[uú]n|dado|con\s+base\s+en)\s+(?:los\s+(?:hallazgos|resultados)\s+de\s+)?su\s+(?:reciente\s+)?(?:diagn[oó]stico|condici[oó]n|resultados?|{_TESTS_ES})\b"
    r"|\bsu\s+diagn[oó]stico\s+de\b"
    r"|\bsus\s+(?:resultados|im[aá]genes|informes)\s+(?:ya\s+)?(?:est[aá]n|se\s+encuentran)\s+(?:listos|listas|disponibles)\b"
    r"|\b(?:porque|ya\s+que|como)\s+(?:a\s+usted\s+)?(?:le\s+diagnosticaron|fue\s+diagnosticad[oa])\b"
    r"|\bsu\s+m[eé]dico\s+(?:nos\s+)?(?:pidi[oó]|solicit[oó]|refiri[oó]|envi[oó]|orden[oó])\b",
    re.IGNORECASE,
)
_HOW_OR_IF = re.compile(
    r"(?i)\b(?:how|if|when|what|whether|understand\w*|reading|read|guide|tips|questions\s+about|c[oó]mo|si|cuando|qu[eé]"
    r"|entender|entienda|gu[ií]a|preguntas\s+sobre)\b[^.!?]{0,25}$"
)


def general(text: str, start: int) -> bool:
    """True when the words before START make a phrase general ("if you were diagnosed")."""
    return bool(_HOW_OR_IF.search(text[max(0, start - 30): start]))


def posing(text: str) -> re.Match[str] | None:
    """The first POSING match that is not general wording ("how you get your results")."""
    for m in POSING.finditer(text):
        if not general(text, m.start()):
            return m
    return None


CLINICIAN = re.compile(r"\bDr\.?\s+[A-Z]|,\s*(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C)\b|\b(?:MD|M\.D\.)\s*$")
SPONSOR = re.compile(
    r"\b(?:sponsored|paid\s+for|brought\s+to\s+you|underwritten|funded|presented)\s+by\s+(?!(?:our|a|an|the|local|one|some|several|various|trusted|leading|partners?|sponsors?)\b)[\w&]"
    r"|\bsponsor(?:ed)?\s*:\s*[\w&]|\bin\s+partnership\s+with\s+(?!(?:our|a|an|the)\b)[\w&]"
    r"|\bpatrocinad[oa]\s+por\s+(?!(?:nuestr[oa]s?|un|una|los|las|el|la)\b)[\w&]",
    re.IGNORECASE,
)
# A paid or partner block, whatever the declared purpose (DIS-1, DIS-3).
PAID_BLOCK = re.compile(
    r"\bsponsored\s+(?:by|content|post|message|section|links?|partner)\b|\bsponsor(?:ed)?\s*:|\bpaid\s+(?:partnership|content|promotion|advertisement|post)\b"
    r"|\bfrom\s+our\s+(?:partners?|sponsors?)\b|\bpartner\s+(?:offer|spotlight|content)\b|\badvertorial\b"
    r"|\bpatrocinad[oa]s?\s+por\b|\bpatrocinio\s+de\b|\bcontenido\s+(?:patrocinado|pagado)\b|\bde\s+nuestros\s+(?:socios|patrocinadores)\b",
    re.IGNORECASE,
)
AD_LABEL = re.compile(r"\badvertise?ment\b|\[\s*ad\s*\]|\bpaid\s+advertising\b|\bpublicidad\b|\banuncio\b", re.IGNORECASE)
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
# A name right after a dash, ending the line or followed by a comma, period or a tag.
def at(src: Source, offset: int, code: str, message: str) -> Finding:
    line, col = src.position(offset)
    return finding(code, src.path, line, col, message)


