"""Suppressions (unsubscribe, bounce, complaint) keyed by the address's lookup HMAC."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailer.db import writing
from mailer.ledger import UNSUBSCRIBE, Event, Ledger
from mailer.models import Suppression, utcnow

_T = Suppression.__table__  # type: ignore[attr-defined]


def suppressed_among(engine: Engine, email_hashes: Iterable[str]) -> set[str]:
    hashes = list(email_hashes)
    out: set[str] = set()
    with engine.connect() as conn:
        for i in range(0, len(hashes), 900):
            out.update(r[0] for r in conn.execute(select(_T.c.email_hash).where(_T.c.email_hash.in_(hashes[i:i + 900]))))
    return out


def suppress_in(conn: Any, rows: Sequence[dict[str, Any]]) -> int:
    """Insert suppressions inside the caller's transaction; existing ones are kept (idempotent).
    Rows: email_hash, reason, campaign_id, at. Returns how many were new (as the driver counts)."""
    ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(_T)
    res = conn.execute(ins.on_conflict_do_nothing(index_elements=["email_hash"]), list(rows))
    return max(int(res.rowcount or 0), 0)


def suppress(engine: Engine, ledger: Ledger, email_hash: str, reason: str, *, contact_id: int | None = None,
             campaign_id: int | None = None, actor: str | None = None, kind: str = UNSUBSCRIBE,
             rule_ids: tuple[str, ...] = ("SPAM-5",)) -> bool:
    """Idempotent; returns True when this call added the suppression. Always a ledger entry."""
    with writing(engine) as conn:
        added = suppress_in(conn, [{"email_hash": email_hash, "reason": reason, "campaign_id": campaign_id,
                                    "at": utcnow()}]) > 0
        ledger.append_in(conn, [Event(kind=kind, outcome=reason, contact_id=contact_id, campaign_id=campaign_id,
                                      recipient_hash=email_hash, actor=actor, rule_ids=rule_ids,
                                      detail={"new": added})])
    return added


def export(engine: Engine, ledger: Ledger, *, purpose: str, actor: str | None = None) -> list[str]:
    """Opted-out addresses are never sold or transferred (SPAM-7, MKT-7), except for compliance.

    Even then only lookup hashes leave, never addresses; every attempt is a ledger entry.
    """
    from mailer.errors import ComplianceRefusal
    from mailer.ledger import DATA_EXPORT, REFUSAL
    from mailer.refusal import Refusal

    if purpose != "compliance":
        refusals = [Refusal("SPAM-7", "suppressed addresses are never sold or transferred",
                            "export only for compliance (purpose 'compliance'), as hashes"),
                    Refusal("MKT-7", "disclosing a patient list for any remuneration is a sale of PHI",
                            "do not disclose the list")]
        ledger.append([Event(kind=REFUSAL, outcome="export-refused", actor=actor, rule_ids=("SPAM-7", "MKT-7"),
                             detail={"what": "suppressions", "purpose": purpose[:64]})])
        raise ComplianceRefusal(refusals)
    with engine.connect() as conn:
        hashes = [r[0] for r in conn.execute(select(_T.c.email_hash).order_by(_T.c.id))]
    ledger.append([Event(kind=DATA_EXPORT, outcome="suppressions", actor=actor, rule_ids=("SPAM-7",),
                         detail={"purpose": "compliance", "rows": len(hashes)})])
    return hashes
