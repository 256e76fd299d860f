"""Filters over the ledger, and streaming CSV / JSON Lines export (never all rows in memory).

An export is itself a ledger entry (kind `data-export`, SEC-5): who, which filters, how
many entries, up to which seq, and the SHA-256 of the bytes written, so a reviewer can
later prove which copy left the system. Exports carry ids and hashes only: the ledger
holds no address, subject, body or clinical value.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO, Any

from sqlalchemy import ColumnElement

from mailer.errors import InputError
from mailer.ledger import DATA_EXPORT, Event, Ledger
from mailer.models import LedgerEntry

_T = LedgerEntry.__table__  # type: ignore[attr-defined]

# Every column, in table order: the hashes and MAC let a reviewer re-check entries offline.
COLUMNS = (
    "seq", "at", "kind", "outcome", "campaign_id", "contact_id", "recipient_hash",
    "template_hash", "message_hash", "message_id", "relay", "tls_version", "tls_cipher",
    "smtp_code", "smtp_text", "authorization_id", "rule_ids", "actor", "detail", "key_id",
    "prev_hash", "entry_hash", "mac",
)
FORMATS = ("csv", "jsonl")


def parse_when(text: str, *, end: bool = False) -> datetime:
    """YYYY-MM-DD or an ISO date-time, read as naive UTC. A bare date as an end bound
    means the end of that day (`--until 2026-09-30` includes the 30th)."""
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            start = datetime(d.year, d.month, d.day)
            return start + timedelta(days=1) if end else start
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date", hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC)") from None
    if when.tzinfo is not None:
        from datetime import UTC

        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


def _split(values: Sequence[str] | str | None) -> tuple[str, ...]:
    if not values:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(dict.fromkeys(v.strip() for item in values for v in item.split(",") if v.strip()))


@dataclass(frozen=True)
class Filters:
    """Which entries: all conditions must hold. `until` is exclusive."""

    campaign_id: int | None = None
    contact_id: int | None = None
    kinds: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def build(cls, *, campaign: int | None = None, contact: int | None = None,
              kind: Sequence[str] | str | None = None, outcome: Sequence[str] | str | None = None,
              since: str | None = None, until: str | None = None) -> Filters:
        f = cls(campaign, contact, _split(kind), _split(outcome),
                parse_when(since) if since else None, parse_when(until, end=True) if until else None)
        if f.since and f.until and f.since >= f.until:
            raise InputError("--since must be before --until")
        return f

    def conditions(self) -> list[ColumnElement[bool]]:
        c: list[ColumnElement[bool]] = []
        if self.campaign_id is not None:
            c.append(_T.c.campaign_id == self.campaign_id)
        if self.contact_id is not None:
            c.append(_T.c.contact_id == self.contact_id)
        if self.kinds:
            c.append(_T.c.kind.in_(self.kinds))
        if self.outcomes:
            c.append(_T.c.outcome.in_(self.outcomes))
        if self.since is not None:
            c.append(_T.c.at >= self.since)
        if self.until is not None:
            c.append(_T.c.at < self.until)
        return c

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"campaign": self.campaign_id, "contact": self.contact_id, "kind": list(self.kinds),
                             "outcome": list(self.outcomes),
                             "since": self.since.isoformat() if self.since else None,
                             "until": self.until.isoformat() if self.until else None}
        return {k: v for k, v in d.items() if v not in (None, [])}


def entries(ledger: Ledger, filters: Filters, *, through_seq: int | None = None, batch: int = 5000) -> Iterator[Any]:
    """Matching entries in seq order, paged. `through_seq` pins the end (an export does not
    chase entries appended while it runs, its own included)."""
    conds = filters.conditions()
    if through_seq is not None:
        conds.append(_T.c.seq <= through_seq)
    return ledger.rows(batch=batch, where=conds)


def record(row: Any) -> dict[str, Any]:
    """One entry as JSON-ready values, in COLUMNS order."""
    m = row._mapping
    out: dict[str, Any] = {}
    for name in COLUMNS:
        v = m[name]
        if isinstance(v, datetime):
            v = v.isoformat(timespec="microseconds")
        out[name] = v
    return out


class _HashingWriter:
    """A text sink that also hashes what passes through it (UTF-8)."""

    def __init__(self, target: IO[str]) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, s: str) -> int:
        b = s.encode("utf-8")
        self.sha.update(b)
        self.bytes += len(b)
        return self.target.write(s)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV
    injection): an actor name, a reply text or a detail starting with = + - @ tab or CR."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    # the csv module quotes only the line terminator's characters ("\n"): a bare CR would
    # split the row in a reader, so it is written as the two characters \r
    return value.replace("\r", "\\r")


def write_rows(rows: Iterator[Any], fmt: str, target: IO[str]) -> tuple[int, str, int]:
    """Stream rows to target as csv or jsonl; returns (count, sha256 of the text, bytes)."""
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not supported", hint="use csv or jsonl")
    sink = _HashingWriter(target)
    n = 0
    if fmt == "csv":
        w = csv.writer(sink, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            rec = record(r)
            w.writerow(["" if rec[c] is None else csv_cell(rec[c]) for c in COLUMNS])
            n += 1
    else:
        for r in rows:
            sink.write(json.dumps(record(r), separators=(",", ":"), ensure_ascii=True) + "\n")
            n += 1
    return n, sink.sha.hexdigest(), sink.bytes


@dataclass
class ExportResult:
    entries: int
    sha256: str
    bytes: int
    through_seq: int
    seq: int = 0  # the data-export ledger entry that records this export
    filters: dict[str, Any] = field(default_factory=dict)


def export(ledger: Ledger, filters: Filters, fmt: str, target: IO[str], *, actor: str | None = None,
           destination: str = "stdout") -> ExportResult:
    """Stream the matching entries, then record the export in the ledger (SEC-5)."""
    through = ledger.last_seq()
    n, digest, size = write_rows(entries(ledger, filters, through_seq=through), fmt, target)
    seq = ledger.append([Event(kind=DATA_EXPORT, outcome="ledger-export", campaign_id=filters.campaign_id,
                               contact_id=filters.contact_id, actor=actor, rule_ids=("SEC-5",),
                               detail={"format": fmt, "filters": filters.as_dict(), "entries": n,
                                       "through_seq": through, "sha256": digest, "bytes": size,
                                       "destination": destination})])[0]
    return ExportResult(n, digest, size, through, seq, filters.as_dict())
