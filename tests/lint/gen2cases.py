"""The second-generation lint corpus (issue 13): realistic templates labelled leak or clean.

Each `corpus/gen2/<half>/*.tmpl` holds one template: a TOML header (label, kind, lang,
note), then the template's files, each after a line `=== <file name>`. `materialise`
writes them out as ordinary template folders, so the lint sees exactly what a marketer's
folder would hold. Used by tests/lint/test_lint_gen2.py and by `make lint-eval` (bench/).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mailer.lint import LintSettings

HERE = Path(__file__).parent
GEN2 = HERE / "corpus" / "gen2"
HALVES = ("tuning", "heldout")

# The corpus's imaginary center: what its config would say.
SETTINGS = LintSettings(
    center_phone="(217) 555-0100",
    center_address="1200 River Rd, Springfield, IL 62704",
    center_website="https://riverside-imaging.example",
    sender_domains=("riverside-imaging.example",),
    center_name="Riverside Imaging",
    staff_names=("Dr. Anita Patel", "Dr. Luis Moreno"),
)

_SPLIT = re.compile(r"(?m)^=== (\S+)\s*$")


@dataclass(frozen=True)
class Gen2Case:
    name: str
    half: str
    label: str  # "leak" | "clean"
    kind: str
    lang: str
    note: str
    files: tuple[tuple[str, str], ...]  # (file name, text)

    @property
    def leak(self) -> bool:
        return self.label == "leak"


def parse_case(path: Path, half: str) -> Gen2Case:
    raw = path.read_text(encoding="utf-8")
    pieces = _SPLIT.split(raw)
    head = tomllib.loads(pieces[0])
    files = tuple((pieces[i], pieces[i + 1].lstrip("\n")) for i in range(1, len(pieces), 2))
    if head.get("label") not in ("leak", "clean"):
        raise ValueError(f"{path}: label must be 'leak' or 'clean'")
    return Gen2Case(path.stem, half, head["label"], head.get("kind", ""), head.get("lang", "en"),
                    head.get("note", ""), files)


def load(half: str) -> list[Gen2Case]:
    return [parse_case(p, half) for p in sorted((GEN2 / half).glob("*.tmpl"))]


def materialise(case: Gen2Case, root: Path) -> Path:
    """Write CASE as a template folder under ROOT; returns the folder."""
    folder = root / case.half / case.name
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in case.files:
        (folder / name).write_text(text, encoding="utf-8")
    return folder
