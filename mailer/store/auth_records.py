"""Authorization records at rest: import, grant, revoke, and lookups for the segment gate."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from mailer.contacts import normalize_email, parse_bool
from mailer.crypto import Keyring
from mailer.db import writing
from mailer.errors import ImportRejected, InputError, RowProblem
from mailer.ledger import AUTHORIZATION, Event, Ledger
from mailer.models import Authorization, Contact, utcnow

BOOL_FIELDS = (
    "signature_present", "statement_revocation", "statement_conditioning", "statement_redisclosure",
    "plain_language", "copy_provided", "compound", "treatment_conditioned", "known_false",
    "remuneration", "remuneration_statement",
)
TEXT_FIELDS = (
    "scope", "information_description", "discloser", "recipients", "purpose", "expiration_event",
    "signer", "representative_authority", "third_party", "document_sha256",
)
TIME_FIELDS = ("expires_at", "expiration_event_occurred_at", "signed_at", "revoked_at")
COLUMNS = ("email", *TEXT_FIELDS, *BOOL_FIELDS, *TIME_FIELDS)


def parse_time(value: str) -> dt.datetime | None:
    """ISO date or date-time; aware times are converted to naive UTC."""
    value = value.strip()
    if not value:
        return None
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t


def parse_record(line: int, row: Mapping[str, str | None]) -> dict[str, Any] | list[RowProblem]:
    problems: list[RowProblem] = []
    rec: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        v = (row.get(name) or "").strip()
        rec[name] = v or None if name in ("expiration_event", "representative_authority", "third_party") else v
    if not rec["scope"]:
        problems.append(RowProblem(line, "scope", "required"))
    rec["signer"] = rec["signer"] or "patient"
    if rec["signer"] not in ("patient", "representative"):
        problems.append(RowProblem(line, "signer", "expected patient or representative"))
    for name in BOOL_FIELDS:
        raw = row.get(name)
        if raw is None or not raw.strip():
            rec[name] = name == "plain_language"
            continue
        try:
            rec[name] = parse_bool(raw)
        except ValueError as err:
            problems.append(RowProblem(line, name, str(err)))
    for name in TIME_FIELDS:
        try:
            rec[name] = parse_time(row.get(name) or "")
        except ValueError:
            problems.append(RowProblem(line, name, "expected an ISO date or date-time, e.g. 2026-07-01T00:00:00Z"))
    sha = rec["document_sha256"]
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        problems.append(RowProblem(line, "document_sha256", "expected 64 hex digits"))
    return problems or rec


@dataclass
class AuthImportReport:
    path: str
    imported: int = 0
    problems: list[RowProblem] = field(default_factory=list)


def import_authorizations(engine: Engine, keyring: Keyring, ledger: Ledger, path: Path,
                          *, skip_invalid: bool = False, actor: str | None = None) -> AuthImportReport:
    """All-or-nothing by default; every record is a ledger event (AUTH-*, SEC-5)."""
    report = AuthImportReport(str(path))
    contacts = Contact.__table__  # type: ignore[attr-defined]
    table = Authorization.__table__  # type: ignore[attr-defined]
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    with fh, writing(engine) as conn:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        unknown = [c for c in header if c not in COLUMNS]
        if unknown or "email" not in header or "scope" not in header:
            probs = [RowProblem(1, c, f"unknown column; accepted: {', '.join(COLUMNS)}") for c in unknown]
            if "email" not in header:
                probs.append(RowProblem(1, "email", "required column is missing"))
            if "scope" not in header:
                probs.append(RowProblem(1, "scope", "required column is missing"))
            raise ImportRejected(str(path), probs)
        good: list[dict[str, Any]] = []
        for row in reader:
            line = reader.line_num
            parsed = parse_record(line, row)
            contact_id = None
            try:
                h = keyring.lookup_hash(normalize_email(row.get("email") or ""))
                contact_id = conn.execute(select(contacts.c.id).where(contacts.c.email_hash == h)).scalar()
                if contact_id is None:
                    report.problems.append(RowProblem(line, "email", "no contact with this address; import contacts first"))
            except Exception:  # noqa: BLE001 - email_validator's errors
                report.problems.append(RowProblem(line, "email", "not a valid address"))
            if isinstance(parsed, list):
                report.problems.extend(parsed)
                continue
            if contact_id is not None:
                parsed["contact_id"] = contact_id
                parsed["created_at"] = parsed["updated_at"] = utcnow()
                good.append(parsed)
        if report.problems and not skip_invalid:
            conn.rollback()
            raise ImportRejected(str(path), report.problems)
        events = []
        for rec in good:
            new_id = conn.execute(insert(table).values(**rec)).inserted_primary_key[0]
            events.append(Event(kind=AUTHORIZATION, outcome="imported", contact_id=rec["contact_id"],
                                authorization_id=new_id, actor=actor, detail={"scope": rec["scope"]}))
        ledger.append_in(conn, events)
        report.imported = len(good)
    return report


def revoke(engine: Engine, ledger: Ledger, *, contact_id: int, scope: str, at: dt.datetime | None = None,
           actor: str | None = None) -> list[int]:
    """Record a written revocation received at `at` (AUTH-7); returns the ids revoked."""
    at = at or utcnow()
    table = Authorization.__table__  # type: ignore[attr-defined]
    with writing(engine) as conn:
        ids = [r[0] for r in conn.execute(select(table.c.id).where(
            table.c.contact_id == contact_id, table.c.scope == scope, table.c.revoked_at.is_(None)))]
        if ids:
            conn.execute(update(table).where(table.c.id.in_(ids)).values(revoked_at=at, updated_at=utcnow()))
            ledger.append_in(conn, [Event(kind=AUTHORIZATION, outcome="revoked", contact_id=contact_id,
                                          authorization_id=i, actor=actor, rule_ids=("AUTH-7",),
                                          detail={"scope": scope, "effective": at.isoformat()}) for i in ids])
    return ids


def authorizations_for(engine: Engine, contact_ids: Iterable[int], scope: str | None = None) -> dict[int, list[Any]]:
    """All records of these contacts (optionally one scope), grouped by contact."""
    table = Authorization.__table__  # type: ignore[attr-defined]
    ids = list(contact_ids)
    out: dict[int, list[Any]] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 900):
            q = select(table).where(table.c.contact_id.in_(ids[i:i + 900]))
            if scope:
                q = q.where(table.c.scope == scope)
            for row in conn.execute(q):
                out.setdefault(row.contact_id, []).append(row)
    return out


