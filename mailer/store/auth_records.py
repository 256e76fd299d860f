"""Authorization records at rest: import, grant, revoke, purge, and decrypted lookups for the gate.

The free-text 164.508(c) elements (ELEMENT_FIELDS) are stored as one AES-GCM JSON blob,
`elements_enc`, under the active field key (SEC-4); the rest of the record (ids, scope,
flags, dates, document hash, signer) stays in clear for SQL and the retention rules.
The blob's associated data is the record's identity (`aad`): contact, scope, signature
time and document hash, the same values that make two rows "the same signed document"
on import. They are all known before the INSERT (the row id is not) and no code path
edits them, so a blob moved to another patient's record, another scope or another signed
document fails to decrypt. Callers of `authorizations.is_valid` get `AuthorizationRecord`,
a decrypted view, never the stored row.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError
from sqlalchemy import Engine, delete, insert, select, update

from mailer import csv_header
from mailer.authorizations import SCOPES, Validity, check_purge, is_valid, retention_until
from mailer.contacts import normalize_email, parse_bool, records
from mailer.crypto import Keyring
from mailer.db import writing
from mailer.errors import ImportRejected, InputError, RetentionRefusal, RowProblem
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
COLUMNS = ("email", *TEXT_FIELDS, *BOOL_FIELDS, *TIME_FIELDS, "form_version")  # form_version: issue 17
#: The free-text elements kept only in `elements_enc` (PHI: what is disclosed, to whom, why).
ELEMENT_FIELDS = (
    "information_description", "discloser", "recipients", "purpose", "expiration_event",
    "representative_authority", "third_party",
)
#: Elements stored as "" when absent (AUTH-1 core elements); the others as None.
_REQUIRED_TEXT = ("information_description", "discloser", "recipients", "purpose")


def aad(contact_id: int, scope: str, signed_at: dt.datetime | None, document_sha256: str | None) -> bytes:
    """Binds `elements_enc` to its record's identity (module docstring): swapped blobs fail."""
    signed = signed_at.isoformat() if signed_at is not None else "-"
    return f"authorization:elements:{contact_id}:{scope}:{signed}:{document_sha256 or ''}".encode()


def _row_aad(row: Any) -> bytes:
    return aad(row.contact_id, row.scope, row.signed_at, row.document_sha256)


def encrypt_record(keyring: Keyring, rec: Mapping[str, Any]) -> dict[str, Any]:
    """Column values to store for `rec` (contact_id plus any record fields): the elements
    leave for `elements_enc` under the active key; everything else is kept as given."""
    out = {k: v for k, v in rec.items() if k not in ELEMENT_FIELDS}
    out["document_sha256"] = out.get("document_sha256") or ""
    elements = {k: rec.get(k) for k in ELEMENT_FIELDS}
    for k in _REQUIRED_TEXT:
        elements[k] = elements[k] or ""
    out["elements_enc"] = keyring.encrypt_json(elements, aad(rec["contact_id"], rec["scope"], rec.get("signed_at"),
                                                             out["document_sha256"]))
    out["key_id"] = keyring.active_key_id
    return out


def reencrypt_record(keyring: Keyring, row: Any, to_kid: str) -> bytes:
    """The row's elements under key `to_kid`, same associated data (key rotation)."""
    a = _row_aad(row)
    return keyring.encrypt(keyring.decrypt(row.elements_enc, a), a, key_id=to_kid)


@dataclass(frozen=True)
class AuthorizationRecord:
    """A decrypted authorization: what `authorizations.AuthorizationLike` asks for.

    Built by `decrypt_authorization`; lives in memory only. The text elements are left out
    of repr, so a record that reaches a log or a traceback shows ids, flags and dates.
    Defaults are those of `models.Authorization`.
    """

    id: int | None
    contact_id: int
    scope: str
    created_at: dt.datetime
    information_description: str = field(default="", repr=False)
    discloser: str = field(default="", repr=False)
    recipients: str = field(default="", repr=False)
    purpose: str = field(default="", repr=False)
    expires_at: dt.datetime | None = None
    expiration_event: str | None = field(default=None, repr=False)
    expiration_event_occurred_at: dt.datetime | None = None
    signed_at: dt.datetime | None = None
    signature_present: bool = False
    statement_revocation: bool = False
    statement_conditioning: bool = False
    statement_redisclosure: bool = False
    plain_language: bool = True
    copy_provided: bool = False
    signer: str = "patient"
    representative_authority: str | None = field(default=None, repr=False)
    compound: bool = False
    treatment_conditioned: bool = False
    known_false: bool = False
    remuneration: bool = False
    remuneration_statement: bool = False
    third_party: str | None = field(default=None, repr=False)
    document_sha256: str = ""
    revoked_at: dt.datetime | None = None


#: Stored columns an `AuthorizationRecord` is built from (select these, or the whole row).
RECORD_COLUMNS = (
    "id", "contact_id", "scope", "elements_enc", "expires_at", "expiration_event_occurred_at",
    "signed_at", "signature_present", "statement_revocation", "statement_conditioning",
    "statement_redisclosure", "plain_language", "copy_provided", "signer", "compound",
    "treatment_conditioned", "known_false", "remuneration", "remuneration_statement",
    "document_sha256", "revoked_at", "created_at",
)
_CLEAR = tuple(c for c in RECORD_COLUMNS if c != "elements_enc")


def decrypt_authorization(keyring: Keyring, row: Any) -> AuthorizationRecord:
    """The decrypted view of a stored row (DecryptionError if the blob is not this row's)."""
    elements = keyring.decrypt_json(row.elements_enc, _row_aad(row))
    values: dict[str, Any] = {k: getattr(row, k) for k in _CLEAR}
    for k in ELEMENT_FIELDS:
        v = elements.get(k)
        values[k] = (v or "") if k in _REQUIRED_TEXT else v
    for k in BOOL_FIELDS:
        values[k] = bool(values[k])
    return AuthorizationRecord(**values)


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
    elif rec["scope"] not in SCOPES:
        problems.append(RowProblem(line, "scope", f"unknown scope; accepted: {', '.join(SCOPES)}"))
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
    rec["form_version"] = (row.get("form_version") or "").strip() or None  # the mailer form it was signed on
    if rec["form_version"] and not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", rec["form_version"]):
        problems.append(RowProblem(line, "form_version", "expected a version like 2026-12 (letters, digits, . _ -)"))
    sha = rec["document_sha256"]
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        problems.append(RowProblem(line, "document_sha256", "expected 64 hex digits"))
    return problems or rec


@dataclass
class AuthImportReport:
    path: str
    imported: int = 0
    unchanged: int = 0  # identical records already on file (re-importing a file adds nothing)
    problems: list[RowProblem] = field(default_factory=list)


#: What identifies one signed document: a second row with these values is the same record.
IDENTITY = ("contact_id", "scope", "signed_at", "document_sha256")
#: Fields compared to decide "already on file" vs "conflicting": revocations are not
#: compared (they are recorded with `revoke`, which keeps the earliest receipt).
_COMPARED = tuple(f for f in (*TEXT_FIELDS, *BOOL_FIELDS, *TIME_FIELDS) if f != "revoked_at")


def _on_file(conn: Any, keyring: Keyring, rec: Mapping[str, Any]) -> AuthorizationRecord | None:
    table = Authorization.__table__  # type: ignore[attr-defined]
    q = select(table).where(*(table.c[k] == rec[k] if rec[k] is not None else table.c[k].is_(None) for k in IDENTITY))
    row = conn.execute(q.limit(1)).first()
    return None if row is None else decrypt_authorization(keyring, row)


def import_authorizations(engine: Engine, keyring: Keyring, ledger: Ledger, path: Path,
                          *, skip_invalid: bool = False, actor: str | None = None,
                          now: dt.datetime | None = None) -> AuthImportReport:
    """All-or-nothing by default; every record is a ledger event (AUTH-*, SEC-5).

    A row identical to a record on file (same contact, scope, signature time, document and
    elements) is counted as unchanged; one that differs in its elements is a problem.
    """
    report = AuthImportReport(str(path))
    contacts = Contact.__table__  # type: ignore[attr-defined]
    table = Authorization.__table__  # type: ignore[attr-defined]
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    with fh, writing(engine) as conn:
        it = records(fh)
        try:
            first = next(it, None)
        except csv.Error as err:
            raise InputError(f"{path}:1: not a readable CSV file: {err}") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text (line 1)", hint="save the file as UTF-8 CSV") from None
        checked = csv_header.check(first[1] if first else [], COLUMNS, ("email", "scope"))
        header = checked.columns
        if checked.problems:
            raise csv_header.rejected(str(path), checked.problems)
        good: list[dict[str, Any]] = []
        seen_in_file: dict[tuple[Any, ...], int] = {}
        line = 1
        try:
            for line, cells in it:
                if len(cells) != len(header):
                    report.problems.append(RowProblem(line, "(row)", f"{len(cells)} cell(s) where the header has {len(header)}"))
                    continue
                row = dict(zip(header, cells, strict=True))
                parsed = parse_record(line, row)
                contact_id = None
                try:
                    h = keyring.lookup_hash(normalize_email(row.get("email") or ""))
                    contact_id = conn.execute(select(contacts.c.id).where(contacts.c.email_hash == h)).scalar()
                    if contact_id is None:
                        report.problems.append(RowProblem(line, "email", "no contact with this address; import contacts first"))
                except EmailNotValidError:
                    report.problems.append(RowProblem(line, "email", "not a valid address"))
                if isinstance(parsed, list):
                    report.problems.extend(parsed)
                    continue
                if contact_id is None:
                    continue
                parsed["contact_id"] = contact_id
                key = tuple(parsed[k] for k in IDENTITY)
                if key in seen_in_file:
                    report.problems.append(RowProblem(line, "email", f"duplicate of line {seen_in_file[key]} (same contact, scope, signature and document)"))
                    continue
                seen_in_file[key] = line
                old = _on_file(conn, keyring, parsed)
                if old is not None:
                    if all(getattr(old, f) == parsed[f] for f in _COMPARED):
                        report.unchanged += 1
                    else:
                        report.problems.append(RowProblem(line, "(row)", f"differs from authorization {old.id} on file for the same signed document; records are not edited, record a new document"))
                    continue
                parsed["created_at"] = parsed["updated_at"] = now or utcnow()
                good.append(parsed)
        except csv.Error as err:
            raise InputError(f"{path}: not a readable CSV file after line {line}: {err}") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text after line {line}", hint="save the file as UTF-8 CSV") from None
        if report.problems and not skip_invalid:
            conn.rollback()
            rej = ImportRejected(str(path), sorted(report.problems, key=lambda p: p.line))
            rej.message = csv_header.bad_rows_message(str(path), report.problems)
            raise rej
        if report.problems and not good and not report.unchanged:
            conn.rollback()  # --skip-invalid, and nothing was good: a failure, not a success
            rows = len({p.line for p in report.problems})
            raise csv_header.nothing_valid(str(path), sorted(report.problems, key=lambda p: p.line), rows)
        events = []
        for rec in good:
            stored = encrypt_record(keyring, rec)
            new_id = conn.execute(insert(table).values(**stored)).inserted_primary_key[0]  # type: ignore[index]
            events.append(Event(kind=AUTHORIZATION, outcome="imported", contact_id=rec["contact_id"],
                                authorization_id=new_id, actor=actor, detail={"scope": rec["scope"]}))
        events.append(Event(kind=AUTHORIZATION, outcome="import", actor=actor,
                            detail={"imported": len(good), "unchanged": report.unchanged,
                                    "skipped_rows": len({p.line for p in report.problems})}))
        ledger.append_in(conn, events)
        report.imported = len(good)
    return report


def grant(engine: Engine, keyring: Keyring, ledger: Ledger, *, contact_id: int, fields: Mapping[str, Any],
          actor: str | None = None, now: dt.datetime | None = None) -> int:
    """Record one signed authorization (all 164.508(c) elements in `fields`); returns its id.

    A record with missing elements is still recorded (it is what was signed); `is_valid`
    says what it lacks. Unknown fields, an unknown scope or signer, or a bad document hash
    are input errors.
    """
    rec: dict[str, Any] = {f: fields[f] for f in (*TEXT_FIELDS, *BOOL_FIELDS, *TIME_FIELDS) if f in fields}
    extra = set(fields) - set(rec)
    if extra:
        raise InputError(f"unknown authorization field(s): {', '.join(sorted(extra))}")
    if rec.get("scope") not in SCOPES:
        raise InputError("unknown authorization scope", hint=f"one of {', '.join(SCOPES)}")
    rec.setdefault("signer", "patient")
    if rec["signer"] not in ("patient", "representative"):
        raise InputError("signer must be patient or representative")
    sha = rec.get("document_sha256") or ""
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise InputError("document_sha256 must be 64 lower-case hex digits")
    contacts = Contact.__table__  # type: ignore[attr-defined]
    table = Authorization.__table__  # type: ignore[attr-defined]
    at = now or utcnow()
    with writing(engine) as conn:
        if conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id)).scalar() is None:
            raise InputError(f"no contact with id {contact_id}")
        rec.update(contact_id=contact_id, created_at=at, updated_at=at)
        stored = encrypt_record(keyring, rec)
        new_id: int = conn.execute(insert(table).values(**stored)).inserted_primary_key[0]  # type: ignore[index]
        ledger.append_in(conn, [Event(kind=AUTHORIZATION, outcome="granted", contact_id=contact_id,
                                      authorization_id=new_id, actor=actor,
                                      detail={"scope": rec["scope"], "document_sha256": sha or None})])
    return new_id


def grant_checked(engine: Engine, keyring: Keyring, ledger: Ledger, *, contact_id: int,
                  fields: Mapping[str, Any], actor: str | None = None) -> tuple[int, Validity]:
    """`grant`, then the new record's validity now (what `authorizations grant` and the
    workspace's grant form both report: status, rule IDs and reasons, no element's text)."""
    new_id = grant(engine, keyring, ledger, contact_id=contact_id, fields=fields, actor=actor)
    scope = str(fields["scope"])
    rec = next(r for r in authorizations_for(engine, keyring, [contact_id], scope)[contact_id] if r.id == new_id)
    return new_id, is_valid(rec, scope, utcnow())


def check_known_scope(engine: Engine, contact_id: int, scope: str) -> None:
    """A scope nobody knows, or a contact id nobody has, is a typo, not a revocation: refuse
    (exit 2) listing the known scopes and the ones this contact holds, so no authorization
    stays valid by mistake."""
    table = Authorization.__table__  # type: ignore[attr-defined]
    contacts = Contact.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        if conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id)).first() is None:
            raise InputError(f"no contact with id {contact_id}; nothing was revoked",
                             hint="check the id (the authorizations list shows each record's contact id)")
        held = sorted({r[0] for r in conn.execute(select(table.c.scope).where(table.c.contact_id == contact_id))})
    if scope in SCOPES or scope in held:
        return
    raise InputError(f"scope {scope!r} is unknown; nothing was revoked",
                     hint=f"known scopes: {', '.join(SCOPES)}; contact {contact_id} holds: "
                     f"{', '.join(held) or 'no authorizations'}")


def document_sha256(path: Path) -> str:
    """SHA-256 of the signed document (read in chunks)."""
    try:
        h = hashlib.sha256()
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    return h.hexdigest()


@dataclass(frozen=True)
class Listed:
    """One registry line for `authorizations list`: ids, scope, status and dates, never names."""

    id: int
    contact_id: int
    scope: str
    status: str
    rules: tuple[str, ...]
    signed_at: dt.datetime | None
    expires_at: dt.datetime | None
    expiration_event: bool
    revoked_at: dt.datetime | None
    remuneration: bool
    retention_until: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "contact_id": self.contact_id, "scope": self.scope, "status": self.status,
            "rules": list(self.rules), "signed_at": _iso(self.signed_at), "expires_at": _iso(self.expires_at),
            "expiration_event": self.expiration_event, "revoked_at": _iso(self.revoked_at),
            "remuneration": self.remuneration, "retention_until": _iso(self.retention_until),
        }


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def list_authorizations(engine: Engine, keyring: Keyring, *, at: dt.datetime, contact_id: int | None = None,
                        scope: str | None = None, expiring_within: dt.timedelta | None = None,
                        page: int = 1000) -> Iterator[Listed]:
    """Stream registry lines with their validity at `at` (via `authorizations.is_valid`).

    `expiring_within`: only records valid at `at` whose expiration date falls within it.
    """
    table = Authorization.__table__  # type: ignore[attr-defined]
    conds: list[Any] = []
    if contact_id is not None:
        conds.append(table.c.contact_id == contact_id)
    if scope:
        conds.append(table.c.scope == scope)
    if expiring_within is not None:
        conds += [table.c.expires_at.is_not(None), table.c.expires_at > at, table.c.expires_at <= at + expiring_within]
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(select(table).where(table.c.id > after, *conds).order_by(table.c.id).limit(page)).all()
        if not rows:
            return
        for row in rows:
            r = decrypt_authorization(keyring, row)
            v = is_valid(r, r.scope, at)
            if expiring_within is not None and not v.valid:
                continue
            until = retention_until(r)
            yield Listed(row.id, r.contact_id, r.scope, str(v.status), v.rules, r.signed_at, r.expires_at,
                         bool(r.expiration_event), r.revoked_at, bool(r.remuneration),
                         None if until == dt.datetime.max else until)
        after = rows[-1].id


def purge(engine: Engine, ledger: Ledger, *, contact_id: int, scope: str | None = None,
          at: dt.datetime | None = None, actor: str | None = None) -> list[int]:
    """Delete a contact's authorization records once AUTH-9 retention has ended for all of them.

    All or nothing: if any record is inside its retention period, nothing is deleted, the
    refused attempt is recorded in the ledger, and RetentionRefusal (exit 3) is raised.
    Retention depends on dates only (`authorizations.RetentionLike`): nothing is decrypted.
    """
    at = at or utcnow()
    table = Authorization.__table__  # type: ignore[attr-defined]
    refusal: RetentionRefusal | None = None
    with writing(engine) as conn:
        q = select(table).where(table.c.contact_id == contact_id)
        if scope:
            q = q.where(table.c.scope == scope)
        recs = conn.execute(q.order_by(table.c.id)).all()
        refused: list[tuple[Any, RetentionRefusal]] = []
        for r in recs:
            try:
                check_purge(r, at)
            except RetentionRefusal as err:
                refused.append((r, err))
        if refused:
            refusal = RetentionRefusal([ref for _, e in refused for ref in e.refusals])
            ledger.append_in(conn, [Event(kind=AUTHORIZATION, outcome="purge-refused", contact_id=contact_id,
                                          authorization_id=r.id, actor=actor, rule_ids=("AUTH-9",),
                                          detail={"scope": r.scope, "retention_until": _iso(
                                              None if (u := retention_until(r)) == dt.datetime.max else u)})
                                    for r, _ in refused])
        else:
            ids = [r.id for r in recs]
            if ids:
                conn.execute(delete(table).where(table.c.id.in_(ids)))
            ledger.append_in(conn, [Event(kind=AUTHORIZATION, outcome="purged", contact_id=contact_id,
                                          authorization_id=r.id, actor=actor, rule_ids=("AUTH-9",),
                                          detail={"scope": r.scope}) for r in recs]
                             or [Event(kind=AUTHORIZATION, outcome="purge-none", contact_id=contact_id,
                                       actor=actor, detail={"scope": scope})])
    if refusal is not None:
        raise refusal
    return [r.id for r in recs]


def revoke(engine: Engine, ledger: Ledger, *, contact_id: int, scope: str, at: dt.datetime | None = None,
           actor: str | None = None) -> list[int]:
    """Record a written revocation received at `at` (AUTH-7); returns the ids revoked.

    Records already revoked later than `at` take the earlier receipt. A revocation that
    matches no record is still a ledger event (the letter was received).
    """
    at = at or utcnow()
    table = Authorization.__table__  # type: ignore[attr-defined]
    with writing(engine) as conn:
        ids = [r[0] for r in conn.execute(select(table.c.id).where(
            table.c.contact_id == contact_id, table.c.scope == scope,
            (table.c.revoked_at.is_(None)) | (table.c.revoked_at > at)).order_by(table.c.id))]
        if ids:
            conn.execute(update(table).where(table.c.id.in_(ids)).values(revoked_at=at, updated_at=utcnow()))
        ledger.append_in(conn, [Event(kind=AUTHORIZATION, outcome="revoked", contact_id=contact_id,
                                      authorization_id=i, actor=actor, rule_ids=("AUTH-7",),
                                      detail={"scope": scope, "effective": at.isoformat()}) for i in ids]
                         or [Event(kind=AUTHORIZATION, outcome="revoke-unmatched", contact_id=contact_id,
                                   actor=actor, rule_ids=("AUTH-7",),
                                   detail={"scope": scope, "effective": at.isoformat()})])
    return ids


def authorizations_for(engine: Engine, keyring: Keyring, contact_ids: Iterable[int],
                       scope: str | None = None) -> dict[int, list[AuthorizationRecord]]:
    """All records of these contacts (optionally one scope), decrypted, grouped by contact.

    Only the rows selected are decrypted, each once: give `scope` when only one matters.
    """
    table = Authorization.__table__  # type: ignore[attr-defined]
    cols = [table.c[c] for c in RECORD_COLUMNS]
    ids = list(contact_ids)
    out: dict[int, list[AuthorizationRecord]] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 900):
            q = select(*cols).where(table.c.contact_id.in_(ids[i:i + 900]))
            if scope:
                q = q.where(table.c.scope == scope)
            for row in conn.execute(q.order_by(table.c.id)):
                out.setdefault(row.contact_id, []).append(decrypt_authorization(keyring, row))
    return out


