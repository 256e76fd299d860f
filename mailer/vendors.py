"""Business associates and their BAAs (BAA-1, BAA-2): the registry and the relay check.

A relay, ESP or analytics vendor that touches PHI needs a BAA in force: signed, not past
its expiry, not marked expired. The configured SMTP relay host must map to such a vendor,
unless the relay is declared operated by the covered entity itself
(`smtp.operated_by_covered_entity = true`). Rules §8 item 19.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select, update

from mailer.db import writing
from mailer.errors import InputError
from mailer.ledger import SYSTEM, Event, Ledger
from mailer.models import Vendor, utcnow
from mailer.refusal import Refusal

_T = Vendor.__table__  # type: ignore[attr-defined]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BAAStatus:
    in_force: bool
    reason: str  # no PHI: vendor names and dates only


def baa_status(v: Vendor, at: datetime, /) -> BAAStatus:
    """Pure: is this vendor's BAA in force at `at` (naive UTC)?"""
    if v.baa_signed_at is None:
        return BAAStatus(False, f"vendor {v.name}: no signed BAA on file")
    if v.baa_signed_at > at:
        return BAAStatus(False, f"vendor {v.name}: BAA signed {v.baa_signed_at:%Y-%m-%d}, not yet in force")
    if v.expired_at is not None and v.expired_at <= at:
        return BAAStatus(False, f"vendor {v.name}: BAA marked expired on {v.expired_at:%Y-%m-%d}")
    if v.baa_expires_at is not None and v.baa_expires_at <= at:
        return BAAStatus(False, f"vendor {v.name}: BAA expired on {v.baa_expires_at:%Y-%m-%d}")
    return BAAStatus(True, f"vendor {v.name}: BAA in force since {v.baa_signed_at:%Y-%m-%d}"
                     + (f" until {v.baa_expires_at:%Y-%m-%d}" if v.baa_expires_at else ""))


def relay_refusals(vendors: list[Vendor], *, host: str, operated_by_covered_entity: bool,
                   at: datetime) -> list[Refusal]:
    """Pure: BAA-1 for the configured relay; empty when it passes."""
    if operated_by_covered_entity:
        return []
    mine = [v for v in vendors if v.host.lower() == host.lower()]
    if not mine:
        return [Refusal("BAA-1", f"relay {host} maps to no vendor in the registry",
                        f"record its BAA: mailer vendors add NAME --host {host} --baa-signed DATE "
                        "--document FILE, or set smtp.operated_by_covered_entity = true if the relay is yours")]
    if any(v.operated_by_covered_entity and v.expired_at is None for v in mine):
        return []  # the covered entity's own relay is not a business associate
    statuses = [baa_status(v, at) for v in mine]
    if any(s.in_force for s in statuses):
        return []
    return [Refusal("BAA-1", f"relay {host}: no BAA in force ({'; '.join(s.reason for s in statuses)})",
                    "record a signed, current BAA with mailer vendors add, or use another relay")]


def _get_all(engine: Engine) -> list[Vendor]:
    with engine.connect() as conn:
        return [Vendor(**r._asdict()) for r in conn.execute(select(_T).order_by(_T.c.id))]


def list_vendors(engine: Engine) -> list[Vendor]:
    return _get_all(engine)


def for_host(engine: Engine, host: str) -> list[Vendor]:
    with engine.connect() as conn:
        rows = conn.execute(select(_T).where(func.lower(_T.c.host) == host.lower()).order_by(_T.c.id))
        return [Vendor(**r._asdict()) for r in rows]


def add(engine: Engine, ledger: Ledger, *, name: str, host: str, baa_signed_at: datetime | None,
        baa_expires_at: datetime | None = None, document_sha256: str = "",
        operated_by_covered_entity: bool = False, actor: str | None = None) -> Vendor:
    """Record a vendor and its BAA; the signed document is kept elsewhere, its SHA-256 here."""
    name, host = name.strip(), host.strip().lower()
    if not name or not host:
        raise InputError("a vendor needs a name and the host it operates", hint="--host smtp.relay.example")
    if document_sha256 and not _SHA256.match(document_sha256):
        raise InputError("document hash must be 64 lowercase hex digits (SHA-256)", hint="or pass --document FILE")
    if baa_signed_at and not document_sha256:
        raise InputError("a signed BAA needs its document hash (BAA-2 evidence)", rules=("BAA-2",),
                         hint="--document FILE or --document-sha256 HEX")
    if baa_signed_at and baa_expires_at and baa_expires_at <= baa_signed_at:
        raise InputError("the BAA expiry is not after its signature date")
    with writing(engine) as conn:
        if conn.execute(select(_T.c.id).where(_T.c.name == name)).first() is not None:
            raise InputError(f"vendor {name!r} already exists", hint="expire it first, or choose another name")
        vid = conn.execute(_T.insert().values(
            name=name, host=host, operated_by_covered_entity=operated_by_covered_entity,
            baa_signed_at=baa_signed_at, baa_expires_at=baa_expires_at, document_sha256=document_sha256,
            expired_at=None, created_at=utcnow())).inserted_primary_key[0]  # type: ignore[index]
        ledger.append_in(conn, [Event(kind=SYSTEM, outcome="vendor-added", actor=actor, rule_ids=("BAA-1",),
                                      detail={"vendor_id": vid, "vendor": name, "host": host,
                                              "baa_signed": baa_signed_at.isoformat() if baa_signed_at else None,
                                              "baa_expires": baa_expires_at.isoformat() if baa_expires_at else None,
                                              "document_sha256": document_sha256})])
        row = conn.execute(select(_T).where(_T.c.id == vid)).one()
    return Vendor(**row._asdict())


def expire(engine: Engine, ledger: Ledger, name: str, *, at: datetime | None = None,
           actor: str | None = None) -> Vendor:
    """Mark a vendor's BAA as no longer in force (terminated or lapsed)."""
    at = at or utcnow()
    with writing(engine) as conn:
        row = conn.execute(select(_T).where(_T.c.name == name)).first()
        if row is None:
            raise InputError(f"vendor {name!r} does not exist", hint="see mailer vendors list")
        conn.execute(update(_T).where(_T.c.id == row.id).values(expired_at=at))
        ledger.append_in(conn, [Event(kind=SYSTEM, outcome="vendor-expired", actor=actor, rule_ids=("BAA-1",),
                                      detail={"vendor_id": row.id, "vendor": name, "at": at.isoformat()})])
        row = conn.execute(select(_T).where(_T.c.id == row.id)).one()
    return Vendor(**row._asdict())
