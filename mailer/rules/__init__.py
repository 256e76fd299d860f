"""The rule reference: every rule ID mailer cites, in its own words, from one data file.

`reference.toml` beside this module is the single source; `mailer rules` prints it and
docs/rules.md is generated from it (`render_markdown`). `pointer(ID)` is the hint every
refusal, lint finding and preflight line ends with.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

#: The shape of a rule ID (MKT-2c, SEC-6, SEND-1); tests/rules/ scans the code with it.
RULE_ID = re.compile(r"\b[A-Z]{2,6}-\d{1,2}[a-z]?\b")
#: Tokens with that shape that are not rules.
NOT_RULES = frozenset({"UTF-8", "UTF-16", "UTF-32", "ISO-8859", "SHA-1", "SHA-2", "SHA-3"})

FAMILIES: dict[str, str] = {
    "SEG": "Segments and per-recipient sending",
    "SEND": "Segments and per-recipient sending",
    "MKT": "HIPAA marketing",
    "AUTH": "Authorizations",
    "PHI": "PHI and de-identification",
    "SEC": "Security and business associates",
    "BAA": "Security and business associates",
    "SPAM": "CAN-SPAM",
    "STD": "Email standards",
    "BNC": "Email standards",
    "TLS": "Email standards",
    "DIS": "Disguised marketing and testimonials",
    "TST": "Disguised marketing and testimonials",
}
FIELDS = ("title", "source", "enforces", "satisfy")


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    source: str
    enforces: str
    satisfy: str

    @property
    def family(self) -> str:
        return FAMILIES.get(self.id.split("-")[0], "Other rules")

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "family": self.family, "title": self.title, "source": self.source,
                "enforces": self.enforces, "satisfy": self.satisfy}


def _sort_key(rule_id: str) -> tuple[int, str, int, str]:
    prefix, _, rest = rule_id.partition("-")
    families = list(dict.fromkeys(FAMILIES))
    digits = re.match(r"\d+", rest)
    number = int(digits.group()) if digits else 0
    order = families.index(prefix) if prefix in families else len(families)
    return (order, prefix, number, rest)


@cache
def load() -> dict[str, Rule]:
    """Every rule, in reference order (family, then number)."""
    data = tomllib.loads(resources.files("mailer.rules").joinpath("reference.toml").read_text("utf-8"))
    rules = {}
    for rule_id in sorted(data, key=_sort_key):
        body = data[rule_id]
        missing = [f for f in FIELDS if not str(body.get(f, "")).strip()]
        if missing:
            raise ValueError(f"mailer/rules/reference.toml: [\"{rule_id}\"] lacks {', '.join(missing)}")
        rules[rule_id] = Rule(rule_id, *(str(body[f]).strip() for f in FIELDS))
    return rules


def normalize(rule_id: str) -> str:
    """`sec-6` -> `SEC-6`, `mkt-2C` -> `MKT-2c`: family upper case, exception letter lower."""
    m = re.fullmatch(r"\s*([A-Za-z]+)-(\d+)([A-Za-z]?)\s*", rule_id)
    return f"{m.group(1).upper()}-{m.group(2)}{m.group(3).lower()}" if m else rule_id.strip()


def get(rule_id: str) -> Rule | None:
    return load().get(normalize(rule_id))


def nearest(rule_id: str, n: int = 3) -> list[str]:
    """The IDs closest to a mistyped one (same family first)."""
    wanted = rule_id.strip().upper()
    ids = list(load())
    upper = {i.upper(): i for i in ids}
    close = difflib.get_close_matches(wanted, list(upper), n=n, cutoff=0.5)
    family = [i for i in ids if i.split("-")[0] == wanted.split("-")[0]]
    picks = [upper[c] for c in close] + family
    return list(dict.fromkeys(picks))[:n]


def pointer(*rule_ids: str) -> str:
    """The hint that ends a refusal, finding or preflight line: where the rule is explained."""
    return "see " + ", ".join(f"mailer rules {r}" for r in dict.fromkeys(rule_ids))


def render_text(rule: Rule) -> str:
    return (f"{rule.id}  {rule.title}\n"
            f"  source:    {rule.source}\n"
            f"  enforces:  {rule.enforces}\n"
            f"  to satisfy it: {rule.satisfy}\n")


def render_markdown() -> str:
    """docs/rules.md: generated, so it never drifts from what `mailer rules` prints."""
    lines = ["# Rule reference", "",
             "<!-- Generated from mailer/rules/reference.toml by "
             "`mailer rules --format markdown > docs/rules.md`; edit the TOML, not this file. -->", "",
             "Every rule ID that mailer cites in a refusal, a lint finding, a preflight line or the",
             "ledger, with where it comes from, what mailer enforces and how to satisfy it.",
             "`mailer rules` lists them; `mailer rules ID` prints one. The full rule set with its",
             "acceptance cases is the project's spec; where the law is looser, mailer is stricter on purpose.",
             ""]
    family = None
    for rule in load().values():
        if rule.family != family:
            family = rule.family
            lines += [f"## {family}", ""]
        lines += [f"### {rule.id}: {rule.title}", "",
                  f"- **Source:** {rule.source}",
                  f"- **What mailer enforces:** {rule.enforces}",
                  f"- **To satisfy it:** {rule.satisfy}", ""]
    return "\n".join(lines)
