"""Shared fixtures for the lint tests: the corpus and the settings it was written for."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from mailer.lint import LintSettings

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
REPO = HERE.parent.parent

# The corpus's imaginary center; its own phone, address and domain are allowlisted.
SETTINGS = LintSettings(
    center_phone="(217) 555-0100",
    center_address="1200 River Rd, Springfield, IL 62704",
    center_website="https://riverside-imaging.example",
    sender_domains=("riverside-imaging.example",),
)


@dataclass(frozen=True)
class Case:
    name: str
    path: Path  # the folder, or the single file named by `target`
    description: str
    errors: frozenset[str]
    warnings: frozenset[str]
    waived: frozenset[str]


def corpus_cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in CORPUS.iterdir() if p.is_dir() and (p / "expected.toml").is_file()):
        spec = tomllib.loads((folder / "expected.toml").read_text())
        target = folder / spec["target"] if "target" in spec else folder
        cases.append(
            Case(
                name=folder.name,
                path=target,
                description=spec["description"],
                errors=frozenset(spec.get("errors", [])),
                warnings=frozenset(spec.get("warnings", [])),
                waived=frozenset(spec.get("waived", [])),
            )
        )
    return cases
