"""Contacts at rest: encrypted identity and clinical fields, HMAC lookups, streaming import."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine, bindparam, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailer import csv_header
from mailer.contacts import IDENTITY_COLUMNS, BadRow, ContactInput, read_rows
from mailer.crypto import Keyring
from mailer.db import writing
from mailer.errors import ImportRejected, InputError, RowProblem
from mailer.ledger import CONTACT_IMPORT, Event, Ledger
from mailer.models import Contact, utcnow

BATCH = 1000
MAX_PROBLEMS = 10_000  # problems listed; more are counted (a file of bad rows must not fill memory)


def aad(field_name: str, email_hash: str) -> bytes:
    """Binds a ciphertext to its column and its contact: swapped blobs fail to decrypt."""
    return f"contact:{field_name}:{email_hash}".encode()


def encrypt_contact(keyring: Keyring, c: ContactInput, *, now: dt.datetime | None = None) -> dict[str, Any]:
    h = keyring.lookup_hash(c.email)
    return encrypt_values(keyring, h, c.email, c.identity, c.clinical, c.language, c.newsletter_opt_in, now=now)


def encrypt_values(keyring: Keyring, h: str, email: str, identity: dict[str, str], clinical: dict[str, Any],
                   language: str, opt_in: bool, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """A contact row: every PHI blob under the active key, bound to its column and contact."""
    return {
        "email_hash": h,
        "email_enc": keyring.encrypt(email.encode(), aad("email", h)),
        "identity_enc": keyring.encrypt_json(identity, aad("identity", h)),
        "phi_enc": keyring.encrypt_json(clinical, aad("phi", h)) if clinical else None,
        "key_id": keyring.active_key_id,
        "language": language,
        "newsletter_opt_in": opt_in,
        "updated_at": now or utcnow(),
    }


@dataclass
class ImportReport:
    """Counts and problems of one import (problems name line, column, reason; no values)."""

    path: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    bad_rows: int = 0
    duplicates: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    problems_omitted: int = 0  # beyond MAX_PROBLEMS, counted but not listed

    @property
    def imported(self) -> int:
        """Rows written (inserted or changed); unchanged rows are not rewritten."""
        return self.inserted + self.updated

    @property
    def skipped(self) -> int:
        return self.bad_rows

    def add(self, problems: Iterable[RowProblem]) -> None:
        self.bad_rows += 1
        for p in problems:
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(p)
            else:
                self.problems_omitted += 1


def _upsert(conn: Any, rows: list[dict[str, Any]]) -> None:
    table = Contact.__table__  # type: ignore[attr-defined]
    ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)
    stmt = ins.on_conflict_do_update(
        index_elements=["email_hash"],
        set_={k: ins.excluded[k] for k in rows[0] if k != "email_hash"},
    )
    conn.execute(stmt, rows)


class _SeenHashes:
    """Lookup hashes already met in this file, with their line: a temporary table in the
    import's own transaction, so memory stays flat however long the file is."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TABLE IF EXISTS pg_temp.mailer_import_seen"))
            conn.execute(text("CREATE TEMPORARY TABLE mailer_import_seen "
                              "(email_hash VARCHAR(64) PRIMARY KEY, line INTEGER NOT NULL) ON COMMIT DROP"))
        else:
            conn.execute(text("DROP TABLE IF EXISTS temp.mailer_import_seen"))
            conn.execute(text("CREATE TEMPORARY TABLE mailer_import_seen "
                              "(email_hash TEXT PRIMARY KEY, line INTEGER NOT NULL)"))
        self._find = text("SELECT email_hash, line FROM mailer_import_seen WHERE email_hash IN :hs").bindparams(
            bindparam("hs", expanding=True))
        self._add = text("INSERT INTO mailer_import_seen (email_hash, line) VALUES (:h, :line)")

    def first_lines(self, hashes: list[str]) -> dict[str, int]:
        if not hashes:
            return {}
        return {h: line for h, line in self.conn.execute(self._find, {"hs": hashes})}

    def add(self, first: dict[str, int]) -> None:
        if first:
            self.conn.execute(self._add, [{"h": h, "line": line} for h, line in first.items()])

    def close(self) -> None:
        if self.conn.dialect.name != "postgresql":
            self.conn.execute(text("DROP TABLE IF EXISTS temp.mailer_import_seen"))


class _Tap(io.RawIOBase):
    """Counts and MACs the bytes read through it (progress by bytes; file fingerprint)."""

    def __init__(self, raw: BinaryIO, mac: Any) -> None:
        self.raw, self.mac, self.count = raw, mac, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.count += n
            self.mac.update(memoryview(buffer)[:n])
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def _merge(keyring: Keyring, old: Any, c: ContactInput) -> tuple[dict[str, str], dict[str, Any], str, bool, bool]:
    """The stored contact updated with the columns this file has (the others keep their
    values), and whether that equals what is stored."""
    h = old.email_hash
    old_identity = keyring.decrypt_json(old.identity_enc, aad("identity", h))
    old_clinical = keyring.decrypt_json(old.phi_enc, aad("phi", h)) if old.phi_enc is not None else {}
    identity = {**old_identity, **{k: c.identity[k] for k in IDENTITY_COLUMNS if k in c.present}}
    clinical = {**old_clinical, **c.clinical}
    language = c.language if "language" in c.present else old.language
    opt_in = c.newsletter_opt_in if "newsletter_opt_in" in c.present else bool(old.newsletter_opt_in)
    same = (identity == old_identity and clinical == old_clinical and language == old.language
            and opt_in == bool(old.newsletter_opt_in))
    return identity, clinical, language, opt_in, same


def import_contacts(
    engine: Engine,
    keyring: Keyring,
    ledger: Ledger,
    path: Path,
    clinical: dict[str, str],
    *,
    separator: str = ";",
    skip_invalid: bool = False,
    check_deliverability: bool = False,
    actor: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = BATCH,
) -> ImportReport:
    """Stream the file into one transaction: all-or-nothing unless skip_invalid.

    Upsert by lookup hash. A row whose decrypted values equal the stored ones is not
    rewritten (same ciphertext, same updated_at), so re-importing a file changes nothing.
    Memory stays flat: rows go in batches; the lookup hashes seen so far, needed to report
    "duplicate of line N", live in a temporary table of the same transaction.
    `progress(rows, bytes_read)` is called after each batch.
    """
    report = ImportReport(str(path))
    try:
        raw = path.open("rb")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    tap = _Tap(raw, hmac.new(keyring.lookup_key, b"mailer-import-file:", hashlib.sha256))
    fh = io.TextIOWrapper(io.BufferedReader(tap), encoding="utf-8-sig", newline="")
    with fh, writing(engine) as conn:
        seen = _SeenHashes(conn)
        pending: list[tuple[ContactInput | BadRow, str | None]] = []

        def flush() -> None:
            _flush(conn, keyring, seen, pending, report, write=skip_invalid or not report.bad_rows)
            pending.clear()
            if progress:
                progress(report.rows, tap.count)

        for item in read_rows(fh, str(path), clinical, separator, check_deliverability=check_deliverability):
            if isinstance(item, BadRow) and item.line == 1:
                report.problems.extend(item.problems)  # the header: not a bad row
                break
            report.rows += 1
            h = keyring.lookup_hash(item.email) if item.email else None
            pending.append((item, h))
            if len(pending) >= batch_size:
                flush()
        if pending or progress:
            flush()
        header_bad = bool(report.problems) and report.problems[0].line == 1
        if header_bad:
            conn.rollback()
            raise csv_header.rejected(report.path, list(report.problems))
        if report.bad_rows and not skip_invalid:
            conn.rollback()
            raise _rejected(report)
        if report.bad_rows and not (report.inserted or report.updated or report.unchanged):
            conn.rollback()  # --skip-invalid, and nothing was good: a failure, not a success
            raise csv_header.nothing_valid(report.path, list(report.problems), report.rows)
        seen.close()
        ledger.append_in(conn, [Event(
            kind=CONTACT_IMPORT, actor=actor, outcome="imported",
            detail={"rows": report.rows, "inserted": report.inserted, "updated": report.updated,
                    "unchanged": report.unchanged, "skipped": report.bad_rows, "duplicates": report.duplicates,
                    "mode": "skip-invalid" if skip_invalid else "all-or-nothing",
                    "file_hmac": tap.mac.hexdigest()},
        )])
    return report


def _rejected(report: ImportReport) -> ImportRejected:
    err = ImportRejected(report.path, list(report.problems))
    listed = "" if not report.problems_omitted else f" (first {len(report.problems)} problems listed)"
    err.message = f"{report.path}: {report.bad_rows} bad row(s); nothing was imported{listed}"
    return err


def _flush(conn: Any, keyring: Keyring, seen: _SeenHashes, pending: list[tuple[ContactInput | BadRow, str | None]],
           report: ImportReport, *, write: bool) -> None:
    """Duplicates against earlier lines, then the writes of one batch (in line order)."""
    earlier = seen.first_lines([h for _, h in pending if h is not None])
    first: dict[str, int] = {}
    good: list[tuple[ContactInput, str]] = []
    for item, h in pending:
        dup = None if h is None else earlier.get(h, first.get(h))
        problems = list(item.problems) if isinstance(item, BadRow) else []
        if dup is not None:
            report.duplicates += 1
            problems.append(RowProblem(item.line, "email", f"duplicate of line {dup}"))
        elif h is not None:
            first[h] = item.line
        if problems:
            report.add(sorted(problems, key=lambda p: p.field != "(row)"))
        elif isinstance(item, ContactInput) and h is not None:
            good.append((item, h))
    seen.add(first)
    if not write or not good:
        return
    table = Contact.__table__  # type: ignore[attr-defined]
    existing = {r.email_hash: r for r in conn.execute(
        select(table).where(table.c.email_hash.in_([h for _, h in good])))}
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for c, h in good:
        old = existing.get(h)
        if old is None:
            rows.append(encrypt_contact(keyring, c, now=now))
            report.inserted += 1
            continue
        identity, clin, language, opt_in, same = _merge(keyring, old, c)
        if same:
            report.unchanged += 1
            continue
        rows.append(encrypt_values(keyring, h, c.email, identity, clin, language, opt_in, now=now))
        report.updated += 1
    if rows:
        _upsert(conn, rows)


@dataclass(frozen=True)
class ContactView:
    """A decrypted contact for the sender: only what rendering and checks need."""

    id: int
    email: str
    email_hash: str
    identity: dict[str, str]
    language: str


def decrypt_identity(keyring: Keyring, row: Any) -> ContactView:
    h = row.email_hash
    return ContactView(
        id=row.id,
        email=keyring.decrypt(row.email_enc, aad("email", h)).decode(),
        email_hash=h,
        identity=keyring.decrypt_json(row.identity_enc, aad("identity", h)),
        language=row.language,
    )


def decrypt_clinical(keyring: Keyring, row: Any) -> dict[str, Any]:
    if row.phi_enc is None:
        return {}
    return keyring.decrypt_json(row.phi_enc, aad("phi", row.email_hash))


def contacts_by_id(engine: Engine, ids: Iterable[int]) -> dict[int, Any]:
    table = Contact.__table__  # type: ignore[attr-defined]
    ids = list(ids)
    out: dict[int, Any] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 900):
            for row in conn.execute(select(table).where(table.c.id.in_(ids[i:i + 900]))):
                out[row.id] = row
    return out


def iter_contact_rows(engine: Engine, *, where: Iterable[Any] = (), batch: int = BATCH) -> Iterator[Any]:
    """Stream rows by id, a page at a time (keyset pagination; never all in memory)."""
    table = Contact.__table__  # type: ignore[attr-defined]
    after = 0
    conds = list(where)
    while True:
        with engine.connect() as conn:
            page = conn.execute(select(table).where(table.c.id > after, *conds).order_by(table.c.id).limit(batch)).all()
        if not page:
            return
        yield from page
        after = page[-1].id


def contact_id_for(engine: Engine, keyring: Keyring, email: str) -> int | None:
    from mailer.contacts import normalize_email

    h = keyring.lookup_hash(normalize_email(email))
    table = Contact.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return conn.execute(select(table.c.id).where(table.c.email_hash == h)).scalar()


