"""Acknowledging `review` lint findings at approval (issue 13, SEC-6).

A `review` finding (a testimonial, a patient image, an organization's phone number, a
paid block...) does not block on its own, but approval refuses until a reviewer other
than the author has acknowledged each one with a reason. An acknowledgement is a ledger
entry (kind `approval`, outcome `acknowledged`) bound to the template's content hash, so:

- it is tamper-evident and lands in the evidence package with the other approval entries;
- a content edit changes the hash and re-opens every finding (the old entries stay in the
  ledger, for the record, but no longer count).

A finding is named by its key `file:line:code` (no template text); `mailer campaign
review ID` lists the keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mailer.errors import ComplianceRefusal, InputError
from mailer.ledger import APPROVAL, Event
from mailer.refusal import Refusal

ACKNOWLEDGED = "acknowledged"
MAX_REASON = 500


@dataclass(frozen=True)
class ReviewItem:
    key: str  # file:line:code
    code: str
    rule: str
    file: str
    line: int
    message: str
    acknowledged_by: str | None = None
    reason: str | None = None
    seq: int | None = None  # the ledger entry that acknowledged it

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "code": self.code, "rule": self.rule, "file": self.file,
                             "line": self.line, "message": self.message, "acknowledged": self.acknowledged_by is not None}
        if self.acknowledged_by is not None:
            d.update(acknowledged_by=self.acknowledged_by, reason=self.reason, ledger_seq=self.seq)
        return d


def review_items(findings: Iterable[Any]) -> list[ReviewItem]:
    """The `review` findings no waiver covers, one item per key (pure)."""
    items: dict[str, ReviewItem] = {}
    for f in findings:
        if f.severity != "review" or f.waived:
            continue
        items.setdefault(f.key, ReviewItem(f.key, f.code, f.rule, Path(str(f.path)).name, f.line, f.message))
    return list(items.values())


def _acks(rt: Any, campaign_id: int, template_hash: str) -> dict[str, tuple[str, str, int]]:
    """key -> (actor, reason, seq) of acknowledgements recorded for this exact content."""
    from mailer.ledger_query import Filters, entries

    out: dict[str, tuple[str, str, int]] = {}
    for row in entries(rt.ledger, Filters(campaign_id=campaign_id, kinds=(APPROVAL,), outcomes=(ACKNOWLEDGED,))):
        m = row._mapping
        if m["template_hash"] != template_hash:
            continue  # acknowledged for other content: a content edit re-opens the finding
        detail = m["detail"]
        detail = json.loads(detail) if isinstance(detail, str) and detail else (detail or {})
        key = detail.get("finding")
        if key:
            out[key] = (m["actor"] or "", detail.get("reason", ""), m["seq"])
    return out


def open_items(rt: Any, campaign_id: int, template_hash: str, findings: Iterable[Any]) -> list[ReviewItem]:
    """Every review item with its acknowledgement, if one was recorded for this content."""
    acks = _acks(rt, campaign_id, template_hash)
    out = []
    for item in review_items(findings):
        got = acks.get(item.key)
        out.append(replace(item, acknowledged_by=got[0], reason=got[1], seq=got[2]) if got else item)
    return out


def refusal(items: list[ReviewItem], campaign_id: int) -> Refusal | None:
    """The approval refusal while any item is unacknowledged (pure)."""
    pending = [i for i in items if i.acknowledged_by is None]
    if not pending:
        return None
    rules = sorted({i.rule for i in pending})
    keys = ", ".join(i.key for i in pending[:5]) + (" ..." if len(pending) > 5 else "")
    return Refusal(rules[0], f"{len(pending)} lint review finding(s) not acknowledged ({', '.join(rules)}): {keys}",
                   f"a reviewer acknowledges each: mailer campaign acknowledge {campaign_id} KEY --reason TEXT")


def acknowledge(rt: Any, campaign_id: int, key: str, *, actor: str, reason: str) -> ReviewItem:
    """Record ACTOR's acknowledgement of finding KEY, with REASON, for the content as it is now."""
    from mailer import campaigns, snapshots
    from mailer.approvals import lint_findings

    reason = " ".join(reason.split())
    if not reason:
        raise InputError("an acknowledgement needs a reason", hint="add --reason \"why this is fine\" (no PHI)")
    if len(reason) > MAX_REASON:
        raise InputError(f"the reason is longer than {MAX_REASON} characters", hint="shorten it")
    c = campaigns.get(rt, campaign_id)
    if actor.strip().lower() == (c.author or "").strip().lower():
        raise ComplianceRefusal([Refusal("SEC-6", f"the author ({actor}) cannot acknowledge review findings "
                                         "of their own campaign", "a reviewer other than the author acknowledges them")])
    template_hash, _segment_hash = campaigns.current_hashes(c, rt)
    template = snapshots.source(rt, c).template  # the submitted content, from any folder (issue 15)
    items = {i.key: i for i in open_items(rt, campaign_id, template_hash, lint_findings(rt, template))}
    item = items.get(key)
    if item is None:
        known = ", ".join(items) or "none"
        raise InputError(f"no review finding {key!r} in campaign {campaign_id}'s template as it is now",
                         hint=f"the open keys are: {known} (mailer campaign review {campaign_id})")
    (seq,) = rt.ledger.append([Event(kind=APPROVAL, outcome=ACKNOWLEDGED, campaign_id=campaign_id, actor=actor,
                                     template_hash=template_hash, rule_ids=(item.rule,),
                                     detail={"finding": key, "code": item.code, "reason": reason})])
    return replace(item, acknowledged_by=actor, reason=reason, seq=seq)
