"""Segment evaluation over the store, streamed in keyset pages.

Non-PHI conditions run in SQL; clinical ones run after decryption, and only for
contacts whose authorization for the plan's scope is valid at `at` (SEG-2): the
decision core (`segments.Evaluator`) calls the decrypt closure only after that check.

Per page of contacts (`id > last id`, the plan's SQL filter, `ORDER BY id LIMIT page`):

1. one query for the contacts, with only the columns the decision needs (no address,
   no identity or clinical ciphertext) and the suppression looked up by a LEFT JOIN;
2. one query for the authorizations of exactly those contacts (a join on the same id
   range and SQL filter, so no bind-parameter list whatever the page size), only when
   the plan relies on authorizations. A record's text elements are ciphertext (SEC-4):
   each record of a contact that is not suppressed is decrypted once, right before its
   contact is decided (`auth_records.decrypt_authorization`); no other record is;
3. when a contact passes the authorization check and its clinical rules must be tested,
   one query fetches the clinical ciphertext of the page's contacts that hold any
   authorization record: contacts without any never have it read, let alone decrypted.

Nothing outlives a page but the counts on the Evaluator and the last id seen, so memory
does not grow with the number of contacts. Each page reads in its own short transaction
(no long read transaction holding back SQLite's WAL checkpoints or PostgreSQL vacuum).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, Select, bindparam, select
from sqlalchemy.sql.elements import ColumnElement

from mailer.crypto import Keyring
from mailer.errors import StoreError
from mailer.models import Authorization, Contact, Suppression
from mailer.segments import NON_PHI_FIELDS, Evaluator, SegmentCounts, SegmentPlan, to_sql
from mailer.store.auth_records import RECORD_COLUMNS, AuthorizationRecord, decrypt_authorization
from mailer.store.contacts import decrypt_clinical

__all__ = ["PAGE", "evaluate", "members", "sql_columns"]

PAGE = 1000
_IN_CHUNK = 900  # bind parameters per IN list: below SQLite's historical 999 limit

_C = Contact.__table__  # type: ignore[attr-defined]
_A = Authorization.__table__  # type: ignore[attr-defined]
_S = Suppression.__table__  # type: ignore[attr-defined]

#: The columns a decrypted record is built from: what `authorizations.is_valid` reads
#: (AuthorizationLike), the contact to group by, and the document hash the ciphertext's
#: associated data names. Not the update time or key id it never looks at.
_AUTH_COLUMNS = tuple(_A.c[name] for name in RECORD_COLUMNS)


_NON_PHI_NAMES = tuple(NON_PHI_FIELDS)
_PHI_BY_ID = select(_C.c.id, _C.c.phi_enc).where(_C.c.id.in_(bindparam("ids", expanding=True)))


def sql_columns() -> dict[str, Any]:
    """Segment field -> contact column, for the non-PHI fields only (`to_sql` refuses others)."""
    return {name: _C.c[name] for name in NON_PHI_FIELDS}


class _ClinicalCiphertexts:
    """The clinical ciphertext of one page, read on the first decryption the Evaluator asks
    for, for the page's contacts holding at least one authorization record (a superset of
    the authorized ones); other contacts' ciphertext is never read."""

    def __init__(self, conn: Connection, ids: Sequence[int]) -> None:
        self._conn = conn
        self._ids = ids
        self._blobs: dict[int, bytes | None] | None = None

    def get(self, contact_id: int) -> bytes | None:
        if self._blobs is None:
            self._blobs = {}
            for i in range(0, len(self._ids), _IN_CHUNK):
                chunk = self._ids[i : i + _IN_CHUNK]
                self._blobs.update(self._conn.execute(_PHI_BY_ID, {"ids": chunk}).tuples().all())
        if contact_id not in self._blobs:  # deleted between two reads of the page
            raise StoreError(f"contact {contact_id} changed during the evaluation", hint="run it again")
        return self._blobs[contact_id]


class _PhiRow:
    """What `store.contacts.decrypt_clinical` reads: the ciphertext and its AAD's hash."""

    __slots__ = ("email_hash", "id", "phi_enc")

    def __init__(self, contact_id: int, email_hash: str, phi_enc: bytes | None) -> None:
        self.id = contact_id
        self.email_hash = email_hash
        self.phi_enc = phi_enc


def members(
    engine: Engine,
    keyring: Keyring,
    plan: SegmentPlan,
    at: datetime,
    *,
    page: int = PAGE,
    evaluator: Evaluator | None = None,
) -> Iterator[tuple[int, int | None]]:
    """Yield (contact_id, authorization_id) of every matching contact, in id order; the
    counts land on the evaluator. A refused plan (SEG-1, SEG-5) yields nobody and reads
    no contact."""
    if page < 1:
        raise ValueError("page must be at least 1")
    ev = evaluator or Evaluator(plan, at)
    if plan.refusals:
        return
    # Statements are built once and re-executed with new bounds: building SQLAlchemy
    # constructs per page leaves cyclic garbage that only the collector frees, so the
    # peak would creep up with the number of pages.
    where = to_sql(plan.sql_filter, sql_columns(), at=at) if plan.sql_filter is not None else None
    contacts_q = _contacts_query(where, page)
    auths_q = _authorizations_query(where) if plan.requires_authorization else None
    after = 0
    while True:
        # One short read transaction per page: contacts, their authorizations and (lazily)
        # ciphertexts come from one snapshot on SQLite; the page is decided before the
        # connection goes back, so a slow consumer never holds a read transaction open.
        with engine.connect() as conn:
            rows = conn.execute(contacts_q, {"after": after}).all()
            if not rows:
                return
            last = rows[-1].id
            auths: dict[int, list[Any]] = {}
            if auths_q is not None:
                for rec in conn.execute(auths_q, {"after": after, "last": last}):
                    auths.setdefault(rec.contact_id, []).append(rec)
            included = _decide_page(keyring, ev, rows, auths, _ClinicalCiphertexts(conn, list(auths)))
        yield from included
        if len(rows) < page:
            return
        after = last


def _contacts_query(where: ColumnElement[bool] | None, page: int) -> Select[Any]:
    """A page of contacts after `:after`: only what the decision needs (no address, no
    identity or clinical ciphertext), suppression by a LEFT JOIN."""
    q = (
        select(
            _C.c.id,
            _C.c.email_hash,
            *(_C.c[name] for name in _NON_PHI_NAMES),
            _S.c.id.is_not(None).label("suppressed"),
        )
        .select_from(_C.outerjoin(_S, _S.c.email_hash == _C.c.email_hash))
        .where(_C.c.id > bindparam("after"))
        .order_by(_C.c.id)
        .limit(page)
    )
    return q if where is None else q.where(where)


def _authorizations_query(where: ColumnElement[bool] | None) -> Select[Any]:
    """Every record of the page's contacts (`:after` < contact_id <= `:last`), all scopes:
    `best_validity` compares scopes after normalising case and spaces, and reports "scope"
    from another scope's record, so filtering on the scope in SQL would change decisions.
    The id range and the contacts' SQL filter select exactly the page, with no bind list."""
    q = select(*_AUTH_COLUMNS).where(_A.c.contact_id > bindparam("after"), _A.c.contact_id <= bindparam("last"))
    return q if where is None else q.join(_C, _C.c.id == _A.c.contact_id).where(where)


def _decide_page(
    keyring: Keyring,
    ev: Evaluator,
    rows: Sequence[Any],
    auths: Mapping[int, list[Any]],
    blobs: _ClinicalCiphertexts,
) -> list[tuple[int, int | None]]:
    def clinical(contact_id: int, email_hash: str) -> Mapping[str, Any]:
        return decrypt_clinical(keyring, _PhiRow(contact_id, email_hash, blobs.get(contact_id)))

    included: list[tuple[int, int | None]] = []
    for row in rows:  # (id, email_hash, *NON_PHI_FIELDS, suppressed): by position, the hot loop
        contact_id = row[0]
        values = dict(zip(_NON_PHI_NAMES, row[2:-1], strict=True))
        suppressed = bool(row[-1])
        stored = auths.get(contact_id, ())
        # A suppressed contact is decided before any authorization is read: none decrypted.
        records: Sequence[AuthorizationRecord] = (
            () if suppressed or not stored else [decrypt_authorization(keyring, r) for r in stored]
        )
        decision = ev.decide(values, records, suppressed, partial(clinical, contact_id, row[1]))
        if decision.included:
            included.append((contact_id, decision.authorization_id))
    return included


def evaluate(engine: Engine, keyring: Keyring, plan: SegmentPlan, at: datetime, *, page: int = PAGE) -> SegmentCounts:
    """Counts only, for `mailer segment check` (streams; nothing kept but numbers)."""
    ev = Evaluator(plan, at)
    for _ in members(engine, keyring, plan, at, page=page, evaluator=ev):
        pass
    return ev.counts
