"""Campaign records and their lifecycle.

States: draft -> submitted -> approved -> scheduled -> sending -> done, or paused /
cancelled. Gates that must pass before sending (approval bound to hashes, lint, BAA,
...) live in `preflight`; sending itself lives in `sending`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select, update

from mailer.db import writing
from mailer.errors import InputError
from mailer.ledger import CAMPAIGN, Event
from mailer.models import Campaign, utcnow
from mailer.runtime import Runtime
from mailer.segments import (
    segment_hash,
)
from mailer.templates import PURPOSES, content_hash

STATES = ("draft", "submitted", "approved", "scheduled", "sending", "paused", "done", "cancelled")
_T = Campaign.__table__  # type: ignore[attr-defined]


def create(rt: Runtime, *, name: str, purpose: str, template: Path, segment: Path, author: str,
           third_party: str | None = None) -> Campaign:
    if purpose not in PURPOSES:
        raise InputError(f"purpose {purpose!r} is unknown", hint=f"one of {', '.join(PURPOSES)}")
    if not (template / "template.toml").exists():
        raise InputError(f"{template} is not a template folder", hint="a folder with template.toml and body.html.j2")
    if not segment.is_file():
        raise InputError(f"segment file {segment} not found")
    now = utcnow()
    with writing(rt.engine) as conn:
        cid = conn.execute(_T.insert().values(
            name=name, purpose=purpose, template=str(template), segment=str(segment),
            template_hash=content_hash(template), segment_hash=segment_hash(segment.read_bytes()),
            third_party=third_party, status="draft", status_reason="", author=author, run=0,
            audience_hash="", created_at=now, updated_at=now)).inserted_primary_key[0]
        rt.ledger.append_in(conn, [Event(kind=CAMPAIGN, outcome="created", campaign_id=cid, actor=author,
                                         detail={"purpose": purpose})])
    return get(rt, cid)


def get(rt: Runtime, campaign_id: int) -> Campaign:
    with rt.engine.connect() as conn:
        row = conn.execute(select(_T).where(_T.c.id == campaign_id)).first()
    if row is None:
        raise InputError(f"campaign {campaign_id} does not exist", hint="see `mailer campaign status`")
    return Campaign(**row._asdict())


def set_status(rt: Runtime, campaign_id: int, status: str, reason: str = "", *, actor: str | None = None,
               rules: Sequence[str] = ()) -> None:
    assert status in STATES
    with writing(rt.engine) as conn:
        conn.execute(update(_T).where(_T.c.id == campaign_id).values(status=status, status_reason=reason[:500],
                                                                      updated_at=utcnow()))
        rt.ledger.append_in(conn, [Event(kind=CAMPAIGN, outcome=status, campaign_id=campaign_id, actor=actor,
                                         rule_ids=tuple(rules), detail={"reason": reason[:200]} if reason else {})])


