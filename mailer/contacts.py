"""Contact CSV rows -> validated, normalized records. Pure: the store does the writing.

Problems name the line, the column and why, never the value (it may be PHI). Line
numbers are those an editor shows: the line a record starts on, counting the header
as line 1, so quoted cells spanning lines and blank lines do not shift them.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from email_validator import EmailNotValidError, validate_email

from mailer import csv_header
from mailer.errors import InputError, RowProblem

BASE_COLUMNS = ("email", "first_name", "last_name", "preferred_name", "language", "newsletter_opt_in")
IDENTITY_COLUMNS = ("first_name", "last_name", "preferred_name")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")  # NUL, line breaks, other controls (tab is kept)
_MAX_CELL = 4096  # a longer cell is a malformed file, not a name or a condition


@dataclass(frozen=True)
class ContactInput:
    """One good row. `present` is the file's columns: a column the file lacks leaves the
    stored value alone on re-import, a column it has (even empty) is authoritative."""

    line: int
    email: str  # normalized
    identity: dict[str, str]
    language: str
    newsletter_opt_in: bool
    clinical: dict[str, Any] = field(default_factory=dict)
    present: frozenset[str] = frozenset(BASE_COLUMNS)


@dataclass(frozen=True)
class BadRow:
    """A row that did not validate. `email` (normalized, if it parsed) serves duplicate
    detection only; it is never reported."""

    line: int
    problems: tuple[RowProblem, ...]
    email: str | None = field(default=None, repr=False)


#: Top-level names reserved for tests, documentation and local use (RFC 2606, RFC 6761,
#: RFC 6762, RFC 7686): mail to them never reaches a patient. `example.com` and friends
#: are not refused (the shipped sample data uses them with the local sink).
RESERVED_TLDS = frozenset({"test", "invalid", "localhost", "example", "local", "onion", "arpa"})
#: `contacts.allow_reserved_domains` (staging only): set around an import by the caller.
_ALLOW_RESERVED: ContextVar[bool] = ContextVar("allow_reserved_domains", default=False)


@contextmanager
def reserved_domains_allowed(allowed: bool) -> Iterator[None]:
    token = _ALLOW_RESERVED.set(allowed)
    try:
        yield
    finally:
        _ALLOW_RESERVED.reset(token)


class ReservedDomain(EmailNotValidError):
    """An address at a reserved or special-use domain (.test, .invalid, .localhost, .example)."""


def normalize_email(raw: str, *, check_deliverability: bool = False) -> str:
    """email-validator's normalized form, lower-cased; the lookup HMAC is taken over this.

    The local part is lower-cased too: RFC 5321 allows case-sensitive mailboxes but
    providers do not use them, and `Ann@x` and `ann@x` as two contacts would let an
    opt-out of one miss the other (SPAM-5). Reserved and special-use domains are refused
    unless `contacts.allow_reserved_domains` is on (staging).
    """
    text = raw.strip()
    tld = text.rpartition("@")[2].rstrip(".").rpartition(".")[2].lower()
    allowed = _ALLOW_RESERVED.get()
    if tld in RESERVED_TLDS and "@" in text and not allowed:
        raise ReservedDomain(f"reserved domain .{tld}")
    if allowed and tld in RESERVED_TLDS:
        info = validate_email(text, check_deliverability=False, globally_deliverable=False, test_environment=True)
    else:
        info = validate_email(text, check_deliverability=check_deliverability)
    return info.normalized.lower()


#: email-validator's messages -> our words (its own text can quote the address).
_REASONS: tuple[tuple[str, str], ...] = (
    ("must have an @-sign", "it has no @"),
    ("invalid characters: '@'", "it has more than one @"),
    ("something before the @-sign", "nothing before the @"),
    ("something after the @-sign", "nothing after the @"),
    ("period immediately before the @-sign", "a dot right before the @"),
    ("period immediately after the @-sign", "a dot right after the @"),
    ("cannot start with a period", "it starts with a dot"),
    ("cannot end with a period", "it ends with a dot"),
    ("two periods in a row", "two dots in a row"),
    ("before the @-sign: space", "a space before the @"),
    ("after the @-sign: space", "a space after the @"),
    ("invalid characters before the @-sign", "characters not allowed before the @"),
    ("invalid characters after the @-sign", "characters not allowed in the domain"),
    ("quoting the part before the @-sign", "a quoted part before the @ (not accepted)"),
    ("special-use or reserved name", "its domain is a reserved or special-use name"),
    ("should have a period", "its domain has no dot"),
    ("hyphen", "a domain label starts or ends with a hyphen"),
    ("too long", "it is too long"),
    ("does not exist", "its domain does not exist"),
    ("does not accept email", "its domain does not accept email"),
    ("domain", "its domain part is not valid"),
    ("before the @", "its local part is not valid"),
)


def address_problem(raw: str, err: Exception) -> str:
    """The true reason an address was refused, in a fixed vocabulary (never the address)."""
    if not raw.strip():
        return "empty"
    if isinstance(err, ReservedDomain):
        tld = str(err).rpartition(".")[2]
        return (f"its domain is reserved (.{tld}) and never reaches anyone; for staging set "
                "contacts.allow_reserved_domains = true")
    text = str(err).lower()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return "its syntax is not valid"


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
        if len(value) != 10:  # fromisoformat also takes 20260101 and 2026-W01-1
            raise ValueError("expected an ISO date YYYY-MM-DD")
        return dt.date.fromisoformat(value).isoformat()
    return value


def check_header(header: list[str], clinical: Mapping[str, str], path: str = "") -> list[RowProblem]:
    """Problems of the header row (case-insensitive; PHI-safe: mailer.csv_header)."""
    return csv_header.check(header, (*BASE_COLUMNS, *clinical), ("email",)).problems


def parse_row(line: int, row: Mapping[str, str | None], clinical: Mapping[str, str], separator: str,
              *, check_deliverability: bool = False) -> ContactInput | BadRow:
    """Validate one data row (a mapping from the header's columns to cells)."""
    problems: list[RowProblem] = []
    if None in row:  # surplus cells (csv.DictReader's convention)
        problems.append(RowProblem(line, "(row)", "more cells than header columns"))
    for name, cell in row.items():
        if name is not None and cell is not None and len(cell) > _MAX_CELL:
            problems.append(RowProblem(line, name, f"cell longer than {_MAX_CELL} characters"))
    raw_email = row.get("email") or ""
    email: str | None = None
    try:
        email = normalize_email(raw_email, check_deliverability=check_deliverability)
    except EmailNotValidError as err:
        problems.append(RowProblem(line, "email", f"not a valid address ({address_problem(raw_email, err)})"))
    opt_in = False
    if row.get("newsletter_opt_in") is not None:
        try:
            opt_in = parse_bool(row.get("newsletter_opt_in") or "")
        except ValueError as err:
            problems.append(RowProblem(line, "newsletter_opt_in", str(err)))
    language = (row.get("language") or "en").strip().lower() or "en"
    if len(language) > 16 or not language.replace("-", "").isalpha() or not language.isascii():
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
        return BadRow(line, tuple(problems), email)
    for k in IDENTITY_COLUMNS:
        if _CONTROL.search(row.get(k) or ""):
            problems.append(RowProblem(line, k, "contains a control character (NUL or a line break); "
                                                "a name is one line of text"))
    if problems:
        return BadRow(line, tuple(problems), email)
    identity = {k: (row.get(k) or "").strip() for k in IDENTITY_COLUMNS}
    present = frozenset(k for k in row if k is not None)
    return ContactInput(line, email or "", identity, language, opt_in, values, present)


def records(fh: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(start line, cells) of each CSV record; blank lines are skipped but counted."""
    reader = csv.reader(fh, strict=True)
    start = 1
    for cells in reader:
        if cells:
            yield start, cells
        start = reader.line_num + 1


def read_rows(fh: TextIO, path: str, clinical: Mapping[str, str], separator: str = ";",
              *, check_deliverability: bool = False) -> Iterator[ContactInput | BadRow]:
    """Stream a CSV: yields a ContactInput or a BadRow for each data row, in order.

    A bad header yields one BadRow for line 1 and stops. A file that is not CSV or not
    UTF-8 raises InputError naming the line.
    """
    it = records(fh)
    line = 1
    try:
        first = next(it, None)
        checked = csv_header.check(first[1] if first else [], (*BASE_COLUMNS, *clinical), ("email",))
        header, header_problems = checked.columns, checked.problems
        if header_problems:
            yield BadRow(1, tuple(header_problems))
            return
        width = len(header)
        for line, cells in it:
            row: dict[str | None, str | None] = dict(zip(header, cells, strict=False))
            if len(cells) > width:
                row[None] = ""
            elif len(cells) < width:
                yield BadRow(line, (RowProblem(line, "(row)", f"{len(cells)} cell(s) where the header has {width}"),))
                continue
            yield parse_row(line, row, clinical, separator, check_deliverability=check_deliverability)  # type: ignore[arg-type]
    except csv.Error as err:
        raise InputError(f"{path}: not a readable CSV file after line {line}: {err}",
                         hint="check quoting on that line") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text after line {line}", hint="save the file as UTF-8 CSV") from None


def open_csv(path: Path) -> TextIO:
    try:
        return path.open(newline="", encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
