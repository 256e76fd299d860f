"""Sending a campaign run: compile, plan and freeze the audience once, then run the Sender.

`send` calls `preflight.require` first (approval bound to hashes, lint, BAA, ...), so
every path that sends (CLI, scheduler, worker) passes the same gates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update

from mailer import preflight as preflight_gates
from mailer.authorizations import best_validity
from mailer.campaigns import RUN_STOPPED, get, set_status
from mailer.db import writing
from mailer.errors import (
    CampaignBusy,
    ComplianceRefusal,
    StateError,
    TLSPolicyError,
    TransportError,
)
from mailer.ledger import CAMPAIGN, REFUSAL, Event
from mailer.locks import NamedLock
from mailer.models import Campaign, utcnow
from mailer.personalize import Filled
from mailer.pipeline import AuthCheck, RenderedCheck, Sender, SenderOptions, SendPlan, Summary
from mailer.ratelimit import SharedRateLimiter
from mailer.refusal import Refusal
from mailer.runtime import Runtime
from mailer.segments import (
    Evaluator,
    SegmentCounts,
    SegmentPlan,
    gate,
    load_segment,
    plan_segment,
    segment_hash,
)
from mailer.store import audience, leases
from mailer.store import deliveries as dq
from mailer.templates import TEMPLATE_FILES, CompiledTemplate, Rendered, compile_template

_T = Campaign.__table__  # type: ignore[attr-defined]


def auth_check() -> AuthCheck:
    """Adapter: the pure validity rules (AUTH-*, MKT-6, SEG-5) for the sender's re-check."""

    def check(auths: Sequence[Any], scope: str, at: datetime, third_party: str | None) -> tuple[bool, tuple[str, ...], int | None]:
        validity, auth = best_validity(auths, scope, at, third_party)
        return validity.valid, tuple(validity.rules), getattr(auth, "id", None)

    return check


def approved_literal_text(template: CompiledTemplate) -> str:
    """The template's own words, lower-cased: identical for every recipient and approved
    with the content hash (SEC-6), so a clinical term in them is not this recipient's data."""
    parts = [(template.path / name).read_text() for name in TEMPLATE_FILES if (template.path / name).exists()]
    return "\n".join(parts).lower()


def rendered_check(rt: Runtime, template: CompiledTemplate | None = None) -> RenderedCheck:
    """Adapter: the rendered-output lint (PHI-2, PHI-3, PHI-210) for every message.

    A recipient's clinical value that the approved template itself states (e.g. the
    condition a condition-targeted campaign is about) is not a leak; any other of the
    recipient's values appearing in the message is, and blocks that message.
    """
    from mailer.lint import check_rendered

    settings = lint_settings(rt)
    approved = approved_literal_text(template) if template is not None else ""

    def check(rendered: Rendered, values: Sequence[str]) -> list[str]:
        own = [v for v in values if v and str(v).lower() not in approved]
        if isinstance(rendered, Filled):  # filled from a skeleton: only what a value changed is scanned
            return rendered.blocking_rules(own, settings)
        findings = check_rendered(rendered.parts(), recipient_values=own, settings=settings)
        return [f.rule for f in findings if f.blocking]

    return check


def lint_settings(rt: Runtime) -> Any:
    """The lint's view of the settings: the center's own phone/address/domains are allowed."""
    from mailer.lint import from_app_settings

    return from_app_settings(rt.settings)


@dataclass
class Prepared:
    campaign: Campaign
    template: CompiledTemplate
    segment_plan: SegmentPlan
    counts: SegmentCounts | None
    frozen: int


def check_segment(rt: Runtime, segment_path: Path, at: datetime | None = None) -> tuple[SegmentPlan, SegmentCounts, list[Refusal]]:
    plan = plan_segment(load_segment(segment_path, rt.settings.fields))
    if plan.refusals:
        counts = SegmentCounts(segment=plan.segment.name)
        return plan, counts, gate(plan, counts)
    counts = audience.evaluate(rt.engine, rt.keyring, plan, at or utcnow())
    return plan, counts, gate(plan, counts)


def prepare(rt: Runtime, campaign: Campaign, *, actor: str | None = None, at: datetime | None = None) -> Prepared:
    """Compile the template, plan the segment, and freeze the audience once per run."""
    from mailer.compliance import assets
    from mailer.snapshots import source

    src = source(rt, campaign)  # the submitted content, whatever the current folder (SEC-6)
    template = compile_template(src.template)
    assets.bind(rt, template, at=at)  # TST-5: consented assets only, re-checked as each message renders
    if template.content_hash != campaign.template_hash:
        raise ComplianceRefusal([Refusal("SEC-6", f"campaign {campaign.id}: template changed since it was created",
                                         "re-submit the campaign for approval")])
    seg_path = src.segment
    if segment_hash(seg_path.read_bytes()) != campaign.segment_hash:
        raise ComplianceRefusal([Refusal("SEC-6", f"campaign {campaign.id}: segment file changed since it was created",
                                         "re-submit the campaign for approval")])
    plan = plan_segment(load_segment(seg_path, rt.settings.fields))
    existing = dq.counts(rt.engine, campaign.id or 0, campaign.run)
    if existing:
        return Prepared(campaign, template, plan, None, sum(existing.values()))
    when = at or utcnow()
    ev = Evaluator(plan, when)
    refusals = list(plan.refusals)
    if not refusals:
        frozen, digest = dq.freeze_audience(rt.engine, rt.ledger, campaign.id or 0, campaign.run,
                                            audience.members(rt.engine, rt.keyring, plan, when, evaluator=ev), actor=actor)
        refusals = gate(plan, ev.counts)
        if refusals and frozen:
            raise StateError("segment refused after freezing")  # gate() and members() disagree: a bug
    if refusals:
        rt.ledger.append([Event(kind=REFUSAL, campaign_id=campaign.id, actor=actor,
                                rule_ids=tuple(r.rule for r in refusals),
                                detail={"gate": "segment", "counts": ev.counts.as_dict()})])
        raise ComplianceRefusal(refusals)
    with writing(rt.engine) as conn:
        conn.execute(update(_T).where(_T.c.id == campaign.id).values(audience_hash=digest, updated_at=utcnow()))
    return Prepared(campaign, template, plan, ev.counts, frozen)


def make_sender(rt: Runtime, campaign_id: int, *, transport: Any = None,
                progress: Callable[[Summary], None] | None = None,
                clock: Callable[[], datetime] | None = None,
                template: CompiledTemplate | None = None) -> Sender:
    """The Sender wired from settings: limits, checks, composer (DKIM when configured)."""
    s = rt.settings
    return Sender(
        engine=rt.engine, keyring=rt.keyring, ledger=rt.ledger, transport=transport,
        composer=rt.composer(campaign_id),
        options=SenderOptions(unsubscribe_base=s.unsubscribe.base_url, claim_batch=s.limits.claim_batch,
                              max_attempts=s.limits.max_attempts, retry_base_seconds=s.limits.retry_base_seconds,
                              pause_after_failures=s.limits.pause_after_failures,
                              return_local=s.bounces.local_part, return_domain=s.bounces.domain,
                              lease_seconds=s.limits.lease_seconds),
        auth_check=auth_check(), rendered_check=rendered_check(rt, template),
        # shared through the database: the limits hold for the campaign whatever the number of senders
        limiter=SharedRateLimiter(rt.engine, campaign_id, s.limits.messages_per_second,
                                  s.limits.per_domain_per_minute),
        clock=clock or utcnow, progress=progress,
    )


def _plan(rt: Runtime, campaign: Campaign, prepared: Prepared) -> SendPlan:
    sp = prepared.segment_plan
    return SendPlan(campaign_id=campaign.id or 0, run=campaign.run, campaign_name=campaign.name,
                    template=prepared.template, center=rt.center_context(),
                    scope=sp.segment.scope if sp.requires_authorization else None,
                    third_party=sp.segment.third_party)


async def send(rt: Runtime, campaign_id: int, *, transport: Any = None, actor: str | None = None,
               progress: Callable[[Summary], None] | None = None,
               preflight: Callable[[Runtime, Campaign], None] | None = None,
               statuses: Sequence[str] = (dq.PENDING,),
               dry_run: Path | None = None,
               clock: Callable[[], datetime] | None = None,
               on_sender: Callable[[Sender], None] | None = None) -> Summary:
    """Send (or resume) a campaign run. Refusals raise ComplianceRefusal (exit 3).

    `statuses` picks the rows to claim: pending (send and resume), uncertain (the
    operator's `resend --uncertain`) or failed (`retry-failed`). `dry_run` writes one
    .eml per recipient into that folder instead of sending, and records nothing as sent.
    `on_sender` receives the Sender before it runs (the CLI wires Ctrl-C to `interrupt`).
    A campaign that a run paused itself (interrupted, relay unreachable: reason
    "run stopped: ...") is continued by sending it again; an operator's pause is not.
    """
    campaign = get(rt, campaign_id)
    if campaign.status in ("done", "cancelled") and tuple(statuses) == (dq.PENDING,) and dry_run is None:
        raise StateError(f"campaign {campaign_id} is {campaign.status}",
                         hint="`campaign retry-failed` or `campaign resend --uncertain` pick up what is left")
    if campaign.status == "cancelled":
        raise StateError(f"campaign {campaign_id} is cancelled")
    if preflight is not None:
        preflight(rt, campaign)
    else:
        preflight_gates.require(rt, campaign)
    if dry_run is not None:
        prepared = prepare(rt, campaign, actor=actor)
        plan = _plan(rt, campaign, prepared)
        sender = make_sender(rt, campaign_id, progress=progress, clock=clock, template=prepared.template)
        summary = await asyncio.to_thread(sender.dry_run, plan, Path(dry_run), statuses=statuses)
        rt.ledger.append([Event(kind=CAMPAIGN, outcome="dry-run", campaign_id=campaign_id, actor=actor,
                                detail={"run": campaign.run, "written": summary.sent,
                                        "skipped": summary.skipped_total})])
        return summary
    # Any number of senders may work on one campaign run at once (issue 20): each claims
    # under a lease, so none marks another's in-flight rows uncertain. Only the audience
    # is frozen once, under a lock: the first sender freezes it, the others find it.
    return await _send_leased(rt, campaign, transport=transport, actor=actor, progress=progress,
                              statuses=statuses, clock=clock, on_sender=on_sender)


def prepare_once(rt: Runtime, campaign: Campaign, *, actor: str | None = None) -> Prepared:
    """`prepare` under a per-campaign lock, so concurrent senders freeze the audience once."""
    lock = NamedLock(rt.engine, f"prepare-{campaign.id}", wait=300)
    try:
        if not lock.acquire():
            raise CampaignBusy(f"campaign {campaign.id}: another sender has been freezing its audience for 5 minutes",
                               hint=f"check `mailer campaign status {campaign.id}`, then send again")
        return prepare(rt, get(rt, campaign.id or 0), actor=actor)
    finally:
        lock.release()


async def _send_leased(rt: Runtime, campaign: Campaign, *, transport: Any, actor: str | None,
                       progress: Callable[[Summary], None] | None, statuses: Sequence[str],
                       clock: Callable[[], datetime] | None,
                       on_sender: Callable[[Sender], None] | None) -> Summary:
    campaign_id = campaign.id or 0
    prepared = prepare_once(rt, campaign, actor=actor)
    plan = _plan(rt, campaign, prepared)
    if tuple(statuses) != (dq.PENDING,):
        refuse_ledger_sent(rt, campaign_id, campaign.run, statuses, actor=actor)
    transport = transport or rt.transport()
    sender = make_sender(rt, campaign_id, transport=transport, progress=progress, clock=clock,
                         template=prepared.template)
    if on_sender is not None:
        on_sender(sender)
    try:
        failed_probe = await probe(transport)
        if failed_probe is not None:  # nothing claimed: pause with the reason and the rule
            summary = Summary(campaign_id, campaign.run, paused=failed_probe.message,
                              paused_rules=failed_probe.rules or ("SEC-8",))
            if isinstance(failed_probe, TLSPolicyError):
                _relay_refused(rt, campaign_id, transport, summary, actor)
            set_status(rt, campaign_id, "paused", RUN_STOPPED + failed_probe.message, actor=actor,
                       rules=summary.paused_rules)
            return summary
        if get(rt, campaign_id).status != "sending":
            set_status(rt, campaign_id, "sending", actor=actor)
        summary = await sender.run(plan, statuses=statuses)
    finally:
        await transport.close()
    if summary.paused and any(r.startswith("TLS") for r in summary.paused_rules):
        _relay_refused(rt, campaign_id, transport, summary, actor)
    others = leases.live_owners(rt.engine, campaign_id)
    if summary.paused:
        # Ctrl-C on one sender stops that sender; the others go on (pause the campaign to stop all).
        alone = not (summary.interrupted and others)
        if alone and get(rt, campaign_id).status not in ("paused", "cancelled"):  # else an operator set it
            reason = summary.paused if summary.paused.startswith(RUN_STOPPED) else RUN_STOPPED + summary.paused
            set_status(rt, campaign_id, "paused", reason, actor=actor, rules=summary.paused_rules)
    else:
        summary.uncertain += settle(rt, campaign_id, campaign.run, actor=actor)
    return summary


def settle(rt: Runtime, campaign_id: int, run: int, *, actor: str | None = None) -> int:
    """After a sender ends: rows of senders that died are reported `uncertain` (returns how
    many); rows of live ones are theirs to finish, and the last to finish marks the campaign done."""
    n = dq.mark_uncertain(rt.engine, rt.ledger, campaign_id, run)
    left = dq.counts(rt.engine, campaign_id, run)
    if not left.get(dq.PENDING) and not left.get(dq.CLAIMED):
        problems = ", ".join(f"{left[k]} {k}" for k in (dq.FAILED, dq.UNCERTAIN) if left.get(k))
        set_status(rt, campaign_id, "done", f"with problems: {problems}" if problems else "", actor=actor)
    return n


def refuse_ledger_sent(rt: Runtime, campaign_id: int, run: int, statuses: Sequence[str], *,
                       actor: str | None = None) -> list[int]:
    """`retry-failed` and `resend`: a row the ledger records as sent is never sent again (SEC-5,
    SEND-1). Its state goes back to what the ledger says, with a refusal entry per row, so the
    disagreement stays on record and `ledger verify` is clean once it is settled."""
    from sqlalchemy import select

    from mailer.ledger_crosscheck import sent_per_ledger
    from mailer.models import Delivery

    d = Delivery.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(d.c.id).where(d.c.campaign_id == campaign_id, d.c.run == run,
                                                               d.c.status.in_(tuple(statuses))))]
    clash = sent_per_ledger(rt.engine, campaign_id, run, ids)
    if not clash:
        return []
    with writing(rt.engine) as conn:
        rows = conn.execute(select(d.c.id, d.c.contact_id, d.c.status).where(d.c.id.in_(clash))).all()
        conn.execute(update(d).where(d.c.id.in_(clash), d.c.status.in_(tuple(statuses)))
                     .values(status=dq.SENT, updated_at=utcnow()))
        rt.ledger.append_in(conn, [Event(kind=REFUSAL, outcome="already-sent", campaign_id=campaign_id,
                                         contact_id=r.contact_id, actor=actor, rule_ids=("SEC-5", "SEND-1"),
                                         detail={"delivery": r.id, "run": run, "row_said": r.status,
                                                 "why": "the ledger records this recipient as sent"})
                                   for r in rows])
    return clash


def _relay_refused(rt: Runtime, campaign_id: int, transport: Any, summary: Summary, actor: str | None) -> None:
    """A relay that failed a TLS rule is a refusal (counted by rule, relay named, in the
    quarterly report), besides the campaign's pause."""
    rt.ledger.append([Event(kind=REFUSAL, outcome="relay", campaign_id=campaign_id, actor=actor,
                            relay=getattr(transport, "relay", None), rule_ids=summary.paused_rules,
                            detail={"gate": "relay-tls", "reason": summary.paused[:200]})])


async def probe(transport: Any) -> TransportError | None:
    """One connection with TLS (and AUTH when configured) before anyone is claimed.

    Returns the error that stops the run, or None. A transport without `probe` (a test
    double) is taken as reachable."""
    check = getattr(transport, "probe", None)
    if check is None:
        return None
    try:
        await check()
    except TransportError as err:
        return err
    return None
