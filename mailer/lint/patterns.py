"""Safe Harbor identifier patterns (rules.md section 3 table, rows A-R) for literal and rendered text.

One scanner serves the template lint and the per-message send-time check, so it is
built for speed: every regex is compiled once and starts with a literal or a character
class (the regex engine then skips ahead in C), keyword families run only where a
lower-cased keyword occurs, and Python code runs only on real candidates. A hit names
the pattern class, never the matched text.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from urllib.parse import urlsplit

from mailer.lint.detect import identifier_hits, name_hits, phone_context, phone_hits
from mailer.lint.normalize import fold_map, origin
from mailer.lint.settings import LintSettings


@dataclass(frozen=True, slots=True)
class Hit:
    code: str
    start: int
    end: int
    what: str  # the pattern class, e.g. "phone number"; never the value


_MONTHS = {
    m: i
    for i, names in enumerate(
        (
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
            ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for m in names
}
_MONTH_ALT = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_STREET_SUFFIX = (
    "St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Dr|Drive|Ln|Lane|Way|Ct|Court|Pl|Place|"
    "Pkwy|Parkway|Hwy|Highway|Cir|Circle|Ter|Terrace|Sq|Square"
)
_MBI = r"[AC-HJKMNP-RT-Y]"

# Everything that starts with a digit, in one pass. The first digit must start a run (not
# glued to a word, a decimal or a thousands separator) and look like more than a CSS
# length; branches after it are ordered so that a specific shape wins over a generic one.
_DIGIT_RE = re.compile(
    r"\d(?<![\w.,]\d)(?=\d{0,2}[\s/.()-]|\d{3}|[A-Z])(?:"
    r"(?P<iso>\d{3}-[01]\d-[0-3]\d)(?!\d)"
    r"|(?P<ssn>\d{2}-\d{2}-\d{4}|\d{8})(?![\d-])"
    r"|(?P<date>\d?[/-][0-3]?\d[/-](?:\d{4}|\d{2}))(?![\d/])"
    rf"|(?P<mbi>(?<=[1-9]){_MBI}[A-Z\d]\d-?{_MBI}[A-Z\d]\d-?{_MBI}{{2}}\d{{2}})(?!\w)"
    r"|(?P<long>\d{12,18}|\d{3}(?:[ -]\d{4}){2}[ -]\d{1,7})(?![\d-])"
    r"|(?P<phone1>(?<=1)[\s.-]?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4})(?![\d-]|\.\d)"
    r"|(?P<phone>\d{2}\)?[\s.-]?\d{3}[\s.-]?\d{4})(?![\d-]|\.\d)"
    r"|(?P<ip>\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?!\d|\.\d)"
    r"|(?P<age>(?:(?<=9)\d|(?<=1)[0-4]\d)\s*-?\s*(?:years?[\s-]+old|yrs?\.?\s+old|y/?o)\b)"
    rf"|(?P<dmy>\d?\s+(?:{_MONTH_ALT})[a-z]*\.?,?\s+\d{{4}})(?!\d)"
    rf"|(?P<street>\d{{0,5}}\s+(?:[A-Z0-9][\w'.-]*\s+){{1,3}}(?:{_STREET_SUFFIX})\b\.?)"
    r"|(?P<zip>\d{4}(?:-\d{4})?)(?![\d-])"
    r")"
)
_MONTH_RE = re.compile(
    rf"(?:{_MONTH_ALT})[a-z]{{0,6}}\.?\s+(?:\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}}\b)?|\d{{4}}\b)"
)
_DEA_RE = re.compile(r"[A-Z][A-Z]\d{7}(?!\d)")  # [A-Z][A-Z], not {2}: keeps the charset skip-ahead
_DOMAIN_RE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IPV6_RE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}(?::[0-9A-Fa-f]{1,4}){1,6}(?![\w:])")

_CODE = r"\W{0,3}(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,}"
_NO = r"\s*(?:id\b|#|number\b|no\b\.?)"
_NO_ES = r"\s*(?:id\b|#|number\b|no\b\.?|n[úu]mero\b|n\.?[º°]\.?)"
# (lower-case trigger, anchored pattern, code, pattern class). The pattern is matched at
# each place the trigger occurs, so the regex never scans the whole text.
_Keyword = tuple[str, re.Pattern[str], str, str]
_KEYWORDS: tuple[_Keyword, ...] = tuple(
    (trigger, re.compile(pattern, re.IGNORECASE), code, what)
    for trigger, pattern, code, what in (
        ("mrn", r"(?<![a-z])MRN\b" + _CODE, "PHI306", "medical record number"),
        ("medical record", r"medical\s+record(?:\s+(?:number|no\.?|#))?" + _CODE, "PHI306", "medical record number"),
        ("patient", r"patient" + _NO + _CODE, "PHI306", "patient ID"),
        ("chart", r"chart" + _NO + _CODE, "PHI306", "medical record number"),
        ("member", r"member" + _NO + _CODE, "PHI307", "health plan member number"),
        ("subscriber", r"subscriber" + _NO + _CODE, "PHI307", "health plan subscriber number"),
        ("policy", r"policy" + _NO + _CODE, "PHI307", "health plan policy number"),
        ("medicare", r"medicare" + _NO + "?" + _CODE, "PHI307", "Medicare beneficiary number"),
        ("account", r"account" + _NO + _CODE, "PHI308", "account number"),
        ("acct", r"acct\.?" + _NO + "?" + _CODE, "PHI308", "account number"),
        ("licen", r"licen[cs]e" + _NO + _CODE, "PHI309", "license number"),
        ("certificate", r"certificate" + _NO + _CODE, "PHI309", "certificate number"),
        ("dl", r"(?<![a-z])DL" + _NO + "?" + _CODE, "PHI309", "driver's license number"),
        ("dea", r"(?<![a-z])DEA" + _NO + r"?\W{0,3}[A-Z]{2}\d{7}", "PHI309", "DEA number"),
        ("vin", r"(?<![a-z])VIN\b\W{0,3}[A-HJ-NPR-Z0-9]{17}\b", "PHI310", "vehicle identification number"),
        ("plate", r"(?<![a-z])plate" + _NO + "?" + r"\W{0,3}(?=[A-Z0-9 -]*\d)[A-Z0-9][A-Z0-9 -]{3,8}", "PHI310", "license plate"),
        ("s/n", r"(?<![a-z])S/N" + _CODE, "PHI311", "device serial number"),
        ("serial", r"serial" + _NO + "?" + _CODE, "PHI311", "device serial number"),
        ("udi", r"(?<![a-z])UDI\b" + _CODE, "PHI311", "device identifier"),
        ("imei", r"(?<![a-z])IMEI\b" + _CODE, "PHI311", "device identifier"),
        ("(01)", r"\(01\)\d{14}", "PHI311", "GS1 device identifier"),
        ("rx", r"(?<![a-z])Rx\s*#?\s*\d{6,}", "PHI315", "prescription number"),
        # issue 13: record words in Spanish, accession/encounter/claim/group/case numbers,
        # and personal or reference codes ("any other unique identifying number or code").
        ("mr#", r"mr#" + _CODE, "PHI306", "medical record number"),
        ("mr #", r"mr\s#" + _CODE, "PHI306", "medical record number"),
        ("expediente", r"expediente" + _NO_ES + "?" + _CODE, "PHI306", "medical record number"),
        ("historia", r"historia\s+cl[íi]nica" + _NO_ES + "?" + _CODE, "PHI306", "medical record number"),
        ("accession", r"accession" + _NO_ES + "?" + _CODE, "PHI320", "accession number"),
        ("encounter", r"encounter" + _NO_ES + "?" + _CODE, "PHI320", "encounter number"),
        ("claim", r"claim" + _NO_ES + _CODE, "PHI320", "claim number"),
        ("group", r"group" + _NO_ES + _CODE, "PHI320", "group number"),
        ("case", r"case" + _NO_ES + _CODE, "PHI320", "case number"),
        ("study", r"study" + _NO_ES + _CODE, "PHI320", "study number"),
        ("visit", r"visit" + _NO_ES + _CODE, "PHI320", "visit number"),
        ("reclam", r"reclam(?:o|aci[óo]n)" + _NO_ES + _CODE, "PHI320", "claim number"),
        ("grupo", r"grupo" + _NO_ES + _CODE, "PHI320", "group number"),
        ("caso", r"caso" + _NO_ES + _CODE, "PHI320", "case number"),
        ("afiliado", r"afiliado" + _NO_ES + "?" + _CODE, "PHI307", "health plan member number"),
        ("póliza", r"p[óo]liza" + _NO_ES + "?" + _CODE, "PHI307", "health plan policy number"),
        ("personal code", r"personal\s+code" + _CODE, "PHI321", "personal code"),
        ("referral code", r"referral\s+code" + _CODE, "PHI321", "personal code"),
        ("access code", r"access\s+code" + _CODE, "PHI321", "personal code"),
        ("reference", r"reference" + _NO_ES + "?" + _CODE, "PHI321", "reference code"),
        ("confirmation", r"confirmation" + _NO_ES + "?" + _CODE, "PHI321", "confirmation code"),
        ("código", r"c[óo]digo\s+personal" + _CODE, "PHI321", "personal code"),
        ("referencia", r"referencia" + _NO_ES + "?" + _CODE, "PHI321", "reference code"),
        ("fingerprint", r"fingerprint", "PHI314", "biometric identifier"),
        ("voiceprint", r"voiceprint", "PHI314", "biometric identifier"),
        ("retina", r"retina\w*\s+(?:scan|print|pattern)", "PHI314", "biometric identifier"),
        ("age", r"(?<![a-z])age[ds]?\s*:?\s*(?:of\s+)?(?:9\d|1[0-4]\d)\b(?!\s*(?:\+|and\s+(?:over|older|up|above)|or\s+(?:over|older|above)))", "PHI502", "age over 89"),
    )
)
# Families whose identifier is a code with a digit are looked for only in the few
# characters before such a code (found in one pass); the others everywhere.
_CODE_KEYWORDS = tuple(k for k in _KEYWORDS if k[2] not in ("PHI314", "PHI502"))
_WORD_KEYWORDS = tuple(k for k in _KEYWORDS if k[2] in ("PHI314", "PHI502"))
_TRIGGER_RE = re.compile("|".join(re.escape(k[0]) for k in _CODE_KEYWORDS))
_FAMILY = {k[0]: k for k in _CODE_KEYWORDS}
_CODE_TOKEN_RE = re.compile(r"[A-Z0-9](?<![\w.-][A-Z0-9])(?=[A-Z0-9-]*\d)[A-Z0-9-]{3,}")
_LOOKBACK = 30
_HAS_DIGIT = re.compile(r"\d")
_STATE_BEFORE = re.compile(r"\b[A-Z]{2},?\s+$")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NON_DIGIT = re.compile(r"\D")
_LAST_YEAR = re.compile(r"(\d{4}|\d{2})\D*$")
_WORD = re.compile(r"[A-Za-z]+")
_DAY_AFTER_MONTH = re.compile(r"\.?\s+\d{1,2}\b")
_FOUR_DIGITS = re.compile(r"\d{4}")
_COUNTY = re.compile(r"[A-Z][a-z]+\s+County$")
_PO_BOX = re.compile(r"P\.?\s*O\.?\s*Box\s+\d+", re.IGNORECASE)
_URL_PARAM_RE = re.compile(
    r"[?&](?:amp;)?(?i:patient|patient_?id|e?mail|email_?address|mrn|dob|birth_?date|ssn|"
    r"(?:first_|last_|full_)?name|phone|member_?id|contact|recipient)="
)
_ROLE_MAILBOXES = frozenset(
    {"info", "contact", "support", "help", "hello", "office", "admin", "media", "press", "news",
     "noreply", "no-reply", "webmaster", "privacy", "billing", "appointments", "scheduling",
     "questions", "feedback", "service", "customerservice"}
)
_TOLL_FREE = frozenset({"800", "888", "877", "866", "855", "844", "833"})

_PATIENT_DATE_CONTEXT = re.compile(
    r"\b(?:born|birth\w*|d\.?o\.?b\b|date\s+of\s+(?:birth|service)|dos\b|visit(?:ed)?\s+(?:on|date)"
    r"|your\s+(?:last\s+|recent\s+|previous\s+)?(?:visit|exam|scan|mri|ct|x-?ray|mammogram|"
    r"ultrasound|procedure|appointment|test|biopsy|results?)"
    r"|(?:scan|scanned|exam|examined|seen|imaged|treated|tested)\s+on"
    r"|admi(?:t|tted|ssion)\b|discharg\w*|died|death|deceased|passed\s+away"
    r"|naci(?:ó|o|miento|da|do)|su\s+(?:visita|cita|estudio|resonancia|tomograf[íi]a|mamograf[íi]a|ecograf[íi]a|examen)"
    r"|visita\s+del|atendid[oa]|fecha\s+de\s+(?:nacimiento|servicio))",
    re.IGNORECASE,
)
# A public place named before a street address: an event venue, not a patient's home (issue 13).
_VENUE_CONTEXT = re.compile(
    r"\b(?:where|location|venue|held\s+at|join\s+us\s+at|at\s+the|library|ymca|ywca|church|school|community"
    r"|center|centre|hall|park|museum|auditorium|hotel|pharmacy|store|market|office|building|campus"
    r"|clinic|site|branch|location|opens?|moved?|move\s+to|relocat\w*|new\s+address|sucursal|cl[ií]nica|sede"
    r"|d[oó]nde|lugar|en\s+el|en\s+la|biblioteca|centro|iglesia|escuela|parque|sal[oó]n|feria|charla|evento)\b",
    re.IGNORECASE,
)
_EVENT_DATE_CONTEXT = re.compile(
    r"\b(?:events?|open\s+house|starting|starts?|begin\w*|hours|open(?:ing|s)?|closed|closing|"
    r"holiday|webinar|seminar|class|workshop|fair|join\s+us|register|rsvp|until|through|"
    r"effective|founded|established|since|launch\w*|deadline|season|weekend|saturday|opened|built|began|started|"
    r"dedicated|inaugurat\w*|anniversary|history|historic|"
    r"sunday|monday|tuesday|wednesday|thursday|friday"
    r"|cerra\w*|abri\w*|horario|feria|charla|evento|clase|taller|desde|hasta|a\s+partir|s[áa]bado|domingo|lunes"
    r"|martes|mi[ée]rcoles|jueves|viernes|fundad[oa]|inscr[íi]base|v[áa]lid[oa])\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Allow:
    phone: str
    address: str
    domains: tuple[str, ...]


_SUFFIX_CANON = {
    "street": "st", "avenue": "ave", "av": "ave", "road": "rd", "boulevard": "blvd", "drive": "dr", "lane": "ln",
    "court": "ct", "place": "pl", "parkway": "pkwy", "highway": "hwy", "circle": "cir", "terrace": "ter",
    "square": "sq", "north": "n", "south": "s", "east": "e", "west": "w", "suite": "ste",
}


@lru_cache(maxsize=1024)
def _norm(text: str) -> str:
    """Lower-case words, street suffixes and directions in one spelling ("Road" == "Rd")."""
    return " ".join(_SUFFIX_CANON.get(w, w) for w in _NON_ALNUM.sub(" ", text.lower()).split())


def _digits(text: str) -> str:
    d = _NON_DIGIT.sub("", text)
    return d[1:] if len(d) == 11 and d.startswith("1") else d


@lru_cache(maxsize=64)
def _allow(settings: LintSettings) -> _Allow:
    domains = [d.lower().lstrip("@").strip(".") for d in settings.sender_domains if d]
    if settings.center_website:
        site = settings.center_website
        host = urlsplit(site if "//" in site else f"//{site}").hostname or ""
        if host:
            domains.append(host.removeprefix("www."))
    return _Allow(
        phone=_digits(settings.center_phone)[-10:] if settings.center_phone else "",
        address=_norm(settings.center_address),
        domains=tuple(dict.fromkeys(domains)),
    )


def own_domain(host: str, settings: LintSettings) -> bool:
    """True for the center's own hosts (the website and the sender domains)."""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in _allow(settings).domains)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _dea_ok(code: str) -> bool:
    d = [int(c) for c in code[2:]]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


def _date_hit(text: str, start: int, end: int, year: int | None, full: bool) -> Hit | None:
    """PHI-5: a date is an error next to birth/visit words, fine next to event words."""
    before = text[max(0, start - 60) : start]
    after = text[end : end + 30]
    if _PATIENT_DATE_CONTEXT.search(before) or _PATIENT_DATE_CONTEXT.search(after):
        return Hit("PHI501", start, end, "date of birth or service")
    if _EVENT_DATE_CONTEXT.search(before) or _EVENT_DATE_CONTEXT.search(after):
        return None
    if full and year is not None and year <= date.today().year - 90:
        return Hit("PHI503", start, end, "date implying an age over 89")
    return None


def _year(text: str) -> int | None:
    m = _LAST_YEAR.search(text)
    if not m:
        return None
    y = int(m.group(1))
    if len(m.group(1)) == 2:
        y += 1900 if y > date.today().year % 100 else 2000
    return y


def _digit_hits(text: str, pos: int, allow: _Allow, probe: list[int]) -> Iterator[Hit]:
    for m in _DIGIT_RE.finditer(text, pos):
        probe.append(m.start())
        kind = m.lastgroup
        start, end = m.span()
        token = m.group()
        if kind == "iso":
            hit = _date_hit(text, start, end, int(token[:4]), True)
        elif kind == "date":
            hit = _date_hit(text, start, end, _year(token), True)
        elif kind == "dmy":
            hit = _date_hit(text, start, end, _year(token), True)
        elif kind == "ssn":
            d = token.replace("-", "")
            bad = d[:3] in ("000", "666") or d[0] == "9" or d[3:5] == "00" or d[5:] == "0000"
            hit = None if bad else Hit("PHI305", start, end, "social security number")
        elif kind == "mbi":
            hit = Hit("PHI307", start, end, "Medicare beneficiary identifier")
        elif kind == "long":
            d = _NON_DIGIT.sub("", token)
            hit = Hit("PHI308", start, end, "account or card number") if 13 <= len(d) <= 19 and _luhn(d) else None
        elif kind in ("phone", "phone1"):
            hit = _phone_hit(text, start, end, token, allow)
        elif kind == "ip":
            ok = all(int(p) <= 255 for p in token.split("."))
            hit = Hit("PHI313", start, end, "IP address") if ok else None
        elif kind == "age":
            hit = Hit("PHI502", start, end, "age over 89")
        elif kind == "street":
            own = bool(allow.address) and _norm(token) in allow.address
            venue = _VENUE_CONTEXT.search(text[max(0, start - 160) : start])
            hit = None if own or venue else Hit("PHI316", start, end, "street address")
        else:  # zip: only after a two-letter state, and not the center's own
            hit = None
            if _STATE_BEFORE.search(text[max(0, start - 5) : start]):
                area = _norm(text[max(0, start - 5) : end])
                if not (allow.address and area in allow.address):
                    hit = Hit("PHI317", start, end, "state and ZIP code")
        if hit:
            yield hit


def _phone_hit(text: str, start: int, end: int, token: str, allow: _Allow) -> Hit | None:
    digits = _digits(token)
    if start and text[start - 1] == "(":
        start -= 1
    if allow.phone and digits[-10:] == allow.phone:
        return None
    if digits[:3] in _TOLL_FREE:
        return Hit("PHI302", start, end, "toll-free number")
    is_fax = "fax" in text[max(0, start - 25) : start].lower()
    if not is_fax and phone_context(text, start) == "organization":
        return Hit("PHI322", start, end, "phone number of an organization")
    return Hit("PHI301", start, end, "fax number" if is_fax else "phone number")


def _month_hits(text: str, pos: int, probe: list[int]) -> Iterator[Hit]:
    for m in _MONTH_RE.finditer(text, pos):
        probe.append(m.start())
        word = _WORD.match(m.group()).group().lower()  # type: ignore[union-attr]
        if word not in _MONTHS:
            continue
        tail = m.group()[len(word) :]
        has_day = bool(_DAY_AFTER_MONTH.match(tail))
        has_year = bool(_FOUR_DIGITS.search(tail))
        hit = _date_hit(text, m.start(), m.end(), _year(tail) if has_year else None, has_day and has_year)
        if hit:
            yield hit


def _code_keyword_hits(text: str, low: str, pos: int, probe: list[int]) -> Iterator[Hit]:
    """Keyword families (MRN, member ID, account no. ...) just before an upper-case code."""
    done = -1
    for token in _CODE_TOKEN_RE.finditer(text, pos):
        start = max(done + 1, token.start() - _LOOKBACK)
        for trig in _TRIGGER_RE.finditer(low, start, token.start()):
            probe.append(trig.start())
            _, pattern, code, what = _FAMILY[trig.group()]
            m = pattern.match(text, trig.start())
            if m:
                yield Hit(code, m.start(), m.end(), what)
        done = token.start()


_POPULATION_AGE = re.compile(
    r"\b(?:by|until|before|after|from|to|over|under|past|reach(?:es|ing)?|around|about|above|below)\s+(?:the\s+)?$",
    re.IGNORECASE,
)


def _keyword_hits(text: str, low: str, pos: int, families: tuple[_Keyword, ...], probe: list[int]) -> Iterator[Hit]:
    for trigger, pattern, code, what in families:
        i = low.find(trigger, pos)
        while i != -1:
            probe.append(max(0, i - 16))
            m = pattern.match(text, i)
            if m and code == "PHI502" and _POPULATION_AGE.search(text[max(0, i - 16): i]):
                m = None  # "by the age of 95": a population, not a person
            if m:
                yield Hit(code, m.start(), m.end(), what)
            i = low.find(trigger, i + 1)


def _email_hits(text: str, pos: int, allow: _Allow, probe: list[int]) -> Iterator[Hit]:
    i = text.find("@", pos)
    while i != -1:
        m = _DOMAIN_RE.match(text, i + 1)
        j = i
        while j > 0 and j > i - 64 and (text[j - 1].isalnum() or text[j - 1] in "._+-"):
            j -= 1
        probe.append(j)
        if m and j < i:
            host = m.group().lower()
            local = text[j:i].lower()
            if not any(host == d or host.endswith("." + d) for d in allow.domains):
                if local in _ROLE_MAILBOXES:
                    yield Hit("PHI304", j, m.end(), "role mailbox of another organization")
                else:
                    yield Hit("PHI303", j, m.end(), "email address")
        i = text.find("@", i + 1)


def _url_param_hits(text: str, pos: int) -> Iterator[Hit]:
    for m in _URL_PARAM_RE.finditer(text, pos):
        yield Hit("PHI312", m.start(), m.end(), "person-keyed URL parameter")


def _county_hits(text: str, low: str, pos: int, probe: list[int]) -> Iterator[Hit]:
    i = low.find("county", pos)
    while i != -1:
        probe.append(max(0, i - 40))
        m = _COUNTY.search(text[max(0, i - 40) : i + 6])
        if m:
            yield Hit("PHI317", i - len(m.group()) + 6, i + 6, "county")
        i = low.find("county", i + 1)


def _po_box_hits(text: str, low: str, pos: int, allow: _Allow, probe: list[int]) -> Iterator[Hit]:
    i = low.find("box", pos)
    while i != -1:
        window_start = max(0, i - 10)
        probe.append(window_start)
        m = _PO_BOX.search(text[window_start : i + 14])
        if m and not (allow.address and _norm(m.group()) in allow.address):
            yield Hit("PHI316", window_start + m.start(), window_start + m.end(), "post office box")
        i = low.find("box", i + 1)


def scan(
    text: str, settings: LintSettings, *, names: bool = True, low: str | None = None,
    pos: int = 0, probe: list[int] | None = None,
) -> list[Hit]:
    """Every Safe Harbor hit in TEXT[POS:], on normalised text (issue 13), positions in TEXT.

    The text is folded first (NFKC, invisible characters removed, confusables folded:
    mailer.lint.normalize), so "MRN\u200b 123..." or a Cyrillic letter hides nothing.
    """
    folded, offsets = fold_map(text)
    if offsets is None:
        return _scan(text, settings, names=names, low=low, pos=pos, probe=probe)
    fpos = bisect.bisect_left(offsets, pos) if pos else 0
    inner: list[int] = []
    hits = _scan(folded, settings, names=names, pos=fpos, probe=inner)
    if probe is not None:
        probe.extend(origin(offsets, p, len(text)) for p in inner)
    n = len(text)
    return [Hit(h.code, origin(offsets, h.start, n), origin(offsets, h.end - 1, n) + 1 if h.end else 0, h.what)
            for h in hits]


def _scan(
    text: str, settings: LintSettings, *, names: bool = True, low: str | None = None,
    pos: int = 0, probe: list[int] | None = None,
) -> list[Hit]:
    """Every Safe Harbor hit in TEXT[POS:], the center's own phone, address and domains excepted.

    TEXT[:POS] is context only: patterns look back into it (a "born" before a date) but
    nothing in it is reported. `names=False` skips the literal-name greeting check, for
    rendered output where the recipient's first name is allowed context (PHI-1). PROBE,
    if given, receives the start of every candidate, so a caller can tell whether a
    result depends on the text before POS (the per-line memo in rendered.py uses it).
    """
    allow = _allow(settings)
    low = text.lower() if low is None else low
    probe = [] if probe is None else probe
    hits: list[Hit] = []
    if _HAS_DIGIT.search(text, pos):
        hits.extend(_digit_hits(text, pos, allow, probe))
        hits.extend(_month_hits(text, pos, probe))
        hits.extend(_code_keyword_hits(text, low, pos, probe))
        hits.extend(_url_param_hits(text, pos))
        for m in _DEA_RE.finditer(text, pos):
            if _dea_ok(m.group()):
                hits.append(Hit("PHI309", m.start(), m.end(), "DEA number"))
        if "box" in low:
            hits.extend(_po_box_hits(text, low, pos, allow, probe))
        for code, start, end, what in identifier_hits(text, settings):
            probe.append(max(0, start - 70))
            hits.append(Hit(code, start, end, what))
        for code, start, end, what in phone_hits(text, allow.phone):
            probe.append(max(0, start - 80))
            hits.append(Hit(code, start, end, what))
    elif "=" in text:
        hits.extend(_url_param_hits(text, pos))
    hits.extend(_keyword_hits(text, low, pos, _WORD_KEYWORDS, probe))
    if "@" in text:
        hits.extend(_email_hits(text, pos, allow, probe))
    if "::" in text:
        hits.extend(Hit("PHI313", m.start(), m.end(), "IP address") for m in _IPV6_RE.finditer(text, pos))
    if "county" in low:
        hits.extend(_county_hits(text, low, pos, probe))
    if names:
        hits.extend(Hit(code, start, end, what) for code, start, end, what in name_hits(text, settings))
    return _dedupe([h for h in hits if h.start >= pos] if pos else hits)


def _dedupe(hits: list[Hit]) -> list[Hit]:
    """One hit per place: overlapping hits of the same code collapse into the first, and a
    generic "reference code" (PHI321) gives way to a specific identifier at the same place."""
    if len(hits) < 2:
        return hits
    generic = [h for h in hits if h.code == "PHI321"]
    if generic:
        specific = [h for h in hits if h.code != "PHI321"]
        hits = specific + [g for g in generic if not any(s.start < g.end and g.start < s.end for s in specific)]
    hits.sort(key=lambda h: (h.start, -h.end))
    kept: list[Hit] = []
    last_end: dict[str, int] = {}
    for h in hits:
        if h.start < last_end.get(h.code, -1):
            continue
        kept.append(h)
        last_end[h.code] = h.end
    return kept
