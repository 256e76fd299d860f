"""Delivery rows against their ledger outcomes (SEC-5, SEND-2).

The chain proves the ledger was not changed; it says nothing about the `delivery` table
beside it. A row flipped from `sent` to `failed` would be picked up by `retry-failed` and
mail a patient twice. Every row is checked against the ledger: a recipient the ledger
records as sent must have a `sent` row (unless a later bounce explains it), and a `sent`
row must have its ledger entry. One campaign at a time, so memory stays bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, select

from mailer.ledger import BOUNCE, SEND, Ledger
from mailer.models import Delivery, LedgerEntry

_D = Delivery.__table__  # type: ignore[attr-defined]
_L = LedgerEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Mismatch:
    campaign_id: int
    run: int
    delivery_id: int
    contact_id: int
    row_status: str
    ledger_outcome: str  # "sent", or "none" (no ledger entry records this row as sent)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run_of(detail: str | None) -> int:
    try:
        return int(json.loads(detail or "{}").get("run", 0))
    except (ValueError, TypeError, AttributeError):
        return -1


def ledger_sent(engine: Engine, campaign_id: int) -> tuple[set[tuple[int, int]], set[int]]:
    """(run, contact) pairs the ledger records as sent for CAMPAIGN_ID, and contacts with a bounce."""
    sent: set[tuple[int, int]] = set()
    bounced: set[int] = set()
    with engine.connect() as conn:
        q = select(_L.c.kind, _L.c.outcome, _L.c.contact_id, _L.c.detail).where(
            _L.c.campaign_id == campaign_id, _L.c.kind.in_((SEND, BOUNCE)))
        for kind, outcome, contact_id, detail in conn.execute(q):
            if kind == SEND and outcome == "sent" and contact_id is not None:
                sent.add((_run_of(detail), contact_id))
            elif kind == BOUNCE and contact_id is not None:
                bounced.add(contact_id)
    return sent, bounced


def sent_per_ledger(engine: Engine, campaign_id: int, run: int, delivery_ids: Iterable[int]) -> list[int]:
    """Which of DELIVERY_IDS the ledger records as sent (`retry-failed`/`resend` refuse them)."""
    ids = list(delivery_ids)
    if not ids:
        return []
    sent, _ = ledger_sent(engine, campaign_id)
    out: list[int] = []
    with engine.connect() as conn:
        for i in range(0, len(ids), 900):
            part = ids[i:i + 900]
            for did, contact_id in conn.execute(select(_D.c.id, _D.c.contact_id).where(_D.c.id.in_(part))):
                if (run, contact_id) in sent:
                    out.append(did)
    return sorted(out)


def _deliveries(engine: Engine, campaign_id: int, batch: int = 5000) -> Iterator[Any]:
    after = 0
    while True:
        with engine.connect() as conn:
            page = conn.execute(select(_D.c.id, _D.c.run, _D.c.contact_id, _D.c.status, _D.c.updated_at)
                                .where(_D.c.campaign_id == campaign_id, _D.c.id > after)
                                .order_by(_D.c.id).limit(batch)).all()
        if not page:
            return
        yield from page
        after = page[-1].id


def cross_check(engine: Engine, ledger: Ledger) -> list[Mismatch]:
    """Every delivery row whose state disagrees with the ledger."""
    with engine.connect() as conn:
        campaigns = [r[0] for r in conn.execute(select(_D.c.campaign_id).distinct().order_by(_D.c.campaign_id))]
        oldest = conn.execute(select(_L.c.at).order_by(_L.c.seq).limit(1)).scalar()
    purged = ledger.checkpoints().get("purged") is not None
    out: list[Mismatch] = []
    for cid in campaigns:
        sent, bounced = ledger_sent(engine, cid)
        for r in _deliveries(engine, cid):
            in_ledger = (r.run, r.contact_id) in sent
            if in_ledger and r.status != "sent" and r.contact_id not in bounced:
                out.append(Mismatch(cid, r.run, r.id, r.contact_id, r.status, "sent"))
            elif r.status == "sent" and not in_ledger:
                if purged and (oldest is None or r.updated_at < oldest):
                    continue  # its entry was purged lawfully (AUTH-9)
                out.append(Mismatch(cid, r.run, r.id, r.contact_id, r.status, "none"))
    return out
