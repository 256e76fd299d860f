"""The per-recipient send queue: freeze, claim before sending, record after.

A row is `claimed` (with its Message-ID and unsubscribe token made durable) in one
commit before its message leaves, and `recorded` (sent/failed/skipped) with its ledger
entry in one commit after. Rows still `claimed` when their sender's lease has expired
(it died; mailer.store.leases) are `uncertain`: never resent without an operator, so
nobody gets the same message twice. Other senders' in-flight rows are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from mailer.compose import message_id
from mailer.crypto import new_token, token_hash
from mailer.db import writing
from mailer.ledger import AUDIENCE, BOUNCE, Event, Ledger
from mailer.models import Delivery, utcnow
from mailer.store import rawsql
from mailer.store.suppressions import suppress_in

PENDING, CLAIMED, SENT, FAILED, SKIPPED, UNCERTAIN = (
    "pending",
    "claimed",
    "sent",
    "failed",
    "skipped",
    "uncertain",
)
DEFERRED = "deferred"  # an attempt that will be retried: a ledger entry, no state change
FINAL = (SENT, FAILED, SKIPPED)
_T = Delivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    contact_id: int
    authorization_id: int | None
    message_id: str
    token: str  # clear only in memory; the table keeps its SHA-256
    attempts: int
    email_hash: str  # the contact's lookup hash, read with the row: the unsubscribe token is filed under it
    return_token: str = ""  # VERP token of the return path (mailer.bounces.verp); clear only in memory


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: str  # sent | failed | skipped | deferred | pending (released: never left this machine)
    event: Event | None = None
    smtp_code: int | None = None
    bounce_hash: str | None = None  # a 5xx "no such address": suppress it (BNC-1) in the same commit


def freeze_audience(
    engine: Engine,
    ledger: Ledger,
    campaign_id: int,
    run: int,
    members: Iterable[tuple[int, int | None]],
    *,
    actor: str | None = None,
    batch: int = 2000,
) -> tuple[int, str]:
    """Snapshot the audience as pending rows; its hash goes to the ledger. Streams `members`."""
    import hashlib

    digest = hashlib.sha256()
    count = 0
    with writing(engine) as conn:
        rows: list[dict[str, Any]] = []
        for contact_id, auth_id in members:
            digest.update(f"{contact_id}:{auth_id or ''}\n".encode())
            rows.append(
                {
                    "campaign_id": campaign_id,
                    "run": run,
                    "contact_id": contact_id,
                    "authorization_id": auth_id,
                    "status": PENDING,
                    "attempts": 0,
                    "rule_ids": "",
                    "updated_at": utcnow(),
                }
            )
            if len(rows) >= batch:
                conn.execute(insert(_T), rows)
                count += len(rows)
                rows = []
        if rows:
            conn.execute(insert(_T), rows)
            count += len(rows)
        h = digest.hexdigest()
        ledger.append_in(
            conn,
            [
                Event(
                    kind=AUDIENCE,
                    campaign_id=campaign_id,
                    actor=actor,
                    detail={"run": run, "recipients": count, "audience_sha256": h},
                )
            ],
        )
    return count, h


def claim_batch(
    engine: Engine,
    ledger: Ledger,
    campaign_id: int,
    run: int,
    n: int,
    *,
    domain: str,
    worker: str = "",
    statuses: Sequence[str] = (PENDING,),
) -> list[Claimed]:
    """Read up to n rows and claim them in one commit (the same claim step the Sender uses)."""
    rows = [r for r in send_page(engine, campaign_id, run, after=0, n=n, statuses=statuses) if r.contact is not None]
    # Keep an existing Message-ID on a resend so receivers can de-duplicate.
    ahead = [Claimed(r.delivery_id, r.contact_id, r.authorization_id,
                     r.message_id or message_id(campaign_id, r.delivery_id, domain), new_token(), r.attempts + 1,
                     r.contact.email_hash)
             for r in rows]
    got = commit_cycle(engine, ledger, claims=ahead, campaign_id=campaign_id, statuses=statuses, worker=worker)
    return [c for c in ahead if c.delivery_id in got]


@contextmanager
def held_writer(engine: Engine) -> Iterator[Connection]:
    """One connection for all of a run's commit cycles (`commit_cycle(conn=...)`): no pool
    checkout, and on PostgreSQL no pre-ping round trip, per cycle. Each cycle is still its
    own transaction (BEGIN IMMEDIATE on SQLite)."""
    with engine.connect() as conn:
        conn.execution_options(mailer_write=True)
        yield conn


@contextmanager
def _write(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    if conn is None:
        with writing(engine) as c:
            yield c
    else:
        with conn.begin():
            yield conn


def commit_cycle(
    engine: Engine,
    ledger: Ledger,
    *,
    outcomes: Sequence[Outcome] = (),
    claims: Sequence[Claimed] = (),
    skips: Sequence[Outcome] = (),
    campaign_id: int = 0,
    statuses: Sequence[str] = (PENDING,),
    worker: str = "",
    conn: Connection | None = None,
) -> set[int]:
    """One commit for a turn of the sender: record outcomes, record skips, claim the next rows.

    `claims` were read and composed ahead; only rows still in `statuses` are claimed
    (another worker may have taken some: FOR UPDATE SKIP LOCKED on PostgreSQL). Their
    Message-IDs and unsubscribe tokens become durable here, before any message leaves.
    `skips` are decisions on rows never claimed. Returns the ids claimed. CONN: a
    connection from `held_writer` (else one is checked out of the pool for this commit).
    """
    now = utcnow()
    events: list[Event] = []
    claimed: set[int] = set()
    with _write(engine, conn) as conn:
        if conn.dialect.name == "postgresql":
            return _cycle_pg(conn, ledger, outcomes, claims, skips, campaign_id, statuses, worker, now)
        t = rawsql.time_param(conn)(now)
        if outcomes:
            events += _record_in(conn, outcomes, now)
        if skips:
            ids = _still_in(conn, [o.delivery_id for o in skips], statuses)
            mine = [o for o in skips if o.delivery_id in ids]
            rawsql.executemany(conn, _SKIP, [(",".join(o.event.rule_ids)[:128] if o.event else "", t, o.delivery_id)
                                             for o in mine])
            events += [o.event for o in mine if o.event is not None]
        if claims:
            claim_rows = [(c.message_id, c.attempts, t, worker or None, t, c.delivery_id, *statuses) for c in claims]
            if conn.dialect.name == "sqlite":
                # BEGIN IMMEDIATE holds the only write lock: the guarded UPDATE says by its
                # count whether every row was still free, and needs no SELECT before it.
                claim_sql = _CLAIM_IF.format(statuses=rawsql.marks(len(statuses)))
                changed = rawsql.executemany(conn, claim_sql, claim_rows)
                # on a shortfall another sender took some: ours are the rows with our Message-IDs
                ours = {c.delivery_id for c in claims} if changed == len(claims) else _ours(conn, claims)
            else:  # FOR UPDATE SKIP LOCKED: rows another worker holds are left to it
                ours = set(_still_in(conn, [c.delivery_id for c in claims], statuses))
                rawsql.executemany(conn, _CLAIM, [r[:6] for r in claim_rows if r[5] in ours])
            mine_c = [c for c in claims if c.delivery_id in ours]
            rawsql.executemany(conn, _UNSUBSCRIBE_LINK, [(token_hash(c.token), c.email_hash, c.contact_id,
                                               campaign_id, t) for c in mine_c])
            verp = [(token_hash(c.return_token), c.delivery_id, campaign_id, c.contact_id, c.email_hash, t)
                    for c in mine_c if c.return_token]
            if verp:  # the return path's token, bound to the delivery, durable before the message leaves
                rawsql.executemany(conn, _RETURN_PATH_ROW, verp)
            claimed = {c.delivery_id for c in mine_c}
        if events:
            ledger.append_in(conn, events)
    return claimed


def _cycle_pg(conn: Connection, ledger: Ledger, outcomes: Sequence[Outcome], claims: Sequence[Claimed],
              skips: Sequence[Outcome], campaign_id: int, statuses: Sequence[str], worker: str,
              now: datetime) -> set[int]:
    """The same cycle on PostgreSQL in a few round trips instead of a dozen: one statement per
    kind of change, whole batches passed as arrays (`unnest`), sent in psycopg's pipeline
    mode. The claim and skip guards are the same (FOR UPDATE SKIP LOCKED on rows still in
    STATUSES, RETURNING which ones this transaction took), so is the single commit."""
    events: list[Event] = []
    bounces = _bounces(outcomes)
    if bounces:  # rare: through SQLAlchemy, before the pipeline (same transaction)
        suppress_in(conn, [{"email_hash": h, "reason": "bounce", "at": now,
                            "campaign_id": o.event.campaign_id if o.event else None} for h, o in bounces.items()])
    drv = conn.connection.driver_connection
    assert drv is not None
    sts = list(statuses)
    with drv.pipeline():
        cur = drv.cursor()
        changes = [o for o in outcomes if o.status != DEFERRED]
        if changes:
            cur.execute(_PG_RECORD, (now, [o.delivery_id for o in changes], [o.status for o in changes],
                                     [o.smtp_code for o in changes], [_rules(o) for o in changes]))
        events += [o.event for o in outcomes if o.event is not None]
        events += _bounce_events(bounces)
        skip_cur = claim_cur = None
        if skips:
            skip_cur = drv.cursor()
            skip_cur.execute(_PG_SKIP, ([o.delivery_id for o in skips], [_rules(o) for o in skips], sts, now))
        if claims:
            claim_cur = drv.cursor()
            claim_cur.execute(_PG_CLAIM, (
                [c.delivery_id for c in claims], [c.message_id for c in claims], [c.attempts for c in claims],
                [token_hash(c.token) for c in claims], [c.email_hash for c in claims],
                [c.contact_id for c in claims], [token_hash(c.return_token) if c.return_token else "" for c in claims],
                sts, now, worker or None, campaign_id))
        if skip_cur is not None:
            took = {r[0] for r in skip_cur.fetchall()}
            events += [o.event for o in skips if o.delivery_id in took and o.event is not None]
        claimed = {r[0] for r in claim_cur.fetchall()} if claim_cur is not None else set()
        if events:
            ledger.append_in(conn, events)
    return claimed


# One statement per batch on PostgreSQL (see _cycle_pg). Values are bound arrays.
_PG_RECORD = ("UPDATE delivery AS d SET status = v.status, smtp_code = v.code, rule_ids = v.rules, updated_at = %s "
              "FROM unnest(%s::integer[], %s::text[], %s::integer[], %s::text[]) AS v(id, status, code, rules) "
              "WHERE d.id = v.id AND d.status IN ('claimed', 'uncertain')")
_PG_SKIP = ("WITH v AS (SELECT * FROM unnest(%s::integer[], %s::text[]) AS v(id, rules)), "
            "lk AS (SELECT x.id FROM delivery AS x JOIN v ON x.id = v.id WHERE x.status = ANY(%s::text[]) "
            "FOR UPDATE OF x SKIP LOCKED) "
            "UPDATE delivery AS d SET status = 'skipped', rule_ids = v.rules, updated_at = %s "
            "FROM v JOIN lk ON lk.id = v.id WHERE d.id = v.id RETURNING d.id")
_PG_CLAIM = (
    "WITH p AS (SELECT %s::integer[] AS id, %s::text[] AS mid, %s::integer[] AS att, %s::text[] AS th, "
    "%s::text[] AS eh, %s::integer[] AS cid, %s::text[] AS rh, %s::text[] AS sts, %s::timestamp AS t, "
    "%s::text AS worker, %s::integer AS camp), "
    "v AS (SELECT u.* FROM p, unnest(p.id, p.mid, p.att, p.th, p.eh, p.cid, p.rh) "
    "AS u(id, mid, att, th, eh, cid, rh)), "
    "lk AS (SELECT x.id FROM delivery AS x, p WHERE x.id = ANY(p.id) AND x.status = ANY(p.sts) "
    "FOR UPDATE OF x SKIP LOCKED), "
    "up AS (UPDATE delivery AS d SET status = 'claimed', message_id = v.mid, attempts = v.att, claimed_at = p.t, "
    "worker = p.worker, updated_at = p.t FROM p, v JOIN lk ON lk.id = v.id WHERE d.id = v.id RETURNING d.id), "
    "un AS (INSERT INTO unsubscribetoken (token_hash, email_hash, contact_id, campaign_id, created_at) "
    "SELECT v.th, v.eh, v.cid, p.camp, p.t FROM p, v JOIN up ON up.id = v.id), "
    "rp AS (INSERT INTO bouncetoken (token_hash, delivery_id, campaign_id, contact_id, email_hash, created_at) "
    "SELECT v.rh, v.id, p.camp, v.cid, v.eh, p.t FROM p, v JOIN up ON up.id = v.id WHERE v.rh <> '') "
    "SELECT id FROM up")


def _rules(o: Outcome) -> str:
    return ",".join(o.event.rule_ids)[:128] if o.event else ""


def _bounces(outcomes: Sequence[Outcome]) -> dict[str, Outcome]:
    return {o.bounce_hash: o for o in outcomes if o.status == FAILED and o.bounce_hash}


def _bounce_events(bounces: dict[str, Outcome]) -> list[Event]:
    return [Event(kind=BOUNCE, outcome="bounce", campaign_id=o.event.campaign_id if o.event else None,
                  contact_id=o.event.contact_id if o.event else None, recipient_hash=h,
                  smtp_code=o.smtp_code, rule_ids=("BNC-1",), detail={"source": "smtp-reply"})
            for h, o in bounces.items()]


# The send path's statements at driver level (mailer.store.rawsql). Identifiers are
# module constants; every value is bound.
_SKIP = "UPDATE delivery SET status = 'skipped', rule_ids = ?, updated_at = ? WHERE id = ?"
_CLAIM = ("UPDATE delivery SET status = 'claimed', message_id = ?, attempts = ?, claimed_at = ?, worker = ?, "
          "updated_at = ? WHERE id = ?")
_CLAIM_IF = ("UPDATE delivery SET status = 'claimed', message_id = ?, attempts = ?, claimed_at = ?, worker = ?, "
             "updated_at = ? WHERE id = ? AND status IN ({statuses})")
_UNSUBSCRIBE_LINK = ("INSERT INTO unsubscribetoken (token_hash, email_hash, contact_id, campaign_id, created_at) "
                     "VALUES (?, ?, ?, ?, ?)")
_RETURN_PATH_ROW = ("INSERT INTO bouncetoken (token_hash, delivery_id, campaign_id, contact_id, email_hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)")
# A row another process marked `uncertain` while its message was in flight still records
# its real outcome: a row whose ledger outcome is `sent` is never left `uncertain`.
_RECORD = ("UPDATE delivery SET status = ?, smtp_code = ?, rule_ids = ?, updated_at = ? "
           "WHERE id = ? AND status IN ('claimed', 'uncertain')")


def _ours(conn: Any, claims: Sequence[Claimed]) -> set[int]:
    """Which CLAIMS this transaction claimed: claimed rows carrying our Message-IDs."""
    ours: set[int] = set()
    for i in range(0, len(claims), 400):
        part = claims[i:i + 400]
        q = f"SELECT id, message_id FROM delivery WHERE status = 'claimed' AND id IN ({rawsql.marks(len(part))})"  # noqa: S608
        mids = {c.delivery_id: c.message_id for c in part}
        ours.update(r[0] for r in rawsql.fetch(conn, q, tuple(c.delivery_id for c in part)) if mids.get(r[0]) == r[1])
    return ours


def _still_in(conn: Any, ids: Sequence[int], statuses: Sequence[str]) -> dict[int, str]:
    """Which of IDS are still in STATUSES (locked against other workers on PostgreSQL)."""
    out: dict[int, str] = {}
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    for i in range(0, len(ids), 900):
        part = list(ids[i:i + 900])
        q = f"SELECT id, status FROM delivery WHERE id IN ({rawsql.marks(len(part))}) AND status IN ({rawsql.marks(len(statuses))}){lock}"  # noqa: S608
        out.update({r[0]: r[1] for r in rawsql.fetch(conn, q, (*part, *statuses))})
    return out


def _record_in(conn: Any, outcomes: Sequence[Outcome], now: Any) -> list[Event]:
    changes = [o for o in outcomes if o.status != DEFERRED]
    t = rawsql.time_param(conn)(now)
    rawsql.executemany(conn, _RECORD, [(o.status, o.smtp_code, ",".join(o.event.rule_ids)[:128] if o.event else "", t,
                                        o.delivery_id) for o in changes])
    events = [o.event for o in outcomes if o.event is not None]
    bounces = {o.bounce_hash: o for o in changes if o.bounce_hash and o.status == FAILED}
    if bounces:
        # BNC-1: a 5xx saying the address does not exist suppresses it (idempotent)
        suppress_in(conn, [{"email_hash": h, "reason": "bounce", "at": now,
                            "campaign_id": o.event.campaign_id if o.event else None} for h, o in bounces.items()])
        events += [Event(kind=BOUNCE, outcome="bounce", campaign_id=o.event.campaign_id if o.event else None,
                         contact_id=o.event.contact_id if o.event else None, recipient_hash=h,
                         smtp_code=o.smtp_code, rule_ids=("BNC-1",), detail={"source": "smtp-reply"})
                   for h, o in bounces.items()]
    return events


@dataclass(frozen=True)
class SendRow:
    """A row to send with its contact's ciphertexts and suppression state, read in one query."""

    delivery_id: int
    contact_id: int
    authorization_id: int | None
    message_id: str | None
    attempts: int
    contact: Any  # has id, email_hash, email_enc, identity_enc, phi_enc, language; None if the contact is gone
    suppressed: bool


_SEND_PAGE = (
    "SELECT d.id, d.contact_id, d.authorization_id, d.message_id, d.attempts, c.id AS cid, c.email_hash, "
    "c.email_enc, c.identity_enc, c.phi_enc, c.language, s.email_hash AS suppressed_hash "
    "FROM delivery d LEFT JOIN contact c ON c.id = d.contact_id "
    "LEFT JOIN suppression s ON s.email_hash = c.email_hash "
    "WHERE d.campaign_id = ? AND d.run = ? AND d.id > ? AND d.status IN ({statuses}){mine} ORDER BY d.id LIMIT ?"
)


@dataclass(frozen=True)
class _ContactCols:
    id: int
    email_hash: str
    email_enc: bytes
    identity_enc: bytes
    phi_enc: bytes | None
    language: str


def send_page(engine: Engine, campaign_id: int, run: int, *, after: int, n: int,
              statuses: Sequence[str] = (PENDING,), worker: str | None = None) -> list[SendRow]:
    """The next n rows after `after` with what the send-time checks need: one query, read only.
    With WORKER, only the rows reserved for that sender (mailer.store.leases.reserve)."""
    q = _SEND_PAGE.format(statuses=rawsql.marks(len(statuses)), mine=" AND d.worker = ?" if worker else "")
    with engine.connect() as conn:
        rows = rawsql.fetch(conn, q, (campaign_id, run, after, *statuses, *((worker,) if worker else ()), n))
    return [SendRow(r[0], r[1], r[2], r[3], r[4],
                    _ContactCols(r[5], r[6], bytes(r[7]), bytes(r[8]), bytes(r[9]) if r[9] is not None else None, r[10])
                    if r[5] is not None else None, r[11] is not None)
            for r in rows]


_PAGE_WITH_STATUS = ("WITH cs AS (SELECT status FROM campaign WHERE id = ?) "  # noqa: S608 - constants only
                     f"SELECT cs.status, p.* FROM cs LEFT JOIN ({_SEND_PAGE}) AS p ON 1 = 1 ORDER BY p.id")


def send_page_with_status(engine: Engine, campaign_id: int, run: int, *, after: int, n: int,
                          statuses: Sequence[str] = (PENDING,), worker: str | None = None
                          ) -> tuple[str | None, list[SendRow]]:
    """The campaign's status and `send_page`, in one query: the sender's poll for an
    operator's pause or cancel rides on the page read instead of costing its own round trip."""
    q = _PAGE_WITH_STATUS.format(statuses=rawsql.marks(len(statuses)), mine=" AND d.worker = ?" if worker else "")
    with engine.connect() as conn:
        rows = rawsql.fetch(conn, q, (campaign_id, campaign_id, run, after, *statuses,
                                      *((worker,) if worker else ()), n))
    status = rows[0][0] if rows else None
    return status, [SendRow(r[1], r[2], r[3], r[4], r[5],
                            _ContactCols(r[6], r[7], bytes(r[8]), bytes(r[9]), bytes(r[10]) if r[10] is not None
                                         else None, r[11]) if r[6] is not None else None, r[12] is not None)
                    for r in rows if r[1] is not None]


def iter_send_pages(engine: Engine, campaign_id: int, run: int, *, statuses: Sequence[str] = (PENDING,),
                    size: int = 500) -> Iterator[list[SendRow]]:
    """Read-only pages of `send_page` rows in id order (the dry run: nothing is claimed)."""
    after = 0
    while True:
        rows = send_page(engine, campaign_id, run, after=after, n=size, statuses=statuses)
        if not rows:
            return
        yield rows
        after = rows[-1].delivery_id


def mark_uncertain(engine: Engine, ledger: Ledger, campaign_id: int, run: int) -> int:
    """Rows claimed by a sender that is gone (its lease expired, or it never had one):
    report them, never resend them silently. A live sender's rows are left alone."""
    from mailer.store.leases import sweep

    return sweep(engine, ledger, campaign_id, run)


def counts(engine: Engine, campaign_id: int, run: int | None = None) -> dict[str, int]:
    q = (
        select(_T.c.status, func.count())
        .where(_T.c.campaign_id == campaign_id)
        .group_by(_T.c.status)
    )
    if run is not None:
        q = q.where(_T.c.run == run)
    with engine.connect() as conn:
        return {status: n for status, n in conn.execute(q)}
