"""Complaints and privacy concerns (CMP-1): intake, status, resolution, quarterly counts.

The patient is linked by the contact's lookup hash (an HMAC, never the address); what the
person said and the resolution are AES-GCM ciphertext bound to the complaint id. Listings
and reports show ids, dates, channels, categories and statuses only.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from mailer.accounts.permissions import Action, Principal
from mailer.compliance.common import acting, iso, record_event, retained_until
from mailer.compliance.models import Complaint
from mailer.crypto import key_id_of
from mailer.db import writing
from mailer.errors import InputError, StateError
from mailer.models import Contact, utcnow
from mailer.runtime import Runtime

RULE = "CMP-1"
CHANNELS = ("phone", "email", "mail", "in-person", "web", "social")
CATEGORIES = ("privacy", "unwanted-marketing", "unsubscribe", "security", "content", "other")
STATUSES = ("open", "investigating", "resolved")
_T = Complaint.__table__  # type: ignore[attr-defined]
_CT = Contact.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ComplaintInfo:
    id: int
    received_at: dt.datetime
    channel: str
    contact_hash: str | None
    campaign_id: int | None
    category: str
    status: str
    resolved_at: dt.datetime | None
    recorded_by: str

    def as_dict(self, at: dt.datetime | None = None) -> dict[str, Any]:
        at = at or utcnow()
        return {"id": self.id, "received": iso(self.received_at), "channel": self.channel,
                "contact_hash": self.contact_hash, "campaign": self.campaign_id, "category": self.category,
                "status": self.status, "resolved": iso(self.resolved_at), "recorded_by": self.recorded_by,
                "age_days": ((self.resolved_at or at) - self.received_at).days,
                "retained_until": iso(retained_until(self.received_at, self.resolved_at))}


def _info(r: Any) -> ComplaintInfo:
    return ComplaintInfo(r.id, r.received_at, r.channel, r.contact_hash, r.campaign_id, r.category, r.status,
                         r.resolved_at, r.recorded_by)


def _aad(cid: int, part: str) -> bytes:
    return f"complaint:{cid}:{part}".encode()


def contact_hash(rt: Runtime, *, contact_id: int | None = None, email: str | None = None) -> str | None:
    """The contact's lookup hash, from its id or its address (the address is never stored)."""
    if contact_id is not None:
        with rt.engine.connect() as conn:
            h = conn.execute(select(_CT.c.email_hash).where(_CT.c.id == contact_id)).scalar()
        if h is None:
            raise InputError(f"--contact {contact_id}: no such contact")
        return str(h)
    if email:
        from mailer.contacts import normalize_email

        return rt.keyring.lookup_hash(normalize_email(email))
    return None


def record(rt: Runtime, by: Principal | None, *, received: dt.datetime, channel: str, category: str, text: str,
           contact_id: int | None = None, email: str | None = None, campaign_id: int | None = None) -> ComplaintInfo:
    by = acting(by, Action.COMPLAINTS_RECORD)
    if channel not in CHANNELS:
        raise InputError(f"--channel {channel!r}", hint=f"one of {', '.join(CHANNELS)}")
    if category not in CATEGORIES:
        raise InputError(f"--category {category!r}", hint=f"one of {', '.join(CATEGORIES)}")
    if not text.strip():
        raise InputError("--text is empty", hint="what the person reported (stored encrypted)")
    now = utcnow()
    if received > now:
        raise InputError("--received is in the future")
    h = contact_hash(rt, contact_id=contact_id, email=email)
    with writing(rt.engine) as conn:
        cid = conn.execute(_T.insert().values(
            received_at=received, channel=channel, contact_hash=h, campaign_id=campaign_id, category=category,
            text_enc=b"", key_id="", status="open", recorded_by=by.name, created_at=now,
            updated_at=now)).inserted_primary_key[0]  # type: ignore[index]
        blob = rt.keyring.encrypt(text.strip().encode(), _aad(cid, "text"))
        conn.execute(update(_T).where(_T.c.id == cid).values(text_enc=blob, key_id=key_id_of(blob)))
        record_event(rt, conn, by, "complaint-added", rules=(RULE,), campaign_id=campaign_id, detail={
            "complaint_id": cid, "channel": channel, "category": category, "contact_hash": h})
        row = conn.execute(select(_T).where(_T.c.id == cid)).one()
    return _info(row)


def set_status(rt: Runtime, by: Principal | None, complaint_id: int, status: str, *, resolution: str = "",
               at: dt.datetime | None = None) -> ComplaintInfo:
    """Move a complaint along (open -> investigating -> resolved); resolving needs the resolution."""
    by = acting(by, Action.COMPLAINTS_RESOLVE)
    at = at or utcnow()
    if status not in STATUSES:
        raise InputError(f"status {status!r}", hint=f"one of {', '.join(STATUSES)}")
    if status == "resolved" and not resolution.strip():
        raise InputError("--resolution is required to resolve a complaint", hint="what was done (stored encrypted)")
    with writing(rt.engine) as conn:
        row = conn.execute(select(_T).where(_T.c.id == complaint_id)).first()
        if row is None:
            raise InputError(f"no complaint {complaint_id}", hint="see mailer complaints list")
        if row.status == "resolved":
            raise StateError(f"complaint {complaint_id} is resolved already")
        values: dict[str, Any] = {"status": status, "updated_at": at}
        if status == "resolved":
            values.update(resolved_at=at, resolution_enc=rt.keyring.encrypt(resolution.strip().encode(),
                                                                            _aad(complaint_id, "resolution")))
        conn.execute(update(_T).where(_T.c.id == complaint_id).values(**values))
        outcome = "complaint-closed" if status == "resolved" else "complaint-status"  # ledger outcomes: <= 16 chars
        record_event(rt, conn, by, outcome, rules=(RULE,), campaign_id=row.campaign_id,
                     detail={"complaint_id": complaint_id, "from": row.status, "to": status})
        row = conn.execute(select(_T).where(_T.c.id == complaint_id)).one()
    return _info(row)


def list_complaints(rt: Runtime, by: Principal | None, *, open_only: bool = False) -> list[ComplaintInfo]:
    by = acting(by, Action.COMPLIANCE_READ)
    q = select(_T).order_by(_T.c.id)
    if open_only:
        q = q.where(_T.c.status != "resolved")
    with rt.engine.connect() as conn:
        found = [_info(r) for r in conn.execute(q)]
    with writing(rt.engine) as conn:
        record_event(rt, conn, by, "complaints-read", detail={"count": len(found)})
    return found


def show(rt: Runtime, by: Principal | None, complaint_id: int) -> dict[str, Any]:
    """One complaint with its decrypted text and resolution, for the reviewer (viewing is recorded)."""
    by = acting(by, Action.COMPLAINTS_RESOLVE)
    with writing(rt.engine) as conn:
        row = conn.execute(select(_T).where(_T.c.id == complaint_id)).first()
        if row is None:
            raise InputError(f"no complaint {complaint_id}")
        record_event(rt, conn, by, "complaint-viewed", detail={"complaint_id": complaint_id})
    d = _info(row).as_dict()
    d["text"] = rt.keyring.decrypt(row.text_enc, _aad(complaint_id, "text")).decode()
    d["resolution"] = (rt.keyring.decrypt(row.resolution_enc, _aad(complaint_id, "resolution")).decode()
                       if row.resolution_enc else None)
    return d


def quarter_summary(rt: Runtime, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Counts for the quarter (received in it) and every item still open at its end."""
    with rt.engine.connect() as conn:
        got = [_info(r) for r in conn.execute(select(_T).where(_T.c.received_at >= start, _T.c.received_at < end))]
        still = [_info(r) for r in conn.execute(select(_T).where(_T.c.received_at < end).order_by(_T.c.id))
                 if r.resolved_at is None or r.resolved_at >= end]
    return {"received": len(got), "by_category": dict(sorted(Counter(c.category for c in got).items())),
            "by_channel": dict(sorted(Counter(c.channel for c in got).items())),
            "resolved_in_quarter": sum(1 for c in got if c.resolved_at is not None and c.resolved_at < end),
            "open_at_end": [{"id": c.id, "category": c.category, "received": iso(c.received_at),
                             "status": c.status, "campaign": c.campaign_id,
                             "age_days": (min(end, utcnow()) - c.received_at).days} for c in still]}
