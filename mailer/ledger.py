"""The send ledger: append-only, hash-chained and HMAC-signed entries (SEC-5, SEC-6, SEND-2).

Each entry's hash covers its fields and the previous entry's hash; its MAC is an HMAC of
that hash under the ledger key from the key file, so an entry forged without the key,
changed, removed, inserted or reordered breaks `verify`. Appends take a lock (SQLite
BEGIN IMMEDIATE, a PostgreSQL advisory lock) so several workers still make one chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, select, text

from mailer.crypto import Keyring
from mailer.db import writing
from mailer.models import LedgerEntry, utcnow

GENESIS = "0" * 64
_LOCK_ID = 0x6D61696C  # "mail": the advisory lock that serialises appends on PostgreSQL

# Entry kinds (a closed vocabulary, like django-anymail's statuses)
SEND = "send"  # outcome: sent | deferred | failed | uncertain
SKIP = "skip"
REFUSAL = "refusal"
APPROVAL = "approval"
AUTHORIZATION = "authorization"
UNSUBSCRIBE = "unsubscribe"
BOUNCE = "bounce"
KEY_ROTATION = "key-rotation"
CONTACT_IMPORT = "contact-import"
DATA_EXPORT = "data-export"
AUDIENCE = "audience"
CAMPAIGN = "campaign"
SYSTEM = "system"

# Columns covered by the entry hash, in a fixed order. Never reorder; only append.
HASHED_FIELDS = (
    "seq", "at", "kind", "outcome", "campaign_id", "contact_id", "recipient_hash",
    "template_hash", "message_hash", "message_id", "relay", "tls_version", "tls_cipher",
    "smtp_code", "smtp_text", "authorization_id", "rule_ids", "actor", "detail", "key_id",
    "prev_hash",
)


@dataclass
class Event:
    """One thing that happened. Holds ids and hashes only: no address, body or clinical value."""

    kind: str
    outcome: str | None = None
    campaign_id: int | None = None
    contact_id: int | None = None
    recipient_hash: str | None = None
    template_hash: str | None = None
    message_hash: str | None = None
    message_id: str | None = None
    relay: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    smtp_code: int | None = None
    smtp_text: str | None = None
    authorization_id: int | None = None
    rule_ids: Sequence[str] = ()
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None


def _canonical(row: dict[str, Any]) -> bytes:
    values = []
    for name in HASHED_FIELDS:
        v = row[name]
        if isinstance(v, datetime):
            v = v.isoformat(timespec="microseconds")
        values.append(v)
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(row)).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""


class Ledger:
    """Writes and checks the chain. The engine and keyring are handed in (no globals)."""

    def __init__(self, engine: Engine, keyring: Keyring) -> None:
        self.engine = engine
        self.keyring = keyring
        self._table = LedgerEntry.__table__  # type: ignore[attr-defined]

    def append(self, events: Sequence[Event]) -> list[int]:
        """Append events in one transaction; returns their sequence numbers."""
        if not events:
            return []
        with writing(self.engine) as conn:
            return self.append_in(conn, events)

    def append_in(self, conn: Any, events: Sequence[Event]) -> list[int]:
        """Append inside the caller's transaction (so a state change and its entry commit together)."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
        last = conn.execute(
            select(self._table.c.seq, self._table.c.entry_hash).order_by(self._table.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (last[0], last[1]) if last else (0, GENESIS)
        rows = []
        now = utcnow()
        kid = self.keyring.ledger_key_id
        for ev in events:
            seq += 1
            row = {
                "seq": seq,
                "at": ev.at or now,
                "kind": ev.kind,
                "outcome": ev.outcome,
                "campaign_id": ev.campaign_id,
                "contact_id": ev.contact_id,
                "recipient_hash": ev.recipient_hash,
                "template_hash": ev.template_hash,
                "message_hash": ev.message_hash,
                "message_id": ev.message_id,
                "relay": ev.relay,
                "tls_version": ev.tls_version,
                "tls_cipher": ev.tls_cipher,
                "smtp_code": ev.smtp_code,
                "smtp_text": (ev.smtp_text or None) and ev.smtp_text[:512],
                "authorization_id": ev.authorization_id,
                "rule_ids": ",".join(ev.rule_ids),
                "actor": ev.actor,
                "detail": json.dumps(ev.detail, sort_keys=True, separators=(",", ":")),
                "key_id": kid,
                "prev_hash": prev,
            }
            h = entry_hash(row)
            row["entry_hash"] = h
            row["mac"] = self.keyring.ledger_mac(h.encode())
            prev = h
            rows.append(row)
        conn.execute(insert(self._table), rows)
        return [r["seq"] for r in rows]

    def rows(self, *, batch: int = 5000, where: Iterable[Any] = ()) -> Iterator[Row[Any]]:
        """Stream entries in sequence order, a page at a time (never all in memory)."""
        t = self._table
        after = 0
        conds = list(where)
        while True:
            with self.engine.connect() as conn:
                page = conn.execute(
                    select(t).where(t.c.seq > after, *conds).order_by(t.c.seq).limit(batch)
                ).all()
            if not page:
                return
            yield from page
            after = page[-1].seq

    def verify(self) -> Verification:
        """Walk the whole chain; report the first entry that does not hold."""
        prev = GENESIS
        expected_seq = 1
        count = 0
        key = self.keyring.ledger_key
        for r in self.rows():
            row = r._asdict()
            count += 1
            if row["seq"] != expected_seq:
                kind = "missing" if row["seq"] > expected_seq else "out of order"
                return Verification(False, count, expected_seq, f"entry {expected_seq} is {kind}")
            if row["prev_hash"] != prev:
                return Verification(False, count, row["seq"], "does not link to the previous entry (removed, inserted or reordered)")
            h = entry_hash(row)
            if h != row["entry_hash"]:
                return Verification(False, count, row["seq"], "content does not match its hash (a field was changed)")
            mac = hmac.new(key, h.encode(), hashlib.sha256).hexdigest()
            if row["key_id"] != self.keyring.ledger_key_id or not hmac.compare_digest(mac, row["mac"]):
                return Verification(False, count, row["seq"], "signature does not verify under the ledger key")
            prev = h
            expected_seq += 1
        return Verification(True, count)
