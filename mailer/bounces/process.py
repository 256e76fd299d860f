"""Apply bounces and complaints: one transaction per batch, idempotent, nothing lost.

Every message ends in exactly one place: an event (hard, soft, complaint) with its
ledger entry and, where the rules say so, a suppression (BNC-1: hard at once, soft after
`soft_limit` within `soft_window_days`; STD-7/SPAM-5: complaints at once); or kept aside
in `bounceheld` (review: auto-replies, unparseable; rejected: forged, malformed,
oversized), its body encrypted, with a ledger entry saying why. A message seen again
changes nothing (the event key is the delivery and class; a held message is keyed by
its SHA-256). Callers acknowledge a message (move it, reply 250) only after `process`
returned, so a crash mid-batch leaves every message where it was, to be processed again.

After the commit, a campaign whose complaint rate reached the threshold has its
recurring runs paused (STD-7), and the pause says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailer.bounces.decide import APPLY, REJECT, Decision, Target, decide
from mailer.bounces.models import BounceEvent, BounceHeld
from mailer.bounces.parse import COMPLAINT, HARD, SOFT, Report, classify
from mailer.config import BounceSettings
from mailer.contacts import normalize_email
from mailer.crypto import token_hash
from mailer.db import writing
from mailer.ledger import BOUNCE, Event
from mailer.models import Campaign, Contact, Delivery, utcnow
from mailer.runtime import Runtime
from mailer.store import rawsql

_E = BounceEvent.__table__  # type: ignore[attr-defined]
_H = BounceHeld.__table__  # type: ignore[attr-defined]
_D = Delivery.__table__  # type: ignore[attr-defined]
_K = Contact.__table__  # type: ignore[attr-defined]
_C = Campaign.__table__  # type: ignore[attr-defined]

APPLIED, DUPLICATE, HELD_REVIEW, HELD_REJECTED = "applied", "duplicate", "review", "rejected"


@dataclass(frozen=True)
class Incoming:
    raw: bytes
    source: str  # smtp | maildir | imap
    envelope_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    disposition: str  # applied | duplicate | review | rejected
    klass: str = ""
    reason: str = ""
    campaign_id: int | None = None
    delivery_id: int | None = None
    suppressed: bool = False
    repeat: bool = False  # seen before: nothing changed

    @property
    def folder(self) -> str:
        """Where a mailbox source files the message: processed, review or rejected."""
        return self.disposition if self.disposition in (HELD_REVIEW, HELD_REJECTED) else "processed"


@dataclass
class Totals:
    """Counts for a run of batches; what the CLI prints (no PHI)."""

    by_disposition: dict[str, int] = field(default_factory=dict)
    by_class: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    paused: list[tuple[int, str]] = field(default_factory=list)

    def add(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            key = DUPLICATE if o.repeat else o.disposition
            self.by_disposition[key] = self.by_disposition.get(key, 0) + 1
            if o.disposition == APPLIED:
                self.by_class[o.klass] = self.by_class.get(o.klass, 0) + 1
            if o.disposition in (HELD_REVIEW, HELD_REJECTED) and not o.repeat:
                self.reasons[o.reason] = self.reasons.get(o.reason, 0) + 1
            self.suppressed += 1 if o.suppressed else 0

    @property
    def total(self) -> int:
        return sum(self.by_disposition.values())


# Driver-level statements (mailer.store.rawsql): SQLite >= 3.35 and PostgreSQL both take them.
_EVENT = ("INSERT INTO bounceevent (event_key, delivery_id, campaign_id, contact_id, email_hash, klass, status, "
          "source, suppressed, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING RETURNING id")
_SOFT_COUNT = ("SELECT count(*) FROM bounceevent WHERE email_hash = ? AND klass = 'soft' AND at >= ? "
               "AND event_key <> ?")
_SUPPRESS = ("INSERT INTO suppression (email_hash, reason, campaign_id, at) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (email_hash) DO NOTHING RETURNING id")


class Processor:
    def __init__(self, rt: Runtime, *, settings: BounceSettings | None = None, actor: str = "bounces",
                 clock: Any = utcnow) -> None:
        self.rt = rt
        self.settings = settings or rt.settings.bounces
        self.actor = actor
        self.clock = clock

    # -- reading what the reports name -----------------------------------------------------
    def _targets(self, conn: Connection, reports: Sequence[Report]) -> tuple[dict[str, Target], dict[int, Target]]:
        hashes = list({token_hash(t) for r in reports if r.actionable for t in r.tokens})
        by_token: dict[str, Target] = {}
        for i in range(0, len(hashes), 500):
            part = hashes[i:i + 500]
            q = ("SELECT token_hash, delivery_id, campaign_id, contact_id, email_hash FROM bouncetoken "  # noqa: S608
                 f"WHERE token_hash IN ({rawsql.marks(len(part))})")
            for row in rawsql.fetch(conn, q, tuple(part)):
                by_token[row[0]] = Target(row[1], row[2], row[3], row[4])
        ids = list({d for r in reports if r.actionable for _c, d, _m in r.message_ids})
        by_delivery: dict[int, Target] = {}
        for i in range(0, len(ids), 500):
            q2 = (select(_D.c.id, _D.c.campaign_id, _D.c.contact_id, _D.c.message_id, _K.c.email_hash)
                  .select_from(_D.outerjoin(_K, _K.c.id == _D.c.contact_id)).where(_D.c.id.in_(ids[i:i + 500])))
            for r in conn.execute(q2):
                if r.message_id and r.email_hash:
                    by_delivery[r.id] = Target(r.id, r.campaign_id, r.contact_id, r.email_hash, r.message_id)
        return by_token, by_delivery

    def _recipient_is(self, report: Report, email_hash: str) -> bool:
        """Whether a reported recipient has EMAIL_HASH. The lower-cased address is tried first
        (what email-validator makes of a plain ASCII address), the validator only after."""
        lookup = self.rt.keyring.lookup_hash
        if any(lookup(a.strip().lower()) == email_hash for a in report.recipients):
            return True
        for addr in report.recipients:
            try:
                if lookup(normalize_email(addr)) == email_hash:
                    return True
            except Exception:  # noqa: BLE001, S112 - an unparseable address matches nothing
                continue
        return False

    def _domain_matches(self, conn: Connection, report: Report, target: Target) -> bool:
        from mailer.store.contacts import decrypt_identity

        domains = {a.rpartition("@")[2].strip().lower() for a in report.recipients if "@" in a}
        if not domains or target.contact_id is None:
            return False
        row = conn.execute(select(_K.c.id, _K.c.email_hash, _K.c.email_enc, _K.c.identity_enc, _K.c.language)
                           .where(_K.c.id == target.contact_id)).first()
        if row is None:
            return False
        view = decrypt_identity(self.rt.keyring, SimpleNamespace(**row._asdict(), phi_enc=None))
        return view.email.rpartition("@")[2].lower() in domains

    # -- the batch ---------------------------------------------------------------------------
    def process(self, items: Sequence[Incoming]) -> list[Outcome]:
        """Classify, decide and apply ITEMS in one commit; the outcomes in ITEMS' order."""
        s = self.settings
        reports = [classify(it.raw, local_part=s.local_part, domain=s.domain, envelope_to=it.envelope_to,
                            max_bytes=s.max_message_bytes) for it in items]
        now = self.clock()
        outcomes: list[Outcome] = []
        events: list[Event] = []
        complained: set[int] = set()
        with writing(self.rt.engine) as conn:
            by_token, by_delivery = self._targets(conn, reports)
            for it, report in zip(items, reports, strict=True):
                d = decide(report, by_token=by_token, by_delivery=by_delivery, token_hash=token_hash,
                           recipient_hashes=self._recipient_is,
                           recipient_domain_matches=lambda r, t: self._domain_matches(conn, r, t))
                if d.action == APPLY:
                    o = self._apply(conn, it, report, d, now, events)
                    if o.disposition == APPLIED and o.klass == COMPLAINT and o.campaign_id is not None:
                        complained.add(o.campaign_id)
                else:
                    o = self._hold(conn, it, report, d, now, events)
                outcomes.append(o)
            if events:
                self.rt.ledger.append_in(conn, events)
        for cid in sorted(complained):
            self._check_complaint_rate(cid)
        return outcomes

    def _apply(self, conn: Connection, it: Incoming, report: Report, d: Decision, now: datetime,
               events: list[Event]) -> Outcome:
        t = d.target
        assert t is not None
        at = rawsql.time_param(conn)(now)
        suppress = d.klass in (HARD, COMPLAINT)
        rules: tuple[str, ...] = ("BNC-1",) if d.klass != COMPLAINT else ("STD-7", "SPAM-5")
        if d.klass == SOFT:  # this one and those before it within the window (a repeat is not counted twice)
            since = rawsql.time_param(conn)(now - timedelta(days=self.settings.soft_window_days))
            before = rawsql.fetch(conn, _SOFT_COUNT, (t.email_hash, since, d.event_key))[0][0]
            suppress = before + 1 >= self.settings.soft_limit
        # RETURNING says whether the row is new (a repeat inserts nothing)
        new = rawsql.fetch(conn, _EVENT, (d.event_key, t.delivery_id, t.campaign_id, t.contact_id, t.email_hash,
                                          d.klass, d.status[:16], it.source, suppress, at))
        if not new:
            return Outcome(DUPLICATE, d.klass, "already processed", t.campaign_id, t.delivery_id, repeat=True)
        if suppress:  # idempotent: an address already suppressed stays as it is
            rawsql.fetch(conn, _SUPPRESS, (t.email_hash, "complaint" if d.klass == COMPLAINT else "bounce",
                                           t.campaign_id, at))
        events.append(Event(kind=BOUNCE, outcome=d.klass, campaign_id=t.campaign_id, contact_id=t.contact_id,
                            recipient_hash=t.email_hash, rule_ids=rules, actor=self.actor,
                            detail={"delivery": t.delivery_id, "status": d.status[:16], "source": it.source,
                                    "parser": report.parser, "suppressed": suppress}))
        return Outcome(APPLIED, d.klass, "", t.campaign_id, t.delivery_id, suppress)

    def _hold(self, conn: Connection, it: Incoming, report: Report, d: Decision, now: datetime,
              events: list[Event]) -> Outcome:
        disposition = HELD_REJECTED if d.action == REJECT else HELD_REVIEW
        digest = hashlib.sha256(it.raw).hexdigest()
        keep = len(it.raw) <= self.settings.max_message_bytes
        body = self.rt.keyring.encrypt(it.raw, b"bounceheld:" + digest.encode()) if keep else None
        row = {"sha256": digest, "disposition": disposition, "reason": d.reason[:64], "source": it.source,
               "size": len(it.raw), "body_enc": body, "key_id": self.rt.keyring.active_key_id if keep else "",
               "at": now}
        ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(_H)
        new = conn.execute(ins.on_conflict_do_nothing(index_elements=["sha256"]).returning(_H.c.id), row).first()
        if new is None:
            return Outcome(disposition, d.klass or report.kind, d.reason, repeat=True)
        events.append(Event(kind=BOUNCE, outcome=disposition, actor=self.actor,
                            rule_ids=("BNC-2",),
                            detail={"reason": d.reason[:64], "class": report.kind, "source": it.source,
                                    "size": len(it.raw), "sha256": digest}))
        return Outcome(disposition, d.klass or report.kind, d.reason)

    # -- STD-7 --------------------------------------------------------------------------------
    def _check_complaint_rate(self, campaign_id: int) -> None:
        from mailer.bounces.rates import campaign_rates

        rates = campaign_rates(self.rt.engine, campaign_id)
        threshold = self.settings.complaint_rate_threshold
        if rates.sent <= 0 or rates.complaint_rate < threshold:
            return
        with self.rt.engine.connect() as conn:
            c = conn.execute(select(_C.c.status, _C.c.schedule_cron).where(_C.c.id == campaign_id)).first()
        if c is None or not c.schedule_cron or c.status not in ("approved", "scheduled", "sending"):
            return
        from mailer import campaigns, scheduler
        from mailer.errors import StateError

        reason = (f"complaint rate {rates.complaint_rate:.2%} ({rates.complaints} of {rates.sent} sent) reached "
                  f"{threshold:.2%}: recurring runs paused (STD-7); review the list and content, then resume")
        try:
            campaigns.transition(self.rt, campaign_id, "pause", actor=self.actor, reason=reason, rules=("STD-7",))
        except StateError:
            return
        scheduler.remove_job(self.rt, campaign_id)
