"""What the lint allows: the fixed rendering context, purposes, and what counts as clinical."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from mailer.purposes import MARKETING_PURPOSES as MARKETING_PURPOSES
from mailer.purposes import PURPOSES as _PURPOSES
from mailer.purposes import TRANSACTIONAL_PURPOSES as TRANSACTIONAL_PURPOSES

# PHI-1: the whole rendering context. Anything else is an error at compile time.
ALLOWED_CONTEXT: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "contact": frozenset({"first_name", "preferred_name", "language"}),
        "center": frozenset({"name", "postal_address", "phone", "website"}),
        "campaign": frozenset({"name"}),
        "unsubscribe_url": frozenset(),  # a plain string
    }
)

PURPOSES = frozenset(_PURPOSES)

# Field names that are clinical whatever the config says (SEG-1's list, plus imaging words).
CLINICAL_WORDS: tuple[str, ...] = (
    "conditions", "condition", "procedures", "procedure", "last_exam_date", "diagnosis",
    "diagnoses", "dx", "exam", "exams", "exam_date", "scan", "scans", "study", "studies",
    "modality", "result", "results", "finding", "findings", "impression", "medication",
    "medications", "meds", "prescription", "prescriptions", "rx", "allergy", "allergies",
    "treatment", "treatments", "referral", "referral_reason", "icd", "cpt", "symptom",
    "symptoms", "disease", "diseases", "lab", "labs", "biopsy", "mammogram", "pregnancy",
    "history", "clinical", "health", "risk",
)

# Safe Harbor row A-R hints for variable names (rules.md section 3, "vars" heuristics).
_IDENTIFYING_TOKENS = frozenset(
    {
        "name", "surname", "lastname", "firstname", "fullname", "dob", "birth", "birthdate",
        "birthday", "born", "age", "ssn", "social", "mrn", "email", "phone", "mobile", "cell",
        "fax", "address", "street", "city", "zip", "zipcode", "postal", "county", "id",
        "number", "code", "account", "member", "policy", "subscriber", "insurance",
        "license", "licence", "plate", "vin", "serial", "device", "ip", "photo", "face",
        "fingerprint", "admit", "admission", "discharge", "death", "visit", "date",
        "employer", "relative", "guardian",
    }
)


@dataclass(frozen=True)
class LintSettings:
    """The center's own identifiers (allowlisted, SPAM-8 needs them) and clinical field names.

    Built once where the CLI or pipeline is wired, then passed in (style rule 3).
    """

    center_phone: str = ""
    center_address: str = ""
    center_website: str = ""
    sender_domains: tuple[str, ...] = ()
    clinical_fields: tuple[str, ...] = CLINICAL_WORDS
    center_name: str = ""
    staff_names: tuple[str, ...] = ()  # staff physicians named in config: never patient identifiers
    configured: bool = True  # False when no config was found: the center's identity is unknown


def from_app_settings(settings: Any) -> LintSettings:
    """LintSettings from mailer.config.Settings: the center's identifiers are allowlisted,
    clinical fields are the configured ones plus CLINICAL_WORDS, sender domains come from
    the From, envelope-from and Reply-To addresses."""
    domains = []
    for address in (settings.sender.from_address, settings.envelope_from, settings.sender.reply_to):
        if address and "@" in address:
            domains.append(address.rsplit("@", 1)[1].lower())
    return LintSettings(
        center_phone=settings.center.phone,
        center_address=settings.center.postal_address,
        center_website=settings.center.website,
        sender_domains=tuple(dict.fromkeys(domains)),
        clinical_fields=tuple(dict.fromkeys((*settings.fields.clinical, *CLINICAL_WORDS))),
        center_name=settings.center.name,
        staff_names=staff_list(getattr(settings.center, "staff", "")),
    )


def from_config_file(path: Any) -> LintSettings:
    """LintSettings from a config file's [center], [sender] and [fields.clinical] only.

    `mailer lint` runs on every save in an editor and in pre-commit hooks, so it does not
    load the validated Settings (pydantic costs a quarter of a second to import); the
    values read here are the same strings mailer.config validates for every other command.
    A missing file or bad TOML is a ConfigError (exit 2), as with load_settings.
    """
    import tomllib
    from pathlib import Path

    from mailer.errors import ConfigError

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found", hint="pass --config PATH or set MAILER_CONFIG") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from None
    center = data.get("center", {}) if isinstance(data.get("center"), dict) else {}
    sender = data.get("sender", {}) if isinstance(data.get("sender"), dict) else {}
    fields = data.get("fields", {}) if isinstance(data.get("fields"), dict) else {}
    clinical = fields.get("clinical", {}) if isinstance(fields.get("clinical"), dict) else {}
    domains = []
    for address in (sender.get("from_address"), sender.get("envelope_from"), sender.get("reply_to")):
        if isinstance(address, str) and "@" in address:
            domains.append(address.rsplit("@", 1)[1].lower())

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    return LintSettings(
        center_phone=text(center.get("phone")),
        center_address=text(center.get("postal_address")),
        center_website=text(center.get("website")),
        sender_domains=tuple(dict.fromkeys(domains)),
        clinical_fields=tuple(dict.fromkeys((*(k for k in clinical if isinstance(k, str)), *CLINICAL_WORDS))),
        center_name=text(center.get("name")),
        staff_names=staff_list(center.get("staff", "")),
    )


def staff_list(value: Any) -> tuple[str, ...]:
    """Staff names from config: "Dr. A; Dr. B" (a TOML list of strings is read too)."""
    if isinstance(value, str):
        return tuple(n.strip() for n in value.split(";") if n.strip())
    if isinstance(value, list | tuple):
        return tuple(n.strip() for n in value if isinstance(n, str) and n.strip())
    return ()


@lru_cache(maxsize=32)
def _lowered(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(n.lower() for n in names)


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def field_class(name: str, settings: LintSettings) -> str | None:
    """'clinical', 'identifying' or None for a variable or attribute name (PHI-2, PHI-3)."""
    low = name.lower()
    clinical = _lowered(settings.clinical_fields)
    tokens = _tokens(low)
    if low in clinical or any(t in clinical and len(t) > 2 for t in tokens):
        return "clinical"
    if any(t in _IDENTIFYING_TOKENS for t in tokens) or low.endswith(("_id", "_number", "_code")):
        return "identifying"
    return None
