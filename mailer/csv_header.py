"""The header row of an import file: matched without regard to case, and reported without PHI.

A file whose first row is data (no header) would otherwise print each cell of the first
patient as an "unknown column": address, names, a condition, an authorization's text.
Here a cell that is not a known column name is named only by its position and a redacted
shape ("column 3: an email address", "column 5: text of 9 characters"), never its content.
A header that is one cell holding `;` (a file saved with semicolons, as spreadsheets do in
many locales) is named as the likely cause. Header problems are not bad rows: the message
says the header is wrong, and counts nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailer.errors import ImportRejected, RowProblem

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}$")
_NUMBER = re.compile(r"^[+-]?\d[\d ,.]*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # what a column name looks like once normalized


def normalize(name: str) -> str:
    """`Email`, ` E-mail `, `First Name` -> `email`, `e_mail`, `first_name`."""
    return re.sub(r"[\s\-]+", "_", name.strip().strip('"').strip().lower())


def shape(cell: str) -> str:
    """What a cell looks like, with nothing of what it says."""
    c = cell.strip()
    if not c:
        return "empty"
    if _EMAIL.match(c):
        return "an email address"
    if _DATE.match(c):
        return "a date"
    if _NUMBER.match(c):
        return "a number"
    if c.lower() in ("true", "false", "yes", "no"):
        return "a yes/no value"
    return f"text of {len(c)} character(s)"


@dataclass(frozen=True)
class Header:
    columns: list[str]  # normalized names, in file order
    problems: list[RowProblem]


def check(cells: Sequence[str], known: Sequence[str], required: Sequence[str]) -> Header:
    """The file's columns (normalized) and the problems of its header row (line 1)."""
    names = [normalize(c) for c in cells]
    known_set = set(known)
    accepted = ", ".join(known)
    problems: list[RowProblem] = []
    if len(cells) == 1 and ";" in cells[0]:
        parts = [normalize(p) for p in cells[0].split(";")]
        if any(p in known_set for p in parts):
            return Header(names, [RowProblem(1, "(header)", "the columns are separated by ';', not ','; save the "
                                                            "file as comma-separated CSV (UTF-8)")])
    unknown = [(i, c) for i, (c, n) in enumerate(zip(cells, names, strict=True), 1) if n not in known_set]
    if cells and len(unknown) == len(cells):
        looks = ", ".join(f"column {i}: {shape(c)}" for i, c in unknown[:6])
        return Header(names, [RowProblem(1, "(header)", f"line 1 is not a header row ({looks}); the first line "
                                                        f"must name the columns: {accepted}")])
    for i, c in unknown:
        n = names[i - 1]
        if _NAME.match(n):  # a real header row (another column is known) naming a column we do not know
            problems.append(RowProblem(1, n, f"unknown column (column {i}); accepted: {accepted}"))
        else:
            problems.append(RowProblem(1, f"column {i}", f"not a known column ({shape(c)}); accepted: {accepted}"))
    for r in required:
        if r not in names:
            problems.append(RowProblem(1, r, "required column is missing"))
    seen: set[str] = set()
    for n in names:
        if n in seen and n in known_set:
            problems.append(RowProblem(1, n, "column appears twice"))
        seen.add(n)
    return Header(names, problems)


def rejected(path: str, problems: list[RowProblem]) -> ImportRejected:
    """The error for a bad header: nothing imported, no row counted as bad."""
    err = ImportRejected(path, problems)
    err.message = f"{path}: the header row (line 1) cannot be used; nothing was imported"
    err.hint = "fix the first line of the file: it names the columns, separated by commas"
    return err


class NothingValid(ImportRejected):
    """--skip-invalid, and not one row was good: a failure (exit 1), not a partial success."""

    exit_code = 1


def nothing_valid(path: str, problems: list[RowProblem], rows: int) -> NothingValid:
    err = NothingValid(path, problems)
    err.message = f"{path}: none of the {rows} row(s) is valid; nothing was imported"
    err.hint = "correct the rows listed, then import again"
    return err


def bad_rows_message(path: str, problems: Sequence[RowProblem]) -> str:
    """'N bad row(s)' counting rows (lines), not problems: a row with two problems is one row."""
    return f"{path}: {len({p.line for p in problems})} bad row(s); nothing was imported"
