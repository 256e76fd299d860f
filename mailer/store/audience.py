"""Segment evaluation over the store, streamed in pages.

Non-PHI conditions run in SQL; clinical ones run after decryption, and only for
contacts whose authorization for the plan's scope is valid at `at` (SEG-2): the
decision core (`segments.Evaluator`) calls the decrypt closure only after that check.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from mailer.crypto import Keyring
from mailer.models import Contact
from mailer.segments import Evaluator, SegmentCounts, SegmentPlan, to_sql
from mailer.store.auth_records import authorizations_for
from mailer.store.contacts import decrypt_clinical, iter_contact_rows
from mailer.store.suppressions import suppressed_among

PAGE = 1000


def sql_columns() -> dict[str, Any]:
    t = Contact.__table__  # type: ignore[attr-defined]
    return {"language": t.c.language, "newsletter_opt_in": t.c.newsletter_opt_in, "created_at": t.c.created_at}


def members(engine: Engine, keyring: Keyring, plan: SegmentPlan, at: datetime, *,
            page: int = PAGE, evaluator: Evaluator | None = None) -> Iterator[tuple[int, int | None]]:
    """Yield (contact_id, authorization_id) of every matching contact; counts land on the evaluator."""
    ev = evaluator or Evaluator(plan, at)
    where = [to_sql(plan.sql_filter, sql_columns(), at=at)] if plan.sql_filter is not None else []
    buffer: list[Any] = []
    for row in iter_contact_rows(engine, where=where, batch=page):
        buffer.append(row)
        if len(buffer) >= page:
            yield from _decide_page(engine, keyring, plan, ev, buffer)
            buffer = []
    if buffer:
        yield from _decide_page(engine, keyring, plan, ev, buffer)


def _decide_page(engine: Engine, keyring: Keyring, plan: SegmentPlan, ev: Evaluator,
                 rows: list[Any]) -> Iterator[tuple[int, int | None]]:
    suppressed = suppressed_among(engine, (r.email_hash for r in rows))
    auths = authorizations_for(engine, (r.id for r in rows)) if plan.requires_authorization else {}
    for row in rows:
        values = {"language": row.language, "newsletter_opt_in": row.newsletter_opt_in, "created_at": row.created_at}
        decision = ev.decide(values, auths.get(row.id, []), row.email_hash in suppressed,
                             lambda row=row: decrypt_clinical(keyring, row))
        if decision.included:
            yield row.id, decision.authorization_id


def evaluate(engine: Engine, keyring: Keyring, plan: SegmentPlan, at: datetime) -> SegmentCounts:
    """Counts only, for `mailer segment check` (streams; nothing kept but numbers)."""
    ev = Evaluator(plan, at)
    for _ in members(engine, keyring, plan, at, evaluator=ev):
        pass
    return ev.counts
