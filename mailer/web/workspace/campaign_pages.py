"""Campaign pages: list, create, detail (preview, lint, counts, gates, approvals) and actions.

Handlers call the same services as `mailer campaign ...` (campaigns, approvals, preflight,
scheduler) and check the same permission table. Which buttons a page shows is decided by
`available_actions` (the account's roles and the campaign's state); a POST for an action
the roles do not allow is refused with 403 by `require`, whatever the page showed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from starlette.responses import Response

from mailer import approvals, campaigns, preflight, scheduler
from mailer.accounts.permissions import Action, Principal
from mailer.errors import InputError, MailerError
from mailer.models import Approval, Campaign, utcnow
from mailer.web.workspace.core import Ctx, NotFound, int_param, page, redirect
from mailer.web.workspace.security import HEADERS, PREVIEW_CSP

_C = Campaign.__table__  # type: ignore[attr-defined]
_A = Approval.__table__  # type: ignore[attr-defined]
PAGE_SIZE = 50

# action -> (permission, states it is offered in)
ACTIONS: dict[str, tuple[Action, tuple[str, ...]]] = {
    "submit": (Action.CAMPAIGN_SUBMIT, ("draft",)),
    "approve": (Action.CAMPAIGN_APPROVE, ("submitted",)),
    "reject": (Action.CAMPAIGN_REJECT, ("submitted",)),
    "schedule": (Action.CAMPAIGN_SCHEDULE, ("approved", "scheduled")),
    "send": (Action.CAMPAIGN_SEND, ("approved",)),
    "pause": (Action.CAMPAIGN_PAUSE, ("approved", "scheduled", "sending")),
    "resume": (Action.CAMPAIGN_RESUME, ("paused",)),
    "cancel": (Action.CAMPAIGN_CANCEL, ("draft", "submitted", "approved", "scheduled", "sending", "paused")),
}


def available_actions(principal: Principal, campaign: Campaign) -> list[str]:
    """Pure: the actions this account may take on this campaign now (what the page shows).
    Approve and reject are not offered to the author (SEC-6: four eyes)."""
    out = []
    for name, (action, states) in ACTIONS.items():
        if campaign.status not in states or not principal.can(action):
            continue
        if name in ("approve", "reject") and principal.name == (campaign.author or "").strip().lower():
            continue
        out.append(name)
    return out


def next_runs(*, at: datetime | None, cron: str | None, tz: str, n: int = 3,
              now: datetime | None = None) -> list[str]:
    """The next `n` run times in the center's time zone (the same trigger the worker uses)."""
    trig = scheduler.trigger_for(at=at, cron=cron, tz=tz)
    cur = (now or utcnow()).replace(tzinfo=UTC).astimezone(ZoneInfo(tz))
    prev = None
    out: list[str] = []
    for _ in range(n):
        nxt = trig.get_next_fire_time(prev, cur)
        if nxt is None:
            break
        out.append(nxt.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M %Z"))
        prev, cur = nxt, nxt
    return out


def _get(c: Ctx, campaign_id: int) -> Campaign:
    with c.rt.engine.connect() as conn:
        row = conn.execute(select(_C).where(_C.c.id == campaign_id)).first()
    if row is None:
        raise NotFound(f"campaign {campaign_id}")
    return Campaign(**row._asdict())


def _cid(c: Ctx) -> int:
    return int(c.request.path_params["campaign_id"])


@page()
def campaign_list(c: Ctx) -> Response:
    status, purpose, author, text = c.q("status"), c.q("purpose"), c.q("author"), c.q("q")
    before = int_param(c.q("before"), "before")
    q = select(_C.c.id, _C.c.name, _C.c.purpose, _C.c.status, _C.c.author, _C.c.updated_at,
               _C.c.schedule_at, _C.c.schedule_cron)
    if status:
        q = q.where(_C.c.status == status)
    if purpose:
        q = q.where(_C.c.purpose == purpose)
    if author:
        q = q.where(_C.c.author == (c.principal.name if author == "me" else author))
    if text:
        q = q.where(func.lower(_C.c.name).contains(text.lower()[:100], autoescape=True))
    if before:
        q = q.where(_C.c.id < before)
    with c.rt.engine.connect() as conn:
        rows = conn.execute(q.order_by(_C.c.id.desc()).limit(PAGE_SIZE + 1)).all()
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    from mailer.purposes import PURPOSES

    return c.render("campaigns.html", rows=rows, more=more, states=campaigns.STATES, purposes=PURPOSES,
                    f={"status": status, "purpose": purpose, "author": author, "q": text},
                    tz=c.rt.settings.center.timezone, display=campaigns.display_time)


def _choices(c: Ctx) -> tuple[list[str], list[str]]:
    web = c.rt.settings.web
    tdir, sdir = Path(web.templates_dir), Path(web.segments_dir)
    templates = sorted(p.name for p in tdir.iterdir() if (p / "template.toml").is_file()) if tdir.is_dir() else []
    segments = sorted(p.name for p in sdir.glob("*.toml") if p.is_file()) if sdir.is_dir() else []
    return templates, segments


@page(Action.CAMPAIGN_CREATE)
def campaign_new(c: Ctx) -> Response:
    from mailer.purposes import PURPOSES
    from mailer.templates import load_meta

    templates, segments = _choices(c)
    errors: dict[str, str] = {}
    values = {"name": "", "template": "", "segment": "", "purpose": "", "third_party": ""}
    if c.request.method == "POST":
        values = {k: c.form.get(k, "").strip() for k in values}
        if not values["name"]:
            errors["name"] = "give the campaign a name (for people; no patient information)"
        elif len(values["name"]) > 200:
            errors["name"] = "at most 200 characters"
        if values["template"] not in templates:
            errors["template"] = "pick one of the template folders listed"
        if values["segment"] not in segments:
            errors["segment"] = "pick one of the segment files listed"
        if values["purpose"] and values["purpose"] not in PURPOSES:
            errors["purpose"] = f"one of {', '.join(PURPOSES)}"
        if len(values["third_party"]) > 256:
            errors["third_party"] = "at most 256 characters"
        if not errors:
            web = c.rt.settings.web
            tpath = Path(web.templates_dir) / values["template"]
            spath = Path(web.segments_dir) / values["segment"]
            try:
                purpose = values["purpose"] or load_meta(tpath)["purpose"]
                made = campaigns.create(c.rt, name=values["name"], purpose=purpose, template=tpath.resolve(),
                                        segment=spath.resolve(), author=c.principal.name,
                                        third_party=values["third_party"] or None)
            except MailerError as e:
                errors["template"] = e.message + (f" ({e.hint})" if e.hint else "")
            else:
                return redirect(f"/campaigns/{made.id}?done=created")
    return c.render("campaign_new.html", 400 if errors else 200, templates=templates, segments=segments,
                    purposes=PURPOSES, values=values, errors=errors)


@page()
def campaign_detail(c: Ctx) -> Response:
    camp = _get(c, _cid(c))
    # SEC-6: content edited after approval goes back to review, whoever looks first.
    camp = campaigns.invalidate_if_changed(c.rt, camp, actor=c.principal.name)
    tz = c.rt.settings.center.timezone
    packet, packet_error = None, ""
    try:
        packet = approvals.review(c.rt, camp)
    except MailerError as e:
        packet_error = e.message + (f" ({e.hint})" if e.hint else "")
    report = preflight.evaluate(c.rt, camp, count=False)
    with c.rt.engine.connect() as conn:
        history = conn.execute(select(_A).where(_A.c.campaign_id == camp.id).order_by(_A.c.id.desc())).all()
    from mailer.store import deliveries as dq

    runs: list[str] = []
    run_error = ""
    preview_cron = c.q("cron")
    try:
        if preview_cron:
            runs = next_runs(at=None, cron=preview_cron, tz=tz)
        elif camp.status == "scheduled" and (camp.schedule_cron or camp.schedule_at):
            runs = next_runs(at=camp.schedule_at, cron=camp.schedule_cron, tz=tz)
    except InputError as e:
        run_error = e.message
    return c.render("campaign.html", camp=camp, packet=packet, packet_error=packet_error, report=report,
                    history=history, actions=available_actions(c.principal, camp),
                    recipients=dq.counts(c.rt.engine, camp.id or 0), runs=runs, run_error=run_error,
                    preview_cron=preview_cron, tz=tz, done=c.q("done")[:32],
                    schedule=campaigns.display_time(camp.schedule_at, tz),
                    can_evidence=c.can(Action.LEDGER_EVIDENCE), is_author=c.principal.name == camp.author,
                    errors={})


@page()
def campaign_preview(c: Ctx) -> Response:
    """The template rendered for the synthetic contact, shown in a sandboxed frame (no script,
    opaque origin): the page embedding it uses `<iframe sandbox>` and this CSP sandboxes it again."""
    from mailer.preview import render_preview

    camp = _get(c, _cid(c))
    try:
        html = render_preview(c.rt.settings, Path(camp.template), campaign_name=camp.name,
                              campaign_id=camp.id or 0).html
    except MailerError as e:
        html = f"<p>The template cannot be rendered: {_esc(e.message)}</p>"
    headers = {**HEADERS, "Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"}
    return Response(html, media_type="text/html", headers=headers)


def _esc(s: str) -> str:
    import html as h

    return h.escape(s)


@page()
def campaign_action(c: Ctx) -> Response:
    name = c.request.path_params["action"]
    if name not in ACTIONS:
        raise NotFound(name)
    c.require(ACTIONS[name][0])
    cid = _cid(c)
    camp = _get(c, cid)
    me = c.principal.name
    comment = c.form.get("comment", "").strip()
    if name == "submit":
        campaigns.submit(c.rt, cid, actor=me)
    elif name == "approve":
        approvals.approve(c.rt, cid, reviewer=me, note=comment[:500])
    elif name == "reject":
        if not comment:
            return _with_errors(c, camp, {"comment": "say why it is rejected (the author sees it; no patient information)"})
        approvals.reject(c.rt, cid, reviewer=me, reason=comment[:500])
    elif name == "schedule":
        at_text, cron = c.form.get("at", "").strip(), c.form.get("cron", "").strip()
        if bool(at_text) == bool(cron):
            return _with_errors(c, camp, {"schedule": "give either a date and time or a cron expression, not both"})
        try:
            at = campaigns.local_time(at_text, c.rt.settings.center.timezone) if at_text else None
            if cron:
                scheduler.trigger_for(at=None, cron=cron, tz=c.rt.settings.center.timezone)
        except InputError as e:
            return _with_errors(c, camp, {"schedule": e.message + (f" ({e.hint})" if e.hint else "")})
        scheduler.schedule(c.rt, cid, at=at, cron=cron or None, actor=me)
    elif name == "send":
        # Sending is the worker's job: "send now" schedules a run at this moment, after every gate passes.
        scheduler.schedule(c.rt, cid, at=utcnow(), actor=me)
    elif name == "pause":
        scheduler.pause(c.rt, cid, actor=me, reason=comment[:200])
    elif name == "resume":
        scheduler.resume(c.rt, cid, actor=me)
    elif name == "cancel":
        scheduler.cancel(c.rt, cid, actor=me, reason=comment[:200])
    return redirect(f"/campaigns/{cid}?done={name}")


def _with_errors(c: Ctx, camp: Campaign, errors: dict[str, str]) -> Response:
    tz = c.rt.settings.center.timezone
    report = preflight.evaluate(c.rt, camp, count=False)
    with c.rt.engine.connect() as conn:
        history = conn.execute(select(_A).where(_A.c.campaign_id == camp.id).order_by(_A.c.id.desc())).all()
    from mailer.store import deliveries as dq

    return c.render("campaign.html", 400, camp=camp, packet=None, packet_error="", report=report, history=history,
                    actions=available_actions(c.principal, camp), recipients=dq.counts(c.rt.engine, camp.id or 0),
                    runs=[], run_error="", preview_cron="", tz=tz, done="",
                    schedule=campaigns.display_time(camp.schedule_at, tz),
                    can_evidence=c.can(Action.LEDGER_EVIDENCE), is_author=c.principal.name == camp.author,
                    errors=errors)


def counts_by_status(conn: Any) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute(select(_C.c.status, func.count()).group_by(_C.c.status))}
