"""Second-generation detectors (issue 13), English and Spanish, on normalised text.

Shared by the template lint and the send-time check (through `patterns.scan`):

- `identifier_hits`: identifying numbers the first lint missed (the keyword families,
  accession, encounter, claim, group and case numbers, MR#, Spanish record words and
  personal codes, live with the others in patterns._KEYWORDS): DICOM UIDs, SSNs written with
  spaces or dots, IPv6 addresses (validated by `ipaddress`), phone numbers in any common
  form (found and validated by `phonenumbers`), Spanish dates of birth or service, and
  ages over 89 written as "at 93" or "de 93 años";
- `name_hits`: a person's name in literal text, found by its context (a greeting, "our
  patient", "paciente"), accented names included; the center's name and its staff from
  the config are never a patient's;

A hit names the pattern class, never the matched text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from functools import lru_cache

from mailer.lint.settings import LintSettings

# A capitalised word, accents and apostrophes allowed (José, Núñez, O'Brien, Ángela).
_CAP = r"[A-ZÁÉÍÓÚÑÜÀÈÌÒÙÇ][a-záéíóúñüàèìòùçäëïöâêîôû'’-]+"
_NAME = rf"{_CAP}(?:\s+(?:[A-Z]\.|{_CAP}|(?:de|del|la|van|von|da|di)\s+{_CAP})){{0,3}}"

# -- identifying numbers ---------------------------------------------------------------------
_DICOM_RE = re.compile(r"[012](?<![\w.][012])(?:\.(?:0|[1-9]\d*)){5,}(?![\w.]*\d)")
# Each starts with a character class, so the regex engine skips ahead in C (see patterns.py).
_SSN_SPACED = re.compile(r"\d(?<![\w.-]\d)\d\d[ .]\d\d[ .]\d{4}(?![\w-]|\.\d)")
_DIGIT_RUN = re.compile(r"\d{2,}")
_SSN_HINT = re.compile(r"\d\d\d[ .]\d\d[ .]\d")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:")
_AGE_HINT = re.compile(r"9\d|1[0-4]\d")
_PHONE_SHAPE = re.compile(r"\d(?<!\w\d)\d\d\)?[\s.-]?\d{3}[\s.-]?\d{4}(?!\w)")
_IPV6_CAND = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])")
_MONTHS_ES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
              "setiembre", "octubre", "noviembre", "diciembre")
_ES_DATE = re.compile(r"(?i)\b(\d{1,2})\s+de\s+(" + "|".join(_MONTHS_ES) + r")(?:\s+(?:de|del)\s+(\d{4}))?\b")
_ES_PATIENT_CONTEXT = re.compile(
    r"(?i)\b(?:naci(?:ó|o|miento|da|do)|fecha\s+de\s+(?:nacimiento|servicio|su\s+visita)|su\s+(?:visita|cita|"
    r"estudio|resonancia|tomograf[íi]a|mamograf[íi]a|ecograf[íi]a|radiograf[íi]a|examen|biopsia|prueba)|"
    r"realiz(?:arse|ó|o)\s+su|visita\s+del|atendid[oa]|ingres[óo]|alta\s+el|falleci[óo])\b"
)
_AGE_RE = re.compile(
    r"(?i)(?:\b(?:at|aged?)\s+(?P<en>9\d|1[0-4]\d)(?=\s*(?:,|years?\b|yrs?\b|\)))"
    r"|\b(?P<pre>\w+\s+)?de\s+(?P<es>9\d|1[0-4]\d)\s+años\b)"
)
_BY_AGE = re.compile(r"(?i)\b(?:by|until|before|after|from|to|over|under|past|reach\w*|around|about)\s+(?:the\s+)?$")
_POPULATION = frozenset({"mayores", "más", "mas", "menores", "encima", "partir"})


def identifier_hits(text: str, settings: LintSettings | None) -> Iterator[tuple[str, int, int, str]]:
    """(code, start, end, what) for the identifying numbers listed in the module doc.

    Built for the send-time path: each pattern runs only after a cheap test (a count, a
    substring, a short regex starting with a character class) says it could match.
    """
    if text.count(".") >= 5:
        for m in _DICOM_RE.finditer(text):
            if len(m.group()) >= 16:
                yield "PHI320", m.start(), m.end(), "DICOM UID"
    spaced = (" " in text or "." in text) and _SSN_HINT.search(text)
    for m in (_SSN_SPACED.finditer(text) if spaced else ()):
        g = m.group()
        a, b, c = g[:3], g[4:6], g[7:]
        if not (a in ("000", "666") or a[0] == "9" or b == "00" or c == "0000"):
            yield "PHI305", m.start(), m.end(), "social security number"
    if text.count(":") >= 2 and _IPV6_HINT.search(text):
        for m in _IPV6_CAND.finditer(text):
            cand = m.group()
            if cand.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", cand):
                continue
            try:
                ip = ipaddress.ip_address(cand.split("%")[0])
            except ValueError:
                continue
            if ip.version == 6 and not ip.is_unspecified:
                yield "PHI313", m.start(), m.end(), "IP address"
    if " de " in text:
        for m in _ES_DATE.finditer(text):
            window = text[max(0, m.start() - 70): m.start()] + " " + text[m.end(): m.end() + 30]
            if _ES_PATIENT_CONTEXT.search(window):
                yield "PHI501", m.start(), m.end(), "date of birth or service"
    aged = ("at " in text or "At " in text or "age" in text or "Age" in text or "años" in text) and _AGE_HINT.search(text)
    for m in (_AGE_RE.finditer(text) if aged else ()):
        if m.group("es") and (m.group("pre") or "").strip().lower() in _POPULATION:
            continue
        if m.group("en") and _BY_AGE.search(text[max(0, m.start() - 16): m.start()]):
            continue  # "by age 92, most adults...": a population
        yield "PHI502", m.start(), m.end(), "age over 89"


_ORG_PHONE = re.compile(
    r"(?i)\b(?:center|centre|association|society|foundation|institute|hotline|helpline|line|office|department"
    r"|clinic|hospital|pharmacy|library|program|services?|ymca|church|school|council|city|county|agency|network"
    r"|centro|asociaci[óo]n|fundaci[óo]n|l[íi]nea|oficina|cl[íi]nica|hospital|farmacia|biblioteca|programa)\b"
)
_PERSONAL_PHONE = re.compile(
    r"(?i)\b(?:her|his|my|cell|mobile|personal|direct|text|whatsapp|home|celular|m[óo]vil|su\s+n[úu]mero|directo)\b"
)


def phone_context(text: str, start: int) -> str:
    """'personal', 'organization' or '' from the words just before a phone number."""
    before = text[max(0, start - 80): start]
    if _PERSONAL_PHONE.search(before):
        return "personal"
    if _ORG_PHONE.search(before):
        return "organization"
    return ""


def phone_hits(text: str, center_digits: str) -> Iterator[tuple[str, int, int, str]]:
    """Phone numbers in any common US form, found and validated by `phonenumbers`.

    `phonenumbers` runs only on text with a phone-shaped run of digits (a random token in
    an unsubscribe URL is not one), so the send-time check rarely pays for it.
    """
    if not _PHONE_SHAPE.search(text):
        return
    import phonenumbers

    for m in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.VALID):
        national = str(m.number.national_number)
        if center_digits and national[-10:] == center_digits[-10:]:
            continue
        if len(national) < 10:
            continue
        if national[:3] in ("800", "888", "877", "866", "855", "844", "833"):
            yield "PHI302", m.start, m.end, "toll-free number"
        elif phone_context(text, m.start) == "organization":
            yield "PHI322", m.start, m.end, "phone number of an organization"
        else:
            yield "PHI301", m.start, m.end, "phone number"


# -- person names ----------------------------------------------------------------------------
_GREETING = re.compile(
    r"(?:^|(?<=[\s>(]))(?P<g>Dear|Hi|Hello|Hey|Hola|Estimad[oa]s?|Querid[oa]s?|Buen[oa]s\s+(?:d[íi]as|tardes))"
    rf"[ \t]+(?P<name>{_NAME})(?P<after>[ \t]*(?:[,:!]|$|\n|[ \t]+[a-záéíóúñ]+))",
    re.MULTILINE,
)
_PATIENT_CUE = re.compile(
    r"(?i)\b(?:(?:our|a|longtime|former|the)\s+patients?|patient|nuestr[oa]\s+paciente|paciente|survivor|sobreviviente"
    r"|prepared\s+for|preparado\s+para|on\s+behalf\s+of)[ \t]*,?[ \t]+"
    rf"(?=[A-ZÁÉÍÓÚÑ])(?-i:(?P<name>{_NAME}))"
)
_GROUP_WORDS = frozenset(
    """friend friends patient patients neighbor neighbors neighbour neighbours member members valued customer
    customers reader readers sir madam colleague colleagues community all everyone everybody parent parents
    family families there team subscriber subscribers client clients guest guests folks partner partners doctor
    doctors provider providers residents resident women men moms dads seniors neighborhood neighbourhood
    amigos amigas amigo amiga vecinos vecinas vecino vecina pacientes paciente comunidad familia familias todos
    todas señor señora señores socios socias miembros lectores lectoras clientes
    spring summer autumn fall winter world again from and to our you""".split()
)


@lru_cache(maxsize=64)
def _own_names(settings: LintSettings) -> frozenset[str]:
    """Words of the center's name, its staff's names and its address (its city is no person)."""
    names: set[str] = set()
    names.update(w.lower() for w in re.findall(r"[^\W\d_]{3,}", settings.center_address))
    for full in (settings.center_name, *settings.staff_names):
        words = [w for w in re.split(r"[\s,]+", full) if w and w.lower().rstrip(".") not in ("dr", "md", "do")]
        for w in words:
            names.add(w.lower())
    return frozenset(names)


def name_hits(text: str, settings: LintSettings) -> Iterator[tuple[str, int, int, str]]:
    """(code, start, end, what): literal names in greetings and next to patient words."""
    own = _own_names(settings)
    for m in _GREETING.finditer(text):
        words = m.group("name").split()
        after = m.group("after").strip()
        if after and after[0].isalpha():  # "Dear Oak Park neighbors": a place, then a group
            continue
        if any(w.lower().strip(".") in _GROUP_WORDS for w in words):
            continue
        if all(w.lower().strip(".,") in own for w in words):
            continue
        if m.group("g") in ("Hi", "Hello", "Hey") and not after:
            continue
        yield "PHI318", m.start("name"), m.end("name"), "person's name in a greeting"
    for m in _PATIENT_CUE.finditer(text):
        name = m.group("name")
        words = name.split()
        if text[max(0, m.start("name") - 4): m.start("name")].rstrip().endswith(("Dr.", "Dr")):
            continue
        if all(w.lower().strip(".,") in own or w.lower() in _GROUP_WORDS for w in words):
            continue
        yield "PHI319", m.start("name"), m.end("name"), "person's name next to a patient word"
