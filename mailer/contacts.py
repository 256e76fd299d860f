"""Contact CSV rows -> validated, normalized records. Pure: the store does the writing.

Problems name the line, the column and why, never the value (it may be PHI).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from email_validator import EmailNotValidError, validate_email

from mailer.errors import InputError, RowProblem

BASE_COLUMNS = ("email", "first_name", "last_name", "preferred_name", "language", "newsletter_opt_in")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


@dataclass(frozen=True)
class ContactInput:
    line: int
    email: str  # normalized
    identity: dict[str, str]
    language: str
    newsletter_opt_in: bool
    clinical: dict[str, Any] = field(default_factory=dict)


def normalize_email(raw: str, *, check_deliverability: bool = False) -> str:
    """email-validator's normalized form; the lookup HMAC is taken over this."""
    info = validate_email(raw.strip(), check_deliverability=check_deliverability)
    return info.normalized


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("expected true/false, yes/no or 1/0")


def parse_clinical(value: str, kind: str, separator: str) -> Any:
    value = value.strip()
    if kind == "list":
        return [item.strip().lower() for item in value.split(separator) if item.strip()]
    if kind == "date":
        if not value:
            return None
        return dt.date.fromisoformat(value).isoformat()
    return value


def check_header(header: list[str], clinical: Mapping[str, str], path: str) -> list[RowProblem]:
    known = set(BASE_COLUMNS) | set(clinical)
    problems = [
        RowProblem(1, col, f"unknown column; accepted: {', '.join(sorted(known))}")
        for col in header if col not in known
    ]
    if "email" not in header:
        problems.append(RowProblem(1, "email", "required column is missing"))
    seen: set[str] = set()
    for col in header:
        if col in seen:
            problems.append(RowProblem(1, col, "column appears twice"))
        seen.add(col)
    return problems


def parse_row(line: int, row: Mapping[str, str | None], clinical: Mapping[str, str], separator: str,
              *, check_deliverability: bool = False) -> ContactInput | list[RowProblem]:
    problems: list[RowProblem] = []
    if None in row:  # csv puts surplus cells under the None key
        problems.append(RowProblem(line, "(row)", "more cells than header columns"))
    raw_email = row.get("email") or ""
    email = ""
    try:
        email = normalize_email(raw_email, check_deliverability=check_deliverability)
    except EmailNotValidError as err:
        reason = str(err).split(".")[0]
        problems.append(RowProblem(line, "email", f"not a valid address ({reason})"))
    opt_in = False
    try:
        opt_in = parse_bool(row.get("newsletter_opt_in") or "")
    except ValueError as err:
        problems.append(RowProblem(line, "newsletter_opt_in", str(err)))
    language = (row.get("language") or "en").strip().lower() or "en"
    if len(language) > 16 or not language.replace("-", "").isalpha():
        problems.append(RowProblem(line, "language", "expected a language tag like en or es-MX"))
    values: dict[str, Any] = {}
    for name, kind in clinical.items():
        cell = row.get(name)
        if cell is None:
            continue
        try:
            values[name] = parse_clinical(cell, kind, separator)
        except ValueError:
            problems.append(RowProblem(line, name, "expected an ISO date YYYY-MM-DD"))
    if problems:
        return problems
    identity = {k: (row.get(k) or "").strip() for k in ("first_name", "last_name", "preferred_name")}
    return ContactInput(line, email, identity, language, opt_in, values)


def read_rows(fh: TextIO, path: str, clinical: Mapping[str, str], separator: str = ";",
              *, check_deliverability: bool = False) -> Iterator[ContactInput | list[RowProblem]]:
    """Stream a CSV: yields a ContactInput or the problems of each data row, in order."""
    reader = csv.DictReader(fh)
    header = list(reader.fieldnames or [])
    header_problems = check_header(header, clinical, path)
    if header_problems:
        yield header_problems
        return
    for row in reader:
        yield parse_row(reader.line_num, row, clinical, separator, check_deliverability=check_deliverability)


def open_csv(path: Path) -> TextIO:
    try:
        return path.open(newline="", encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
