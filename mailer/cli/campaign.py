"""`mailer campaign ...`: create, send and follow campaigns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from mailer import approvals, campaigns, preflight, sending
from mailer.accounts.permissions import Action
from mailer.cli.common import act, check_format, new_app, out, print_json, runtime
from mailer.errors import EXIT_REFUSED
from mailer.models import Campaign
from mailer.rules import pointer
from mailer.store import deliveries as dq

campaign_app = new_app("Campaigns: create, submit, approve, check, schedule, send and follow them.")
CampaignId = Annotated[int, typer.Argument(help="Campaign id.")]
Format = Annotated[str, typer.Option("--format", help="text or json.")]


@campaign_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="A name for people (no PHI).")],
    template: Annotated[Path, typer.Option(help="Template folder, e.g. templates/newsletter.")],
    segment: Annotated[Path, typer.Option(help="Segment file, e.g. segments/newsletter.toml.")],
    purpose: Annotated[str | None, typer.Option(help="Defaults to the template's purpose.")] = None,
    third_party: Annotated[str | None, typer.Option(help="Sponsor of a paid campaign (MKT-3).")] = None,
    fmt: Format = "text",
) -> None:
    """Create a draft campaign bound to the template and segment content hashes."""
    check_format(fmt)
    rt = runtime(ctx)
    from mailer.templates import load_meta

    purpose = purpose or load_meta(template)["purpose"]
    c = campaigns.create(rt, name=name, purpose=purpose, template=template, segment=segment,
                         author=act(ctx, Action.CAMPAIGN_CREATE), third_party=third_party)
    if fmt == "json":
        print_json({"id": c.id, "status": c.status, "template_hash": c.template_hash, "segment_hash": c.segment_hash,
                    "template": c.template, "segment": c.segment})
        return
    out.print(f"campaign {c.id} created (draft): template {c.template_hash[:12]}, segment {c.segment_hash[:12]}")
    out.print(f"next: mailer campaign submit {c.id}", markup=False)


@campaign_app.command("submit")
def submit(ctx: typer.Context, campaign_id: CampaignId, fmt: Format = "text") -> None:
    """Hand the campaign to review, bound to the template and segment as they are now."""
    check_format(fmt)
    rt = runtime(ctx)
    c = campaigns.submit(rt, campaign_id, actor=act(ctx, Action.CAMPAIGN_SUBMIT))
    if fmt == "json":
        print_json({"id": c.id, "status": c.status, "template_hash": c.template_hash, "segment_hash": c.segment_hash})
        return
    out.print(f"campaign {c.id} submitted: template {c.template_hash[:12]}, segment {c.segment_hash[:12]}; "
              f"a reviewer other than {c.author} runs: mailer campaign approve {c.id}", markup=False)


def _print_packet(p: approvals.ReviewPacket) -> None:
    cls = p.classification
    out.print(f"campaign {p.campaign_id} by {p.author}: purpose {p.purpose}"
              + (f", third party {p.third_party}" if p.third_party else ""), markup=False)
    out.print(f"  template sha256 {p.template_hash}", markup=False)
    out.print(f"  segment  sha256 {p.segment_hash}", markup=False)
    out.print(f"  HIPAA: {cls.hipaa}" + (f" ({cls.exception})" if cls.exception else "")
              + (f"; every recipient needs a '{cls.scope}' authorization" if cls.scope else "")
              + f"; CAN-SPAM: {'commercial' if cls.commercial else 'transactional'} [{', '.join(cls.rules)}]",
              markup=False)
    for w in cls.warnings:
        out.print(f"  WARN {w.rule}: {w.reason} ({w.fix}); {pointer(w.rule)}", markup=False)
    sc = p.segment_counts
    if sc:
        out.print(f"  segment {sc.get('segment')}: considered {sc.get('considered')}, matched {sc.get('matched')}, "
                  f"suppressed {sc.get('suppressed')}, authorized {sc.get('authorized')}", markup=False)
    out.print(f"  lint: {len(p.lint_errors)} error(s), {len(p.lint_reviews)} to review, {len(p.lint_warnings)} info, "
              f"{len(p.waivers)} waiver(s)",
              markup=False)
    for wv in p.waivers:
        out.print(f"    waived {wv['code']} ({wv['rule']}) {wv['file']}:{wv['line']} by {wv.get('waived_by')}: {wv.get('reason')}",
                  markup=False)
    for rv in p.lint_reviews:
        state = (f"acknowledged by {rv['acknowledged_by']}: {rv['reason']}" if rv["acknowledged"]
                 else f"TO ACKNOWLEDGE: mailer campaign acknowledge {p.campaign_id} {rv['key']} --reason ...")
        out.print(f"    review {rv['key']} ({rv['rule']}) {rv['message']} - {state}", markup=False)
    for a in p.assets:  # issue 17: each patient asset with its consent (TST-5)
        out.print(f"  asset {a['key']} ({a.get('kind', '?')}, contact {a.get('contact_id', '?')}): consent "
                  f"{a.get('consent_document_sha256', '')[:12]} for {', '.join(a.get('channels', []))} until "
                  f"{(a.get('consent_expires') or '')[:10]}: {a['email_status']}", markup=False)
    for r in p.refusals:
        out.print(f"  BLOCKS APPROVAL {r.rule}: {r.reason}; {pointer(r.rule)}", markup=False)


@campaign_app.command("review")
def review(ctx: typer.Context, campaign_id: CampaignId, fmt: Format = "text") -> None:
    """What the approver signs: hashes, classification, lint waivers, segment counts."""
    rt = runtime(ctx)
    p = approvals.review(rt, campaigns.get(rt, campaign_id))
    if fmt == "json":
        print_json(p.as_dict())
    else:
        _print_packet(p)


@campaign_app.command("approve")
def approve(ctx: typer.Context, campaign_id: CampaignId,
            note: Annotated[str, typer.Option(help="Reviewer's note (no PHI).")] = "",
            fmt: Format = "text") -> None:
    """Approve a submitted campaign (SEC-6: not its author); binds the approval to the content hashes."""
    rt = runtime(ctx)
    a, packet = approvals.approve(rt, campaign_id, reviewer=act(ctx, Action.CAMPAIGN_APPROVE), note=note)
    if fmt == "json":
        print_json({"approval": a.id, "reviewer": a.reviewer, **packet.as_dict()})
        return
    _print_packet(packet)
    out.print(f"campaign {campaign_id} approved by {a.reviewer} (approval {a.id})", markup=False)


@campaign_app.command("reject")
def reject(ctx: typer.Context, campaign_id: CampaignId,
           reason: Annotated[str, typer.Option(help="Why (no PHI); the author sees it.")]) -> None:
    """Send a submitted campaign back to draft."""
    rt = runtime(ctx)
    approvals.reject(rt, campaign_id, reviewer=act(ctx, Action.CAMPAIGN_REJECT), reason=reason)
    out.print(f"campaign {campaign_id} rejected; back to draft", markup=False)


@campaign_app.command("acknowledge")
def acknowledge(ctx: typer.Context, campaign_id: CampaignId,
                finding: Annotated[str, typer.Argument(help="The finding's key, file:line:code, from `mailer campaign review`.")],
                reason: Annotated[str, typer.Option(help="Why it is fine (no PHI); recorded in the ledger.")],
                fmt: Format = "text") -> None:
    """Acknowledge one `review` lint finding with a reason (issue 13): approval needs each acknowledged."""
    from mailer.reviews import acknowledge as ack

    rt = runtime(ctx)
    item = ack(rt, campaign_id, finding, actor=act(ctx, Action.CAMPAIGN_APPROVE), reason=reason)  # a reviewer's step
    if fmt == "json":
        print_json(item.as_dict())
        return
    out.print(f"campaign {campaign_id}: {item.key} ({item.rule}) acknowledged by {item.acknowledged_by} "
              f"(ledger entry {item.seq})", markup=False)


@campaign_app.command("check")
def check(ctx: typer.Context, campaign_id: CampaignId, fmt: Format = "text",
          connect: Annotated[bool, typer.Option("--connect", help="Also connect to the relay (TLS and login), "
                                                "as a send does before claiming anyone.")] = False) -> None:
    """Preflight: every gate with its rule ID and fix. Exit 3 while any gate fails."""
    rt = runtime(ctx)
    report = preflight.check(rt, campaign_id, actor=act(ctx, Action.CAMPAIGN_CHECK), connect=connect)
    if fmt == "json":
        print_json(report.as_dict())
    else:
        out.print(f"campaign {campaign_id} ({report.status}): preflight {'passes' if report.ok else 'FAILS'}",
                  markup=False)
        for g in report.gates:
            mark = "pass" if g.ok else ("WARN" if g.severity == "warning" else "FAIL")
            out.print(f"  {mark:4}  {g.rule:7} {g.name:11} {g.detail}; {pointer(g.rule)}", markup=False)
            if not g.ok and g.fix:
                out.print(f"{'':21}fix: {g.fix}", markup=False)
    if not report.ok:
        raise typer.Exit(EXIT_REFUSED)


@campaign_app.command("schedule")
def schedule(
    ctx: typer.Context, campaign_id: CampaignId,
    at: Annotated[str | None, typer.Option(help="One-off send time, YYYY-MM-DD HH:MM in the center's time zone.")] = None,
    cron: Annotated[str | None, typer.Option(help='Recurring, crontab(5) in the center\'s time zone, e.g. "0 9 * * 1" '
                                             '(Mondays 09:00).')] = None,
    fmt: Format = "text",
) -> None:
    """Schedule an approved campaign; `mailer worker` sends it, checking every gate again then."""
    from mailer import scheduler

    rt = runtime(ctx)
    tz = rt.settings.center.timezone
    when = campaigns.local_time(at, tz) if at else None
    scheduler.schedule(rt, campaign_id, at=when, cron=cron, actor=act(ctx, Action.CAMPAIGN_SCHEDULE))
    nxt = scheduler.next_run(rt, campaign_id)
    if fmt == "json":
        print_json({"campaign": campaign_id, "status": "scheduled", "next_run": campaigns.display_run(nxt, tz),
                    "next_run_utc": nxt.isoformat() + "Z" if nxt else None, "cron": cron, "timezone": tz})
        return
    out.print(f"campaign {campaign_id} scheduled; next run {campaigns.display_run(nxt, tz)}"
              + (f" (recurring: {cron})" if cron else ""), markup=False)


@campaign_app.command("pause")
def pause(ctx: typer.Context, campaign_id: CampaignId,
          reason: Annotated[str, typer.Option(help="Why (no PHI).")] = "") -> None:
    """Stop scheduled runs and a run already sending (the rest stays pending until resume)."""
    from mailer import scheduler

    scheduler.pause(runtime(ctx), campaign_id, actor=act(ctx, Action.CAMPAIGN_PAUSE), reason=reason)
    out.print(f"campaign {campaign_id} paused", markup=False)


@campaign_app.command("resume")
def resume(ctx: typer.Context, campaign_id: CampaignId) -> None:
    """Resume a paused campaign: back to scheduled (a past one-off time runs now) or approved."""
    from mailer import scheduler

    c = scheduler.resume(runtime(ctx), campaign_id, actor=act(ctx, Action.CAMPAIGN_RESUME))
    out.print(f"campaign {campaign_id} {c.status}", markup=False)


@campaign_app.command("cancel")
def cancel(ctx: typer.Context, campaign_id: CampaignId,
           reason: Annotated[str, typer.Option(help="Why (no PHI).")] = "") -> None:
    """Cancel for good; the job is removed."""
    from mailer import scheduler

    scheduler.cancel(runtime(ctx), campaign_id, actor=act(ctx, Action.CAMPAIGN_CANCEL), reason=reason)
    out.print(f"campaign {campaign_id} cancelled", markup=False)


@campaign_app.command("freeze")
def freeze(ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(help="Campaign id.")]) -> None:
    """Evaluate the segment now and freeze the audience; its hash goes to the ledger."""
    rt = runtime(ctx)
    p = sending.prepare(rt, campaigns.get(rt, campaign_id), actor=act(ctx, Action.CAMPAIGN_CHECK))
    note = f", matched of {p.counts.considered} considered" if p.counts else " (already frozen)"
    out.print(f"campaign {campaign_id}: audience of {p.frozen} recipient(s){note}")


@campaign_app.command("status")
def status(ctx: typer.Context,
           campaign_id: Annotated[int | None, typer.Argument(help="Campaign id; all campaigns when omitted.")] = None,
           fmt: Format = "text") -> None:
    """Campaign state and per-recipient outcome counts."""
    from mailer import scheduler
    from mailer.bounces.rates import campaign_rates

    check_format(fmt)
    rt = runtime(ctx)
    t = Campaign.__table__  # type: ignore[attr-defined]
    q = select(t).order_by(t.c.id)
    if campaign_id is not None:
        q = q.where(t.c.id == campaign_id)
    with rt.engine.connect() as conn:
        rows = conn.execute(q).all()
    if campaign_id is not None and not rows:
        campaigns.get(rt, campaign_id)  # raises: does not exist
    tz = rt.settings.center.timezone
    data = []
    for r in rows:
        counts = dq.counts(rt.engine, r.id)
        data.append({"id": r.id, "name": r.name, "purpose": r.purpose, "status": r.status,
                     "shown_status": campaigns.display_status(r.status, r.status_reason, counts),
                     "reason": r.status_reason, "author": r.author, "run": r.run,
                     "schedule": r.schedule_cron or campaigns.display_run(r.schedule_at, tz) if (
                         r.schedule_cron or r.schedule_at) else "",
                     "next_run": campaigns.display_run(scheduler.next_run(rt, r.id), tz)
                     if r.status == "scheduled" else None,
                     "recipients": counts, "bounces": campaign_rates(rt.engine, r.id).as_dict()})
    if fmt == "json":
        print_json(data)
        return
    if campaign_id is not None or (out.width or 80) < 100:
        for d in data:  # a record view: every field on its own line, readable at 80 columns
            lines = [f"campaign {d['id']}: {d['name']}", f"  purpose    {d['purpose']}",
                     f"  status     {d['shown_status']}", f"  author     {d['author']}"]
            if d["schedule"] or d["run"]:
                lines.append(f"  schedule   {d['schedule']}" + (f" (run {d['run']})" if d["run"] else ""))
            if d["next_run"]:
                lines.append(f"  next run   {d['next_run']}")
            lines.append("  recipients " + (", ".join(f"{k} {v}" for k, v in sorted(d["recipients"].items()))
                                            or "none yet (frozen when sending starts)"))
            lines.append(f"  bounces    {d['bounces']['bounce_rate']:.2%} / {d['bounces']['complaint_rate']:.2%} "
                         "(bounce / complaint rate)")
            out.print("\n".join(lines), markup=False, emoji=False)
        return
    table = Table(box=None)
    for col in ("id", "name", "purpose", "status", "schedule", "recipients", "bounce / complaint rate"):
        table.add_column(col, overflow="fold")
    for d in data:
        table.add_row(*(Text(str(x)) for x in (
            d["id"], d["name"], d["purpose"], d["shown_status"],
            d["schedule"] + (f" run {d['run']}" if d["run"] else ""),
            ", ".join(f"{k} {v}" for k, v in sorted(d["recipients"].items())),
            f"{d['bounces']['bounce_rate']:.2%} / {d['bounces']['complaint_rate']:.2%}")))
    out.print(table)


@campaign_app.command("list")
def list_cmd(ctx: typer.Context, fmt: Format = "text") -> None:
    """Every campaign, one line each: id, status, name (details: `campaign status ID`)."""
    check_format(fmt)
    rt = runtime(ctx)
    t = Campaign.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.name, t.c.purpose, t.c.status, t.c.status_reason).order_by(t.c.id)).all()
    data = [{"id": r.id, "name": r.name, "purpose": r.purpose,
             "status": campaigns.display_status(r.status, r.status_reason, dq.counts(rt.engine, r.id))} for r in rows]
    if fmt == "json":
        print_json(data)
        return
    if not data:
        out.print("no campaigns yet; create one: mailer campaign create --help", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("status", overflow="fold")
    table.add_column("name", overflow="fold")
    for d in data:
        table.add_row(Text(str(d["id"])), Text(d["status"]), Text(d["name"]))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
