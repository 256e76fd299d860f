"""Contacts at rest: encrypted identity and clinical fields, HMAC lookups, streaming import."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailer.contacts import ContactInput, open_csv, read_rows
from mailer.crypto import Keyring
from mailer.db import writing
from mailer.errors import ImportRejected, RowProblem
from mailer.ledger import CONTACT_IMPORT, Event, Ledger
from mailer.models import Contact, utcnow

BATCH = 1000


def aad(field_name: str, email_hash: str) -> bytes:
    """Binds a ciphertext to its column and its contact: swapped blobs fail to decrypt."""
    return f"contact:{field_name}:{email_hash}".encode()


def encrypt_contact(keyring: Keyring, c: ContactInput) -> dict[str, Any]:
    h = keyring.lookup_hash(c.email)
    return {
        "email_hash": h,
        "email_enc": keyring.encrypt(c.email.encode(), aad("email", h)),
        "identity_enc": keyring.encrypt_json(c.identity, aad("identity", h)),
        "phi_enc": keyring.encrypt_json(c.clinical, aad("phi", h)) if c.clinical else None,
        "key_id": keyring.active_key_id,
        "language": c.language,
        "newsletter_opt_in": c.newsletter_opt_in,
        "updated_at": utcnow(),
    }


@dataclass
class ImportReport:
    path: str
    imported: int = 0
    rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    duplicates: int = 0

    @property
    def skipped(self) -> int:
        return len({p.line for p in self.problems})


def _upsert(conn: Any, rows: list[dict[str, Any]]) -> None:
    table = Contact.__table__  # type: ignore[attr-defined]
    ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)
    stmt = ins.on_conflict_do_update(
        index_elements=["email_hash"],
        set_={k: ins.excluded[k] for k in rows[0] if k != "email_hash"},
    )
    conn.execute(stmt, rows)


def import_contacts(
    engine: Engine,
    keyring: Keyring,
    ledger: Ledger,
    path: Path,
    clinical: dict[str, str],
    *,
    separator: str = ";",
    skip_invalid: bool = False,
    actor: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Stream the file into one transaction: all-or-nothing unless skip_invalid.

    Re-importing the same file changes nothing but updated_at (upsert by lookup hash).
    Memory stays flat: rows are written in batches, only the lookup hashes are kept
    to report duplicates within the file.
    """
    report = ImportReport(str(path))
    seen: dict[str, int] = {}
    with open_csv(path) as fh, writing(engine) as conn:
        batch: list[dict[str, Any]] = []
        for item in read_rows(fh, str(path), clinical, separator):
            if isinstance(item, list):
                report.problems.extend(item)
                if item and item[0].line == 1:
                    break
                report.rows += 1
                continue
            report.rows += 1
            h = keyring.lookup_hash(item.email)
            first = seen.get(h)
            if first is not None:
                report.duplicates += 1
                report.problems.append(RowProblem(item.line, "email", f"duplicate of line {first}"))
                continue
            seen[h] = item.line
            if report.problems and not skip_invalid:
                continue  # keep validating, write nothing
            batch.append(encrypt_contact(keyring, item))
            if len(batch) >= BATCH:
                _upsert(conn, batch)
                report.imported += len(batch)
                batch = []
                if progress:
                    progress(report.rows)
        if report.problems and (not skip_invalid or report.problems[0].line == 1):
            report.imported = 0
            conn.rollback()
            raise ImportRejected(str(path), report.problems)
        if batch:
            _upsert(conn, batch)
            report.imported += len(batch)
        if progress:
            progress(report.rows)
        ledger.append_in(conn, [Event(
            kind=CONTACT_IMPORT, actor=actor,
            detail={"rows": report.rows, "imported": report.imported, "skipped": report.skipped,
                    "file_sha256_prefix": None},
        )])
    return report


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


