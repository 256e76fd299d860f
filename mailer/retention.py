"""Ledger retention (AUTH-9; 45 CFR 164.530(j)(2), 164.508(b)(6)): six years, then a purge
that keeps the chain verifiable.

A purge removes a *prefix* of the chain (entries 1..N, all older than the cutoff) and
leaves a signed anchor holding N and entry N's hash; `Ledger.verify` starts from it, so
the remaining entries still prove they were not altered, and a forged anchor fails
without the ledger key. A purge is refused (RetentionRefusal, exit 3) when its cutoff
is less than six years ago, when an entry it would remove names an authorization whose
retention (six years from creation or last effective date, whichever is later) has not
ended, or when the chain does not verify (a purge must not destroy evidence of tampering).
The purge itself is a ledger entry. Only the ledger is purged here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, distinct, func, select, text

from mailer.db import writing
from mailer.errors import LedgerIntegrityError, RetentionRefusal
from mailer.ledger import AUTHORIZATION, SYSTEM, Event, Ledger
from mailer.ledger_models import PURGED
from mailer.models import Authorization, LedgerEntry, utcnow
from mailer.refusal import Refusal

RETENTION_YEARS = 6
_T = LedgerEntry.__table__  # type: ignore[attr-defined]
_A = Authorization.__table__  # type: ignore[attr-defined]

# The append-only triggers of migration 0001, re-created after the purge's DELETE.
_SQLITE_DELETE_TRIGGER = ("CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger "
                          "BEGIN SELECT RAISE(ABORT, 'ledger is append-only (SEC-5)'); END")
_PG_TRIGGER = ("CREATE TRIGGER ledger_no_update_delete BEFORE UPDATE OR DELETE ON ledger "
               "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()")


def add_years(when: datetime, years: int) -> datetime:
    """Same month and day `years` later (or earlier); 29 February becomes the 28th."""
    try:
        return when.replace(year=when.year + years)
    except ValueError:
        return when.replace(year=when.year + years, day=28)


def latest_cutoff(now: datetime) -> datetime:
    """The latest `--before` allowed at `now`: entries older than this are past retention."""
    return add_years(now, -RETENTION_YEARS)


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class PurgePlan:
    before: datetime
    first_seq: int  # the first entry the purge removes
    through_seq: int  # the last one (0 when nothing would be removed)
    entries: int
    authorizations: int  # distinct authorizations named by the removed entries (all past retention)

    def as_dict(self) -> dict[str, Any]:
        return {"before": self.before.isoformat(), "first_seq": self.first_seq, "through_seq": self.through_seq,
                "entries": self.entries, "authorizations": self.authorizations}


def _authorization_keep_until(conn: Connection, ids: list[int], now: datetime) -> dict[int, datetime]:
    """AUTH-9 per authorization: six years after creation or its last effective date, whichever
    is later. Still in effect (not revoked, not expired) means its retention has not started."""
    keep: dict[int, datetime] = {}
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        for r in conn.execute(select(_A.c.id, _A.c.created_at, _A.c.signed_at, _A.c.expires_at,
                                     _A.c.expiration_event_occurred_at, _A.c.revoked_at).where(_A.c.id.in_(chunk))):
            ends = [d for d in (r.revoked_at, r.expires_at, r.expiration_event_occurred_at) if d is not None]
            last_effective = min(ends) if ends else now  # in effect today: keep at least six more years
            start = max(d for d in (r.created_at, r.signed_at, last_effective) if d is not None)
            keep[r.id] = add_years(start, RETENTION_YEARS)
        missing = set(chunk) - set(keep)
        if missing:  # the record is gone: go by the newest ledger entry about it
            for aid, last_at in conn.execute(select(_T.c.authorization_id, func.max(_T.c.at))
                                             .where(_T.c.kind == AUTHORIZATION, _T.c.authorization_id.in_(missing))
                                             .group_by(_T.c.authorization_id)):
                keep[aid] = add_years(last_at, RETENTION_YEARS)
    return keep


def plan_purge(ledger: Ledger, before: datetime, *, now: datetime | None = None) -> PurgePlan:
    """What a purge before `before` would remove; raises RetentionRefusal when it may not."""
    now = now or utcnow()
    cutoff = latest_cutoff(now)
    if before > cutoff:
        raise RetentionRefusal([Refusal(
            "AUTH-9",
            f"a purge of ledger entries before {_day(before)} would remove entries younger than "
            f"{RETENTION_YEARS} years (164.530(j)(2))",
            f"the latest date allowed today is {_day(cutoff)}; a purge before {_day(before)} is allowed "
            f"from {_day(add_years(before, RETENTION_YEARS))}",
        )])
    with ledger.engine.connect() as conn:
        anchor = ledger.checkpoints(conn).get(PURGED)
        first = (anchor.seq + 1) if anchor else 1
        first_young = conn.execute(select(func.min(_T.c.seq)).where(_T.c.at >= before)).scalar()
        through = (first_young - 1) if first_young is not None else int(
            conn.execute(select(func.max(_T.c.seq))).scalar() or 0)
        if through < first:
            return PurgePlan(before, first, 0, 0, 0)
        in_range = (_T.c.seq >= first, _T.c.seq <= through)
        ids = [r[0] for r in conn.execute(select(distinct(_T.c.authorization_id))
                                          .where(*in_range, _T.c.authorization_id.is_not(None)))]
        keep = _authorization_keep_until(conn, ids, now)
    young = sorted(aid for aid, until in keep.items() if until > now)
    if young:
        until = max(keep[a] for a in young)
        raise RetentionRefusal([Refusal(
            "AUTH-9",
            f"entries {first}..{through} name {len(young)} authorization(s) still inside their retention "
            "period (six years from creation or last effective date, whichever is later; 164.508(b)(6))",
            f"a purge that removes them is allowed from {_day(until)}",
            count=len(young), ids=tuple(young[:50]),
        )])
    return PurgePlan(before, first, through, through - first + 1, len(ids))


def purge(ledger: Ledger, before: datetime, *, actor: str | None = None, now: datetime | None = None,
          dry_run: bool = False) -> PurgePlan:
    """Remove entries 1..N older than `before` (past retention), leave a signed anchor, and
    record the purge, all in one transaction."""
    now = now or utcnow()
    plan = plan_purge(ledger, before, now=now)
    if dry_run or plan.entries == 0:
        return plan
    v = ledger.verify()
    if not v.ok:
        raise LedgerIntegrityError(
            f"the ledger does not verify (entry {v.first_bad_seq}: {v.reason}); a purge would remove evidence",
            rules=("SEC-6",), hint="investigate with `mailer ledger verify` first")
    with writing(ledger.engine) as conn:
        pg = conn.dialect.name == "postgresql"
        if pg:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x6D61696C})
        row = conn.execute(select(_T.c.entry_hash).where(_T.c.seq == plan.through_seq)).first()
        if row is None:
            raise LedgerIntegrityError(f"entry {plan.through_seq} disappeared while purging")
        # The append-only trigger is lifted for this one DELETE, inside this transaction only.
        if pg:
            conn.execute(text("DROP TRIGGER IF EXISTS ledger_no_update_delete ON ledger"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS ledger_no_delete"))
        removed = conn.execute(_T.delete().where(_T.c.seq >= plan.first_seq, _T.c.seq <= plan.through_seq)).rowcount
        conn.execute(text(_PG_TRIGGER if pg else _SQLITE_DELETE_TRIGGER))
        ledger._put_checkpoint(conn, PURGED, plan.through_seq, row[0], now)
        ledger.append_in(conn, [Event(kind=SYSTEM, outcome="purge", actor=actor, rule_ids=("AUTH-9",), detail={
            **plan.as_dict(), "removed": removed, "anchor_hash": row[0]})])
    return plan
