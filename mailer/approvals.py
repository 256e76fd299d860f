"""Four-eyes approval bound to content (SEC-6): the review packet, approve, reject, validity.

The reviewer sees what they sign: the template content hash, the segment file hash, the
purpose and its classification (MKT-*, SPAM-0), every lint waiver and the segment counts.
All of it is recorded with the Approval row and in the ledger. The approver must be a
different person from the author. An approval is valid only while the files still hash
to what was approved; `campaigns.invalidate_if_changed` sends an edited campaign back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailer import campaigns, snapshots
from mailer.accounts.permissions import Action, require
from mailer.classify import Classification, classify, from_campaign, scope_refusals
from mailer.db import writing
from mailer.errors import ComplianceRefusal, StateError
from mailer.ledger import APPROVAL, REFUSAL, Event
from mailer.models import Approval, Campaign, utcnow
from mailer.refusal import Refusal
from mailer.runtime import Runtime

_A = Approval.__table__  # type: ignore[attr-defined]


@dataclass
class ReviewPacket:
    """What the approver is shown. Ids, hashes, counts and rule codes only: no PHI."""

    campaign_id: int
    author: str
    purpose: str
    third_party: str | None
    template_hash: str
    segment_hash: str
    classification: Classification
    waivers: list[dict[str, Any]] = field(default_factory=list)
    lint_errors: list[dict[str, Any]] = field(default_factory=list)
    lint_warnings: list[dict[str, Any]] = field(default_factory=list)
    segment_counts: dict[str, Any] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)  # content gates that block approval
    lint_reviews: list[dict[str, Any]] = field(default_factory=list)  # issue 13: acknowledged one by one
    assets: list[dict[str, Any]] = field(default_factory=list)  # each asset used, with its consent (TST-5)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id, "author": self.author, "purpose": self.purpose,
            "third_party": self.third_party, "template_hash": self.template_hash,
            "segment_hash": self.segment_hash, "classification": self.classification.as_dict(),
            "waivers": self.waivers, "lint_errors": self.lint_errors, "lint_warnings": self.lint_warnings,
            "segment_counts": self.segment_counts, "refusals": [r.as_dict() for r in self.refusals],
            "lint_reviews": self.lint_reviews,
            "assets": self.assets,
        }


def lint_findings(rt: Runtime, template: Path) -> list[Any]:
    """The static template lint (PHI-*, SPAM-*, DIS-*) with waivers applied."""
    from mailer.lint import lint_template_dir
    from mailer.sending import lint_settings

    return list(lint_template_dir(template, lint_settings(rt)))


def _finding_dict(f: Any) -> dict[str, Any]:
    d = {"code": f.code, "rule": f.rule, "severity": f.severity, "file": Path(str(f.path)).name, "line": f.line}
    if f.waived:
        d.update(reason=f.waiver_reason, waived_by=f.waiver_reviewer)
    return d


def classification_of(rt: Runtime, campaign: Campaign) -> tuple[Classification, list[Refusal]]:
    """Classify the campaign from its record, its segment and its template's sponsor line."""
    from mailer.segments import load_segment, plan_segment
    from mailer.templates import load_meta

    src = snapshots.source(rt, campaign)
    plan = plan_segment(load_segment(src.segment, rt.settings.fields))
    meta = load_meta(src.template)
    c = classify(from_campaign(campaign.purpose, third_party=campaign.third_party or plan.segment.third_party,
                               segment_scope=plan.segment.scope, targets_condition=bool(plan.clinical_fields),
                               sponsor=meta.get("sponsor")))
    refusals = list(c.refusals) + scope_refusals(c, segment_scope=plan.segment.scope,
                                                 segment_third_party=plan.segment.third_party,
                                                 campaign_third_party=campaign.third_party)
    return c, refusals


def review(rt: Runtime, campaign: Campaign, *, count: bool = True) -> ReviewPacket:
    """Build the review packet from the files as they are now."""
    from mailer.sending import check_segment

    th, sh = campaigns.current_hashes(campaign, rt)
    src = snapshots.source(rt, campaign)
    cls, refusals = classification_of(rt, campaign)
    from mailer.reviews import acks

    packet = ReviewPacket(campaign.id or 0, campaign.author, campaign.purpose, campaign.third_party, th, sh, cls)
    findings = lint_findings(rt, src.template)
    for f in findings:
        if f.waived:
            packet.waivers.append(_finding_dict(f))
        elif f.severity == "error":
            packet.lint_errors.append(_finding_dict(f))
        elif f.severity != "review":
            packet.lint_warnings.append(_finding_dict(f))
    items = acks.open_items(rt, campaign.id or 0, th, findings)
    packet.lint_reviews = [i.as_dict() for i in items]
    rules = list(dict.fromkeys(e["rule"] for e in packet.lint_errors))
    for rule in rules:
        codes = sorted({e["code"] for e in packet.lint_errors if e["rule"] == rule})
        refusals.append(Refusal(rule, f"template lint: {', '.join(codes)}",
                                f"fix the template (mailer lint {campaign.template}) or record a reviewed waiver"))
    pending = acks.refusal(items, campaign.id or 0)
    if pending is not None:
        refusals.append(pending)
    if count:
        _plan, counts, seg_refusals = check_segment(rt, src.segment)
        data = counts.as_dict()
        data.pop("refusals", None)
        packet.segment_counts = data
        refusals.extend(seg_refusals)
    from mailer.compliance import assets

    packet.assets = assets.packet(rt, src.template)  # the submitted snapshot's assets, with their consent
    refusals.extend(assets.template_refusals(rt, src.template))  # TST-5
    packet.refusals = refusals
    return packet


def _signed_in_as(rt: Runtime, reviewer: str, action: Action) -> None:
    """Defence in depth: when a principal is signed in (CLI, web, worker), the decision is
    taken as that account, which must hold the reviewer role (SEC-6), whatever name is passed."""
    p = rt.principal
    if p is None:
        return
    require(p, action)
    if reviewer.strip().lower() != p.name:
        raise StateError(f"the decision is recorded as the signed-in account ({p.name}), not {reviewer!r}",
                         rules=("SEC-1",))


def _refuse(rt: Runtime, campaign_id: int, actor: str, refusals: list[Refusal], what: str) -> None:
    rt.ledger.append([Event(kind=REFUSAL, outcome=what, campaign_id=campaign_id, actor=actor,
                            rule_ids=tuple(dict.fromkeys(r.rule for r in refusals)),
                            detail={"gate": "approval", "reasons": [r.reason for r in refusals]})])
    raise ComplianceRefusal(refusals)


def approve(rt: Runtime, campaign_id: int, *, reviewer: str, note: str = "") -> tuple[Approval, ReviewPacket]:
    """SEC-6: a second person approves exactly the content hashes in the packet."""
    _signed_in_as(rt, reviewer, Action.CAMPAIGN_APPROVE)
    c = campaigns.get(rt, campaign_id)
    if c.status != "submitted":
        raise StateError(f"campaign {campaign_id} is {c.status}; approve needs it to be submitted",
                         hint="the author submits it first: mailer campaign submit ID")
    if reviewer.strip().lower() == (c.author or "").strip().lower():
        _refuse(rt, campaign_id, reviewer, [Refusal(
            "SEC-6", f"the author's account ({reviewer}) cannot approve its own campaign",
            "another account with the reviewer role approves it")], "self-approval")
    from mailer.compliance import training

    training.check(rt, {"approver": reviewer, "author": c.author}, campaign_id=campaign_id, gate="approval")  # TRN-1
    packet = review(rt, c)
    if (packet.template_hash, packet.segment_hash) != (c.template_hash, c.segment_hash):
        _refuse(rt, campaign_id, reviewer, [Refusal(
            "SEC-6", "the template or segment changed after the campaign was submitted",
            "the author re-submits: mailer campaign submit ID")], "content-changed")
    if packet.refusals:
        _refuse(rt, campaign_id, reviewer, packet.refusals, "not-approvable")
    now = utcnow()
    with writing(rt.engine) as conn:
        aid = conn.execute(_A.insert().values(
            campaign_id=campaign_id, reviewer=reviewer, decision="approved", template_hash=packet.template_hash,
            segment_hash=packet.segment_hash, purpose=c.purpose,
            waivers_json=json.dumps(packet.waivers, sort_keys=True),
            segment_counts_json=json.dumps(packet.segment_counts, sort_keys=True),
            note=_note(note, packet), at=now)).inserted_primary_key[0]  # type: ignore[index]
        rt.ledger.append_in(conn, [Event(
            kind=APPROVAL, outcome="approved", campaign_id=campaign_id, actor=reviewer,
            template_hash=packet.template_hash,
            rule_ids=("SEC-6", *packet.classification.rules, *(w.rule for w in packet.classification.warnings)),
            detail={"approval_id": aid, "author": c.author, "segment_hash": packet.segment_hash,
                    "purpose": c.purpose, "classification": packet.classification.hipaa,
                    "commercial": packet.classification.commercial, "scope": packet.classification.scope,
                    "waivers": [{k: w[k] for k in ("code", "rule", "waived_by")} for w in packet.waivers],
                    "acknowledged": [{"finding": r["key"], "by": r["acknowledged_by"], "ledger_seq": r["ledger_seq"]}
                                     for r in packet.lint_reviews],
                    "segment_counts": {k: packet.segment_counts.get(k) for k in
                                       ("considered", "suppressed", "authorized", "matched")}})])
        campaigns.transition_in(rt, conn, campaign_id, "approve", actor=reviewer, detail={"approval_id": aid})
        row = conn.execute(select(_A).where(_A.c.id == aid)).one()
    return Approval(**row._asdict()), packet


def _note(note: str, packet: ReviewPacket) -> str:
    warn = "; ".join(f"WARN {w.rule} signed off" for w in packet.classification.warnings)
    return "; ".join(p for p in (note.strip(), warn) if p)[:1024]


def reject(rt: Runtime, campaign_id: int, *, reviewer: str, reason: str) -> Approval:
    """Send a submitted campaign back to draft with the reviewer's reason (no PHI, please)."""
    _signed_in_as(rt, reviewer, Action.CAMPAIGN_REJECT)
    c = campaigns.get(rt, campaign_id)
    th, sh = campaigns.current_hashes(c, rt)
    with writing(rt.engine) as conn:
        campaigns.transition_in(rt, conn, campaign_id, "reject", actor=reviewer, reason=reason)
        aid = conn.execute(_A.insert().values(
            campaign_id=campaign_id, reviewer=reviewer, decision="rejected", template_hash=th, segment_hash=sh,
            purpose=c.purpose, waivers_json="[]", segment_counts_json="{}", note=reason[:1024],
            at=utcnow())).inserted_primary_key[0]  # type: ignore[index]
        rt.ledger.append_in(conn, [Event(kind=APPROVAL, outcome="rejected", campaign_id=campaign_id,
                                         actor=reviewer, template_hash=th,
                                         detail={"approval_id": aid, "segment_hash": sh})])
        row = conn.execute(select(_A).where(_A.c.id == aid)).one()
    return Approval(**row._asdict())


def latest(rt: Runtime, campaign_id: int) -> Approval | None:
    with rt.engine.connect() as conn:
        row = conn.execute(select(_A).where(_A.c.campaign_id == campaign_id).order_by(_A.c.id.desc()).limit(1)).first()
    return Approval(**row._asdict()) if row is not None else None


def approval_refusals(campaign: Campaign, approval: Approval | None, current: tuple[str, str]) -> list[Refusal]:
    """Pure: is there a valid approval for this campaign's content as it is now? (SEC-6)"""
    th, sh = current
    if campaign.status not in campaigns.APPROVED_STATES:
        return [Refusal("SEC-6", f"campaign {campaign.id} is {campaign.status}, not approved",
                        "submit it, then a reviewer other than the author approves it")]
    if approval is None or approval.decision != "approved":
        return [Refusal("SEC-6", f"campaign {campaign.id} has no approval on record",
                        "a reviewer other than the author approves it")]
    out = []
    if approval.reviewer.strip().lower() == (campaign.author or "").strip().lower():
        out.append(Refusal("SEC-6", "the approval was given by the author's account",
                           "another account with the reviewer role approves it"))
    if approval.template_hash != th or campaign.template_hash != th:
        out.append(Refusal("SEC-6", f"template changed since approval {approval.id} "
                           f"(approved {approval.template_hash[:12]}, now {th[:12]})",
                           "re-submit and have the new content approved"))
    if approval.segment_hash != sh or campaign.segment_hash != sh:
        out.append(Refusal("SEC-6", f"segment file changed since approval {approval.id}",
                           "re-submit and have the new segment approved"))
    if approval.purpose != campaign.purpose:
        out.append(Refusal("SEC-6", "the campaign's purpose differs from the approved one", "re-submit for approval"))
    return out
