"""Campaign records and their lifecycle.

States: draft -> submitted -> approved -> scheduled -> sending -> done, or paused /
cancelled. Gates that must pass before sending (approval bound to hashes, lint, BAA,
...) live in `preflight`; approvals in `approvals`; sending itself lives in `sending`.

    draft --submit--> submitted --approve--> approved --schedule--> scheduled --(fires)--> sending --> done
      ^                 |   ^                  |  (send now) ------------------------------^   |
      +----reject-------+   +---invalidate-----+-- (template or segment changed: SEC-6) <------+
    pause: approved/scheduled/sending -> paused;  resume: paused -> scheduled (or approved)
    cancel: any state but done/cancelled -> cancelled
    recurring (cron) campaigns go back from sending/done to scheduled after each run.

Every transition checks the current state inside its write transaction and is a ledger
entry; an invalid one raises StateError (exit 2) naming the states that allow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from mailer.db import writing
from mailer.errors import InputError, StateError
from mailer.ledger import CAMPAIGN, Event
from mailer.models import Campaign, utcnow
from mailer.runtime import Runtime
from mailer.segments import (
    segment_hash,
)
from mailer.templates import PURPOSES, content_hash

STATES = ("draft", "submitted", "approved", "scheduled", "sending", "paused", "done", "cancelled")
#: states in which a valid approval exists (preflight still checks it against the hashes)
APPROVED_STATES = ("approved", "scheduled", "sending", "paused", "done")
# action -> (states it may start from, state it leads to; None = decided by the caller)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "submit": (("draft", "submitted"), "submitted"),
    "approve": (("submitted",), "approved"),
    "reject": (("submitted",), "draft"),
    "schedule": (("approved", "scheduled"), "scheduled"),
    "pause": (("approved", "scheduled", "sending"), "paused"),
    "resume": (("paused",), None),
    "cancel": (("draft", "submitted", "approved", "scheduled", "sending", "paused"), "cancelled"),
    "invalidate": (("approved", "scheduled", "sending", "paused", "done"), "submitted"),
    "next-run": (("sending", "done", "scheduled"), "scheduled"),
}
_T = Campaign.__table__  # type: ignore[attr-defined]
#: status_reason prefix of a pause a run made itself (Ctrl-C, relay unreachable, login
#: refused): sending the campaign again continues it; an operator's pause needs `resume`.
RUN_STOPPED = "run stopped: "


def stopped_by_run(campaign: Campaign) -> bool:
    return campaign.status == "paused" and (campaign.status_reason or "").startswith(RUN_STOPPED)


def display_status(status: str, reason: str, counts: dict[str, int]) -> str:
    """The state people read: a run with failed rows is `done with failures`, and a
    campaign with uncertain rows is never shown as `done`."""
    if status == "done" and counts.get("uncertain"):
        return f"incomplete: {counts['uncertain']} uncertain (see `mailer campaign resend --help`)"
    if status == "done" and counts.get("failed"):
        return f"done with failures ({counts['failed']} failed)"
    return status + (f" ({reason})" if reason and status != "done" else "")


def create(rt: Runtime, *, name: str, purpose: str, template: Path, segment: Path, author: str,
           third_party: str | None = None) -> Campaign:
    """A draft bound to the template and segment content, stored in the database (paths are
    recorded absolute, for `submit` to read a new version from any folder)."""
    from mailer import snapshots

    if purpose not in PURPOSES:
        raise InputError(f"purpose {purpose!r} is unknown", hint=f"one of {', '.join(PURPOSES)}")
    if not (template / "template.toml").exists():
        raise InputError(f"{template} is not a template folder", hint="a folder with template.toml and body.html.j2")
    if not segment.is_file():
        raise InputError(f"segment file {segment} not found")
    template, segment = template.resolve(), segment.resolve()
    content = snapshots.read_content(template, segment)
    now = utcnow()
    with writing(rt.engine) as conn:
        cid = conn.execute(_T.insert().values(
            name=name, purpose=purpose, template=str(template), segment=str(segment),
            template_hash=content.template_hash, segment_hash=content.segment_hash,
            third_party=third_party, status="draft", status_reason="", author=author, run=0,
            audience_hash="", created_at=now, updated_at=now)).inserted_primary_key[0]  # type: ignore[index]
        snapshots.store_in(conn, cid, content)
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




def transition(rt: Runtime, campaign_id: int, action: str, *, actor: str | None = None, reason: str = "",
               rules: Sequence[str] = (), values: dict[str, Any] | None = None, to: str | None = None,
               detail: dict[str, Any] | None = None) -> Campaign:
    """Move a campaign along the lifecycle, checking the current state in the same transaction."""
    with writing(rt.engine) as conn:
        transition_in(rt, conn, campaign_id, action, actor=actor, reason=reason, rules=rules, values=values,
                      to=to, detail=detail)
    return get(rt, campaign_id)


def transition_in(rt: Runtime, conn: Any, campaign_id: int, action: str, *, actor: str | None = None,
                  reason: str = "", rules: Sequence[str] = (), values: dict[str, Any] | None = None,
                  to: str | None = None, detail: dict[str, Any] | None = None) -> str:
    """`transition` inside the caller's write transaction; returns the state it left."""
    allowed, target = TRANSITIONS[action]
    target = to or target
    assert target in STATES
    q = select(_T.c.status).where(_T.c.id == campaign_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise InputError(f"campaign {campaign_id} does not exist", hint="see `mailer campaign status`")
    if row.status not in allowed:
        raise StateError(f"campaign {campaign_id} is {row.status}; {action} needs it to be "
                         f"{' or '.join(allowed)}", hint=_HINTS.get(row.status, ""))
    conn.execute(update(_T).where(_T.c.id == campaign_id).values(
        status=target, status_reason=reason[:500], updated_at=utcnow(), **(values or {})))
    d = {"from": row.status, "action": action, **(detail or {})}
    if reason:
        d["reason"] = reason[:200]
    rt.ledger.append_in(conn, [Event(kind=CAMPAIGN, outcome=target, campaign_id=campaign_id, actor=actor,
                                     rule_ids=tuple(rules), detail=d)])
    return str(row.status)


_HINTS = {
    "draft": "submit it first: mailer campaign submit ID",
    "submitted": "an account with the reviewer role, other than the author's, approves it: mailer campaign approve ID",
    "paused": "resume it: mailer campaign resume ID",
    "done": "create a new campaign",
    "cancelled": "create a new campaign",
}


def submit(rt: Runtime, campaign_id: int, *, actor: str) -> Campaign:
    """Hand a draft to review, bound to the template and segment as they are now on disk.

    The content is read once and stored (see `snapshots`); review, approval and sending
    use that copy. Unreadable files are an input error (exit 2) naming the path. The author
    needs current training (TRN-1) and every asset the template names needs its consent (TST-5)."""
    from mailer import snapshots
    from mailer.compliance import training
    from mailer.segments import load_segment
    from mailer.templates import compile_template

    c = get(rt, campaign_id)
    training.check(rt, {"author": actor}, campaign_id=campaign_id, gate="submission")  # TRN-1
    content = snapshots.read_content(Path(c.template), Path(c.segment))
    tdir, seg = snapshots.materialize(content)
    compile_template(tdir)  # fails early (TemplateError) rather than at review
    _asset_gate(rt, campaign_id, tdir, actor)  # TST-5: consent for every asset it names
    load_segment(seg, rt.settings.fields)
    th, sh = content.template_hash, content.segment_hash
    detail: dict[str, Any] = {"template_hash": th, "segment_hash": sh}
    if (th, sh) != (c.template_hash, c.segment_hash):
        detail["previous"] = {"template_hash": c.template_hash, "segment_hash": c.segment_hash}
    with writing(rt.engine) as conn:
        snapshots.store_in(conn, campaign_id, content)
        transition_in(rt, conn, campaign_id, "submit", actor=actor, values={"template_hash": th, "segment_hash": sh},
                      detail=detail)
    return get(rt, campaign_id)


def _asset_gate(rt: Runtime, campaign_id: int, template: Path, actor: str) -> None:
    from mailer.compliance import assets
    from mailer.errors import ComplianceRefusal
    from mailer.ledger import REFUSAL, Event

    found = assets.template_refusals(rt, template)
    if found:
        rt.ledger.append([Event(kind=REFUSAL, outcome="asset-consent", campaign_id=campaign_id, actor=actor,
                                rule_ids=tuple(dict.fromkeys(r.rule for r in found)),
                                detail={"gate": "submission", "reasons": [r.reason for r in found]})])
        raise ComplianceRefusal(found)


def current_hashes(campaign: Campaign, rt: Runtime | None = None) -> tuple[str, str]:
    """The hashes of the content that would be sent: the submitted snapshot's.

    (Campaigns made before snapshots existed: the files as they are now.)"""
    from mailer import snapshots

    if rt is not None and snapshots.stored(rt.engine, campaign.id or 0, campaign.template_hash,
                                           campaign.segment_hash) is not None:
        return campaign.template_hash, campaign.segment_hash
    tpath, spath = Path(campaign.template), Path(campaign.segment)
    th = content_hash(tpath) if tpath.is_dir() else ""
    sh = segment_hash(spath.read_bytes()) if spath.is_file() else ""
    return th, sh


def invalidate_if_changed(rt: Runtime, campaign: Campaign, *, actor: str | None = None) -> Campaign:
    """SEC-6 for campaigns made before snapshots: a template or segment edited after
    approval sends the campaign back to submitted. A campaign with a snapshot sends the
    submitted content whatever happens on disk, so nothing here changes it."""
    if campaign.status not in TRANSITIONS["invalidate"][0]:
        return campaign
    th, sh = current_hashes(campaign, rt)
    if (th, sh) == (campaign.template_hash, campaign.segment_hash):
        return campaign
    what = [n for n, a, b in (("template", th, campaign.template_hash), ("segment", sh, campaign.segment_hash)) if a != b]
    return transition(rt, campaign.id or 0, "invalidate", actor=actor, rules=("SEC-6",),
                      reason=f"{' and '.join(what)} changed after approval; needs a new approval",
                      values={"template_hash": th, "segment_hash": sh},
                      detail={"template_hash": th, "segment_hash": sh, "changed": what})


def local_time(text: str, tz: str) -> datetime:
    """An operator's wall-clock time in the center's time zone -> naive UTC (the stored form)."""
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1) if "T" not in text else text.strip())
    except ValueError:
        raise InputError(f"time {text!r} is not understood", hint="use YYYY-MM-DD HH:MM (center time zone)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(UTC).replace(tzinfo=None)


def display_run(value: datetime | None, tz: str) -> str:
    """A run time for people: weekday, wall clock and time zone, e.g. `Mon 2026-12-07 09:00 CST (America/Chicago)`."""
    if value is None:
        return "none"
    local = value.replace(tzinfo=UTC).astimezone(ZoneInfo(tz))
    return local.strftime("%a %Y-%m-%d %H:%M %Z") + (f" ({tz})" if tz not in ("UTC", local.strftime("%Z")) else "")


def display_time(value: datetime | None, tz: str) -> str:
    """Naive UTC -> the center's wall clock, for people."""
    if value is None:
        return ""
    return value.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")
