"""The send ledger: append-only, hash-chained and HMAC-signed entries (SEC-5, SEC-6, SEND-2).

Each entry's hash covers its fields, its sequence number and the previous entry's hash;
its MAC is an HMAC of that hash under the ledger key from the key file, so an entry
forged or re-chained without the key, changed, removed, inserted or reordered breaks
`verify`. A signed head checkpoint (the newest seq and hash), updated in the same
transaction as every append, exposes a removed tail; a signed purge anchor lets the
chain start after a lawful purge (AUTH-9, see `mailer.retention`). Appends take a lock
(SQLite BEGIN IMMEDIATE, a PostgreSQL advisory lock) so several workers still make one
chain. `verify` reads the whole chain, the head and the anchor in one snapshot.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Engine, Row, func, select

from mailer.crypto import Keyring
from mailer.db import writing
from mailer.ledger_models import HEAD, PURGED, LedgerCheckpoint
from mailer.models import LedgerEntry, utcnow
from mailer.redact import scrub
from mailer.store import rawsql

if TYPE_CHECKING:
    from mailer.ledger_anchor import Anchor

GENESIS = "0" * 64
ANCHOR_EVERY = 60.0  # seconds: `append` anchors the head outside the database at most this often
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
ACCESS = "access"  # sign-in, sign-out, failures, lockouts, tokens, account changes (issue 12)
COMPLIANCE = "compliance"  # training, assets and consents, risk assessments, complaints, reviews (issue 17)
KINDS = (SEND, SKIP, REFUSAL, APPROVAL, AUTHORIZATION, UNSUBSCRIBE, BOUNCE, KEY_ROTATION,
         CONTACT_IMPORT, DATA_EXPORT, AUDIENCE, CAMPAIGN, SYSTEM, ACCESS, COMPLIANCE)
SEND_OUTCOMES = ("sent", "deferred", "failed", "uncertain")

# Columns covered by the entry hash, in a fixed order. Never reorder; only append.
HASHED_FIELDS = (
    "seq", "at", "kind", "outcome", "campaign_id", "contact_id", "recipient_hash",
    "template_hash", "message_hash", "message_id", "relay", "tls_version", "tls_cipher",
    "smtp_code", "smtp_text", "authorization_id", "rule_ids", "actor", "detail", "key_id",
    "prev_hash",
)
_AT = HASHED_FIELDS.index("at")
_KEY_ID = HASHED_FIELDS.index("key_id")
_PREV = HASHED_FIELDS.index("prev_hash")
_N = len(HASHED_FIELDS)
# The same bytes as json.dumps(values, separators=(",", ":"), ensure_ascii=True), without
# building an encoder per call (verify hashes a million rows).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode

_DETAIL = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode  # == json.dumps(d, sort_keys=True, ...)

# Driver-level statements for the append path (mailer.store.rawsql: ~3x cheaper per row).
_COLUMNS = (*HASHED_FIELDS, "entry_hash", "mac")
# Identifiers are module constants, values are always bound: nothing from input is spliced in.
_INSERT = f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES ({rawsql.marks(len(_COLUMNS))})"  # noqa: S608
_LAST = "SELECT seq, entry_hash FROM ledger ORDER BY seq DESC LIMIT 1"
_UPSERT_CHECKPOINT = (
    "INSERT INTO ledger_checkpoint (name, seq, entry_hash, at, key_id, mac) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, entry_hash = excluded.entry_hash, at = excluded.at, "
    "key_id = excluded.key_id, mac = excluded.mac")


def _make_canonical() -> Callable[[list[Any]], str]:
    """The C encoder built once; falls back to _ENCODE if it is missing or disagrees."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return _ENCODE
    enc = make(None, None, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)

    def canonical(values: list[Any]) -> str:
        return "".join(enc(values, 0))

    probe = [1, "2026-01-01T00:00:00.000000", None, 'q"\\\u00e9\n', 250, ""]
    return canonical if canonical(probe) == _ENCODE(probe) else _ENCODE


_canonical_values = _make_canonical()


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


def _canonical(row: Mapping[str, Any]) -> bytes:
    values = []
    for name in HASHED_FIELDS:
        v = row[name]
        if isinstance(v, datetime):
            v = v.isoformat(timespec="microseconds")
        values.append(v)
    return _canonical_values(values).encode()


def entry_hash(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(row)).hexdigest()


def checkpoint_message(name: str, seq: int, entry_hash_: str, key_id: str) -> bytes:
    """What a checkpoint's MAC covers; the prefix keeps it apart from entry MACs (64 hex chars)."""
    return f"mailer-ledger-checkpoint|{name}|{seq}|{entry_hash_}|{key_id}".encode()


@dataclass(frozen=True)
class Verification:
    """The result of walking the chain. `reason` is one of: "" (intact), missing, order, link,
    content, unknown-key, signature, head, anchor, rollback (the database is older or shorter
    than the head anchored outside it), anchor-file (an anchor line not signed by the ledger key)."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""
    reason: str = ""
    last_seq: int = 0  # the newest entry (the head), 0 when empty
    last_hash: str = GENESIS
    anchor_seq: int = 0  # entries 1..anchor_seq were purged lawfully (AUTH-9)
    anchor_hash: str = GENESIS
    seconds: float = 0.0
    anchored_seq: int = 0  # the newest anchor compared against (0: no anchor file, or an empty one)
    anchored_at: str = ""
    anchor_file: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    name: str
    seq: int
    entry_hash: str
    at: datetime
    key_id: str
    mac: str


class Ledger:
    """Writes and checks the chain. The engine and keyring are handed in (no globals)."""

    def __init__(self, engine: Engine, keyring: Keyring, anchor_file: Path | None = None) -> None:
        self.engine = engine
        self.keyring = keyring
        self.anchor_file = anchor_file  # outside the database, beside the key file (mailer.ledger_anchor)
        self.appended = False  # this process wrote entries: anchor the head when the command ends
        self._anchored_seq = 0
        self._anchored_clock = 0.0
        # The signed-in principal (mailer.accounts) this process acts for: every entry it
        # appends names that account (actor) and records how it signed in (detail "by").
        self.acting: Any = None
        self._table = LedgerEntry.__table__  # type: ignore[attr-defined]
        self._ckpt = LedgerCheckpoint.__table__  # type: ignore[attr-defined]

    # -- keys ------------------------------------------------------------------------------
    def _keys(self) -> dict[str, bytes]:
        """Ledger keys by id: the current one, plus any retired ones the keyring still holds."""
        keys = dict(getattr(self.keyring, "retired_ledger_keys", None) or {})
        keys[self.keyring.ledger_key_id] = self.keyring.ledger_key
        return keys

    def checkpoint_mac(self, name: str, seq: int, hash_: str, key_id: str | None = None) -> str:
        kid = key_id or self.keyring.ledger_key_id
        key = self._keys()[kid]
        return hmac.new(key, checkpoint_message(name, seq, hash_, kid), hashlib.sha256).hexdigest()

    # -- writing ---------------------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> list[int]:
        """Append events in one transaction; returns their sequence numbers."""
        if not events:
            return []
        with writing(self.engine) as conn:
            seqs = self.append_in(conn, events)
        if self.anchor_file is not None and time.monotonic() - self._anchored_clock > ANCHOR_EVERY:
            self.anchor()
        return seqs

    def append_in(self, conn: Connection, events: Sequence[Event]) -> list[int]:
        """Append inside the caller's write transaction (`mailer.db.writing`), so a state
        change and its entry commit together."""
        if not events:
            return []
        self.appended = True
        if conn.dialect.name == "postgresql":
            # at driver level: queued with the read below in one round trip when the caller
            # runs psycopg's pipeline mode (the send path's commit cycle); the read's snapshot
            # is still taken after the lock is granted (READ COMMITTED, one per statement)
            rawsql.executemany(conn, "SELECT pg_advisory_xact_lock(?)", [(_LOCK_ID,)])
        got = rawsql.fetch(conn, _LAST)
        last: Any = got[0] if got else None
        if last is None:  # empty table: continue from a purge anchor, if there is one
            last = conn.execute(select(self._ckpt.c.seq, self._ckpt.c.entry_hash)
                                .where(self._ckpt.c.name == PURGED)).first()
        seq, prev = (last[0], last[1]) if last else (0, GENESIS)
        rows: list[tuple[Any, ...]] = []
        now = utcnow()
        kid = self.keyring.ledger_key_id
        key = self.keyring.ledger_key
        sha256, digest, canonical = hashlib.sha256, hmac.digest, _canonical_values
        stored_time = rawsql.time_param(conn)
        by = self.acting.ledger_detail() if self.acting is not None else None
        for ev in events:
            seq += 1
            actor, detail = ev.actor, ev.detail
            if by is not None:
                actor = actor or self.acting.name
                detail = {**detail, "by": by}
            at = ev.at or now
            # In HASHED_FIELDS order; `at` as the hash sees it (naive UTC, microseconds).
            values = [
                seq, at.isoformat(timespec="microseconds"), ev.kind, ev.outcome, ev.campaign_id, ev.contact_id,
                ev.recipient_hash, ev.template_hash, ev.message_hash, ev.message_id, ev.relay, ev.tls_version,
                ev.tls_cipher, ev.smtp_code, scrub(ev.smtp_text)[:512] if ev.smtp_text else None,
                ev.authorization_id, ",".join(ev.rule_ids), actor,
                _DETAIL(detail), kid, prev,
            ]
            h = sha256(canonical(values).encode()).hexdigest()
            values[_AT] = stored_time(at)
            values.append(h)
            values.append(digest(key, h.encode(), "sha256").hex())  # mac == keyring.ledger_mac(h)
            prev = h
            rows.append(tuple(values))
        rawsql.executemany(conn, _INSERT, rows)
        self._put_checkpoint(conn, HEAD, seq, prev, now)
        return [r[0] for r in rows]

    def _put_checkpoint(self, conn: Connection, name: str, seq: int, hash_: str, at: datetime) -> None:
        kid = self.keyring.ledger_key_id
        rawsql.executemany(conn, _UPSERT_CHECKPOINT, [
            (name, seq, hash_, rawsql.time_param(conn)(at), kid, self.checkpoint_mac(name, seq, hash_, kid))])

    def anchor(self, path: Path | None = None) -> Anchor | None:
        """Append the committed, signed head to the anchor file (outside the database) unless
        this process already anchored it. Returns the anchor written, or None."""
        from mailer.ledger_anchor import ANCHOR, Anchor, append_anchor

        path = path or self.anchor_file
        if path is None:
            return None
        self._anchored_clock = time.monotonic()
        head = self.checkpoints().get(HEAD)
        if head is None or not self._checkpoint_ok(head) or (path == self.anchor_file and head.seq <= self._anchored_seq):
            return None
        kid = self.keyring.ledger_key_id
        at = utcnow().isoformat(timespec="seconds") + "Z"
        a = Anchor(head.seq, head.entry_hash, at, kid, self.checkpoint_mac(ANCHOR, head.seq, head.entry_hash, kid))
        append_anchor(path, {"seq": a.seq, "hash": a.entry_hash, "at": a.at, "key_id": a.key_id, "mac": a.mac})
        if path == self.anchor_file:
            self._anchored_seq = head.seq
        return a

    # -- reading ---------------------------------------------------------------------------
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

    def checkpoints(self, conn: Connection | None = None) -> dict[str, Checkpoint]:
        if conn is None:
            with self.engine.connect() as c:
                return self.checkpoints(c)
        return {r.name: Checkpoint(**r._asdict()) for r in conn.execute(select(self._ckpt))}

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(self._table.c.seq))).scalar() or 0)

    # -- checking --------------------------------------------------------------------------
    def _checkpoint_ok(self, cp: Checkpoint) -> bool:
        keys = self._keys()
        if cp.key_id not in keys:
            return False
        return hmac.compare_digest(self.checkpoint_mac(cp.name, cp.seq, cp.entry_hash, cp.key_id), cp.mac)

    def verify(self, *, page: int = 20000, anchor_file: Path | None = None,
               progress: Callable[[int], None] | None = None) -> Verification:
        """Walk the whole chain in one snapshot; report the first entry that does not hold.
        Then compare with the newest anchor kept outside the database (ANCHOR_FILE, else the
        one beside the key file): a ledger older, shorter or other than it fails.
        `progress(entries_checked)` is called after each page (the workspace shows it)."""
        from mailer.ledger_anchor import read_anchors

        started = time.perf_counter()
        path = anchor_file or self.anchor_file
        anchors = read_anchors(path) if path is not None else []
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                v = self._verify_in(conn, page, progress)
                if v.ok and anchors:
                    v = self._against_anchors(conn, v, anchors, path)
        return replace(v, seconds=time.perf_counter() - started)

    def _against_anchors(self, conn: Connection, v: Verification, anchors: Sequence[Anchor],
                         path: Path | None) -> Verification:
        from mailer.ledger_anchor import anchor_mac_ok

        for a in anchors:
            if not anchor_mac_ok(self, a):
                return replace(v, ok=False, first_bad_seq=a.seq, reason="anchor-file", anchor_file=str(path),
                               problem=f"{path}:{a.line}: this anchor is not signed by the ledger key "
                                       "(forged, or from another installation)")
        a = max(anchors, key=lambda x: x.seq)
        v = replace(v, anchored_seq=a.seq, anchored_at=a.at, anchor_file=str(path))
        if v.last_seq < a.seq:
            what = "is empty" if v.entries == 0 and v.anchor_seq == 0 else f"ends at entry {v.last_seq}"
            return replace(v, ok=False, first_bad_seq=v.last_seq + 1, reason="rollback",
                           problem=f"the ledger {what}, but the anchor written {a.at} outside the database names "
                                   f"entry {a.seq}: entries were removed, or an older copy of the database restored")
        if a.seq > v.anchor_seq:
            got = conn.execute(select(self._table.c.entry_hash).where(self._table.c.seq == a.seq)).scalar()
        elif a.seq == v.anchor_seq:
            got = v.anchor_hash
        else:
            got = a.entry_hash  # purged lawfully before this anchor's entry (AUTH-9): nothing left to compare
        if got != a.entry_hash:
            return replace(v, ok=False, first_bad_seq=a.seq, reason="rollback",
                           problem=f"entry {a.seq} differs from the one anchored {a.at} outside the database: "
                                   "the ledger was rewritten from there on")
        return v

    def _pages(self, conn: Connection, page: int) -> Iterator[list[tuple[Any, ...]]]:
        """Pages of raw DB-API tuples (hashed fields, entry_hash, mac) in seq order, inside the
        caller's transaction: no ORM row objects or type processing on the hot path."""
        ph = "?" if conn.dialect.name == "sqlite" else "%s"
        cols = ", ".join(f'"{c}"' for c in (*HASHED_FIELDS, "entry_hash", "mac"))
        sql = f'SELECT {cols} FROM ledger WHERE seq > {ph} ORDER BY seq LIMIT {int(page)}'  # noqa: S608 - constant names
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            after = -1
            while True:
                cur.execute(sql, (after,))
                rows = cast(list[tuple[Any, ...]], cur.fetchall())
                if not rows:
                    return
                yield rows
                after = rows[-1][0]
        finally:
            cur.close()

    def _verify_in(self, conn: Connection, page: int,
                   progress: Callable[[int], None] | None = None) -> Verification:
        cps = self.checkpoints(conn)
        anchor = cps.get(PURGED)
        prev, expected = GENESIS, 1
        if anchor is not None:
            if not self._checkpoint_ok(anchor):
                return Verification(False, 0, anchor.seq + 1, f"the purge anchor (entry {anchor.seq}) is not signed "
                                    "by the ledger key: the start of the chain cannot be trusted", "anchor",
                                    anchor_seq=anchor.seq, anchor_hash=anchor.entry_hash)
            prev, expected = anchor.entry_hash, anchor.seq + 1
        base: dict[str, Any] = {"anchor_seq": expected - 1, "anchor_hash": prev}
        keys = self._keys()
        encode, sha256, digest, same = _canonical_values, hashlib.sha256, hmac.digest, hmac.compare_digest
        parse = datetime.fromisoformat
        count = 0
        for rows in self._pages(conn, page):
            for r in rows:
                count += 1
                seq = r[0]
                if seq != expected:
                    if seq < expected:
                        return Verification(False, count, seq, f"entry {seq} lies before the purge anchor "
                                            f"(entry {expected - 1}): it was inserted", "order", **base)
                    gap = f"entries {expected}..{seq - 1} are" if seq - 1 > expected else f"entry {expected} is"
                    return Verification(False, count, expected, f"{gap} missing (removed)", "missing", **base)
                v = list(r)
                stored_hash, stored_mac = v[_N], v[_N + 1]
                del v[_N:]
                if v[_PREV] != prev:
                    return Verification(False, count, seq, f"entry {seq} does not link to entry {seq - 1}: an entry "
                                        "was inserted, removed or moved here", "link", **base)
                at = v[_AT]
                try:  # SQLite hands back text, PostgreSQL a datetime: hash what SQLAlchemy would read
                    v[_AT] = (at if isinstance(at, datetime) else parse(at)).isoformat(timespec="microseconds")
                except (TypeError, ValueError):
                    return Verification(False, count, seq, f"entry {seq}: its time is not a timestamp "
                                        "(a field was changed)", "content", **base)
                h = sha256(encode(v).encode()).hexdigest()
                if h != stored_hash:
                    return Verification(False, count, seq, f"entry {seq}: its content does not match its hash "
                                        "(a field was changed)", "content", **base)
                key = keys.get(v[_KEY_ID])
                if key is None:
                    return Verification(False, count, seq, f"entry {seq} names ledger key {v[_KEY_ID]!r}, which the "
                                        "key file does not hold", "unknown-key", **base)
                if not same(digest(key, h.encode(), "sha256").hex(), stored_mac or ""):
                    return Verification(False, count, seq, f"entry {seq}: its signature does not verify under the "
                                        "ledger key (forged, re-chained or signed with another key)", "signature", **base)
                prev = h
                expected += 1
            if progress is not None:
                progress(count)
        last = expected - 1
        head = cps.get(HEAD)
        if head is None:
            if count == 0:
                return Verification(True, 0, last_seq=last, last_hash=prev, **base)
            return Verification(False, count, last + 1, "the head record is missing: entries at the end may "
                                "have been removed", "head", last_seq=last, last_hash=prev, **base)
        if not self._checkpoint_ok(head):
            return Verification(False, count, min(head.seq, last) + 1, "the head record is not signed by the "
                                "ledger key", "head", last_seq=last, last_hash=prev, **base)
        if head.seq > last:
            gap = f"entries {last + 1}..{head.seq} are" if head.seq > last + 1 else f"entry {head.seq} is"
            return Verification(False, count, last + 1, f"{gap} missing from the end (the head record names "
                                f"entry {head.seq})", "missing", last_seq=last, last_hash=prev, **base)
        if head.seq < last:
            return Verification(False, count, head.seq + 1, f"entry {head.seq + 1} was added behind the ledger's "
                                f"back (the head record names entry {head.seq})", "head",
                                last_seq=last, last_hash=prev, **base)
        if head.entry_hash != prev:
            return Verification(False, count, last, f"entry {last} differs from the one the head record names",
                                "head", last_seq=last, last_hash=prev, **base)
        return Verification(True, count, last_seq=last, last_hash=prev, **base)
