"""The quarterly review of the ledger: campaigns, sends, skips and refusals by rule,
unsubscribes, authorization events and approvals (164.308(a)(1)(ii)(D) information
system activity review; SEC-5). Counts come from GROUP BY queries over the quarter's
entries, so the report never holds the entries themselves.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from mailer.errors import InputError
from mailer.ledger import (
    ACCESS,
    APPROVAL,
    AUTHORIZATION,
    BOUNCE,
    CONTACT_IMPORT,
    DATA_EXPORT,
    KEY_ROTATION,
    REFUSAL,
    SEND,
    SKIP,
    UNSUBSCRIBE,
    Ledger,
    Verification,
)
from mailer.models import Campaign, LedgerEntry

_T = LedgerEntry.__table__  # type: ignore[attr-defined]
_C = Campaign.__table__  # type: ignore[attr-defined]
_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)


def parse_quarter(text: str) -> tuple[str, datetime, datetime]:
    """'2026Q3' -> ('2026Q3', 2026-07-01, 2026-10-01): the end is exclusive, times naive UTC."""
    m = _QUARTER.match(text.strip())
    if not m:
        raise InputError(f"{text!r} is not a quarter", hint="e.g. 2026Q3")
    year, q = int(m.group(1)), int(m.group(2))
    start = datetime(year, 3 * q - 2, 1)
    end = datetime(year + 1, 1, 1) if q == 4 else datetime(year, 3 * q + 1, 1)
    return f"{year}Q{q}", start, end


@dataclass
class CampaignLine:
    id: int
    name: str
    purpose: str
    status: str
    sends: dict[str, int] = field(default_factory=dict)  # outcome -> entries
    skipped: int = 0
    refusals: int = 0
    bounces: dict[str, int] = field(default_factory=dict)  # hard, soft, complaint, bounce (SMTP reply)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "purpose": self.purpose, "status": self.status,
                "sends": self.sends, "skipped": self.skipped, "refusals": self.refusals, "bounces": self.bounces}


@dataclass
class QuarterReport:
    quarter: str
    start: datetime
    end: datetime
    entries: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    campaigns: list[CampaignLine] = field(default_factory=list)
    sends_by_outcome: dict[str, int] = field(default_factory=dict)
    skips_by_rule: dict[str, int] = field(default_factory=dict)
    refusals_by_rule: dict[str, int] = field(default_factory=dict)
    unsubscribes: dict[str, int] = field(default_factory=dict)  # outcome (reason) -> count
    bounces: dict[str, int] = field(default_factory=dict)
    complaints_by_campaign: dict[int, int] = field(default_factory=dict)  # flagged for the reviewer (STD-7)
    authorization_events: dict[str, int] = field(default_factory=dict)  # imported, revoked, ...
    approvals: dict[str, int] = field(default_factory=dict)  # approved, rejected
    approvers: dict[str, int] = field(default_factory=dict)  # actor -> decisions
    contact_imports: int = 0
    data_exports: int = 0
    key_rotations: int = 0
    access: dict[str, int] = field(default_factory=dict)  # sign-ins, failures, lockouts, tokens, accounts
    failed_sign_ins: dict[str, int] = field(default_factory=dict)  # account (or "unknown") -> failures
    verification: Verification | None = None
    head_seq: int = 0  # the ledger's newest entry when the report was made: an auditor keeps it (SEC-5)
    head_hash: str = ""
    complaints: dict[str, Any] = field(default_factory=dict)  # CMP-1 counts and open items (issue 17)

    def as_dict(self) -> dict[str, Any]:
        return {
            "quarter": self.quarter, "start": self.start.isoformat(), "end_exclusive": self.end.isoformat(),
            "entries": self.entries, "by_kind": self.by_kind,
            "campaigns": [c.as_dict() for c in self.campaigns],
            "sends_by_outcome": self.sends_by_outcome, "skips_by_rule": self.skips_by_rule,
            "refusals_by_rule": self.refusals_by_rule, "unsubscribes": self.unsubscribes,
            "bounces": self.bounces, "complaints_by_campaign": self.complaints_by_campaign,
            "authorization_events": self.authorization_events,
            "approvals": self.approvals, "approvers": self.approvers,
            "contact_imports": self.contact_imports, "data_exports": self.data_exports,
            "key_rotations": self.key_rotations, "access": self.access, "failed_sign_ins": self.failed_sign_ins,
            "verification": self.verification.as_dict() if self.verification else None,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "complaints": self.complaints,
        }


def _by_rule(pairs: list[tuple[str, int]]) -> dict[str, int]:
    """rule_ids is a comma list per entry: count each rule once per entry."""
    c: Counter[str] = Counter()
    for rules, n in pairs:
        for r in (rules or "-").split(","):
            c[r or "-"] += n
    return dict(sorted(c.items()))


def build_report(ledger: Ledger, quarter: str, *, verify: bool = True) -> QuarterReport:
    name, start, end = parse_quarter(quarter)
    rep = QuarterReport(name, start, end)
    in_q = (_T.c.at >= start, _T.c.at < end)
    with ledger.engine.connect() as conn:
        kinds = conn.execute(select(_T.c.kind, _T.c.outcome, func.count()).where(*in_q)
                             .group_by(_T.c.kind, _T.c.outcome)).all()
        rules = conn.execute(select(_T.c.kind, _T.c.rule_ids, _T.c.relay, func.count())
                             .where(*in_q, _T.c.kind.in_((SKIP, REFUSAL)))
                             .group_by(_T.c.kind, _T.c.rule_ids, _T.c.relay)).all()
        approvers = conn.execute(select(_T.c.actor, func.count()).where(*in_q, _T.c.kind == APPROVAL)
                                 .group_by(_T.c.actor)).all()
        failures = conn.execute(select(_T.c.actor, func.count()).where(
            *in_q, _T.c.kind == ACCESS, _T.c.outcome.in_(("sign-in-failed", "token-refused", "locked-out")))
            .group_by(_T.c.actor)).all()
        per_campaign = conn.execute(select(_T.c.campaign_id, _T.c.kind, _T.c.outcome, func.count())
                                    .where(*in_q, _T.c.campaign_id.is_not(None))
                                    .group_by(_T.c.campaign_id, _T.c.kind, _T.c.outcome)).all()
        ids = sorted({r[0] for r in per_campaign})
        info = {r.id: r for r in conn.execute(select(_C.c.id, _C.c.name, _C.c.purpose, _C.c.status)
                                              .where(_C.c.id.in_(ids)))} if ids else {}
    grouped: dict[str, dict[str, int]] = {}
    for kind, outcome, n in kinds:
        rep.entries += n
        rep.by_kind[kind] = rep.by_kind.get(kind, 0) + n
        grouped.setdefault(kind, {})
        key = outcome or "-"
        grouped[kind][key] = grouped[kind].get(key, 0) + n
    rep.by_kind = dict(sorted(rep.by_kind.items()))
    rep.sends_by_outcome = dict(sorted(grouped.get(SEND, {}).items()))
    rep.unsubscribes = grouped.get(UNSUBSCRIBE, {})
    rep.bounces = grouped.get(BOUNCE, {})
    rep.authorization_events = dict(sorted(grouped.get(AUTHORIZATION, {}).items()))
    rep.approvals = dict(sorted(grouped.get(APPROVAL, {}).items()))
    rep.contact_imports = rep.by_kind.get(CONTACT_IMPORT, 0)
    rep.data_exports = rep.by_kind.get(DATA_EXPORT, 0)
    rep.key_rotations = rep.by_kind.get(KEY_ROTATION, 0)
    rep.access = dict(sorted(grouped.get(ACCESS, {}).items()))
    rep.failed_sign_ins = dict(sorted((a or "unknown account", n) for a, n in failures))
    rep.skips_by_rule = _by_rule([(r, n) for k, r, _relay, n in rules if k == SKIP])
    # a refusal of the relay itself (TLS-1..3 at connect) names the relay it refused
    rep.refusals_by_rule = _by_rule([(",".join(f"{x} relay {relay}" if relay else x for x in (r or "-").split(",")), n)
                                     for k, r, relay, n in rules if k == REFUSAL])
    rep.approvers = {a or "-": n for a, n in approvers}
    lines: dict[int, CampaignLine] = {}
    for cid, kind, outcome, n in per_campaign:
        c = info.get(cid)
        line = lines.setdefault(cid, CampaignLine(cid, c.name if c else "(unknown)", c.purpose if c else "",
                                                  c.status if c else ""))
        if kind == SEND:
            line.sends[outcome or "-"] = line.sends.get(outcome or "-", 0) + n
        elif kind == SKIP:
            line.skipped += n
        elif kind == REFUSAL:
            line.refusals += n
        elif kind == BOUNCE:
            line.bounces[outcome or "-"] = line.bounces.get(outcome or "-", 0) + n
            if outcome == "complaint":
                rep.complaints_by_campaign[cid] = rep.complaints_by_campaign.get(cid, 0) + n
    rep.campaigns = [lines[k] for k in sorted(lines)]
    if verify:
        rep.verification = ledger.verify()
    if rep.verification is not None and rep.verification.ok:
        rep.head_seq, rep.head_hash = rep.verification.last_seq, rep.verification.last_hash
    else:
        head = ledger.checkpoints().get("head")
        if head is not None:
            rep.head_seq, rep.head_hash = head.seq, head.entry_hash
    return rep


def render_text(rep: QuarterReport) -> str:
    """Plain text for a reviewer; ids, counts and rule IDs only."""
    out: list[str] = []
    add = out.append
    last_day = rep.end.date().fromordinal(rep.end.date().toordinal() - 1)
    add(f"Ledger review {rep.quarter}: {rep.start.date()} to {last_day} (UTC), {rep.entries} entries")
    v = rep.verification
    if v is not None:
        add(f"Chain: {'intact' if v.ok else 'BROKEN'}; {v.entries} entries verified"
            + ("" if v.ok else f"; first broken entry {v.first_bad_seq}: {v.problem}")
            + (f" (entries 1..{v.anchor_seq} purged under AUTH-9)" if v.anchor_seq else ""))
    if rep.head_hash:
        add(f"Ledger head entry {rep.head_seq} {rep.head_hash} (keep this line: `mailer ledger verify` "
            "must later show this entry unchanged)")

    def section(title: str, data: dict[str, int]) -> None:
        add("")
        add(f"{title}: {sum(data.values())}")
        for k, n in data.items():
            add(f"  {k:<32} {n:>8}")

    add("")
    add(f"Campaigns with activity: {len(rep.campaigns)}")
    if rep.campaigns:
        add(f"  {'id':>5}  {'purpose':<30} {'status':<10} {'sent':>7} {'failed':>7} {'deferred':>8} "
            f"{'uncertain':>9} {'skipped':>7} {'refusals':>8} {'bounced':>7} {'complaints':>10}  name")
        for c in rep.campaigns:
            s = c.sends
            add(f"  {c.id:>5}  {c.purpose:<30} {c.status:<10} {s.get('sent', 0):>7} {s.get('failed', 0):>7} "
                f"{s.get('deferred', 0):>8} {s.get('uncertain', 0):>9} {c.skipped:>7} {c.refusals:>8} "
                f"{sum(v for k, v in c.bounces.items() if k in ('hard', 'soft', 'bounce')):>7} "
                f"{c.bounces.get('complaint', 0):>10}  {c.name}")
    section("Send attempts by outcome", rep.sends_by_outcome)
    section("Skips by rule (an entry may cite several)", rep.skips_by_rule)
    section("Refusals by rule", rep.refusals_by_rule)
    section("Unsubscribes", rep.unsubscribes)
    section("Bounces and complaints (hard, soft, complaint; review and rejected: kept aside)", rep.bounces)
    if rep.complaints_by_campaign:
        add("  FLAG: spam complaints (STD-7) in campaign(s) "
            + ", ".join(f"{cid} ({n})" for cid, n in sorted(rep.complaints_by_campaign.items())))
    section("Authorization events", rep.authorization_events)
    section("Approvals and rejections", rep.approvals)
    if rep.approvers:
        add("  by reviewer: " + ", ".join(f"{a} {n}" for a, n in sorted(rep.approvers.items())))
    section("Access: sign-ins, failures, lockouts, tokens, account changes (SEC-1, SEC-5)", rep.access)
    if rep.failed_sign_ins:
        add("  refused sign-ins and tokens by account: "
            + ", ".join(f"{a} {n}" for a, n in rep.failed_sign_ins.items()))
    add("")
    add(f"Contact imports: {rep.contact_imports}   Data exports: {rep.data_exports}   "
        f"Key rotations: {rep.key_rotations}")
    if rep.complaints:  # CMP-1 (issue 17)
        cp = rep.complaints
        section("Complaints and privacy concerns received", cp.get("by_category", {}))
        add(f"  resolved in the quarter: {cp.get('resolved_in_quarter', 0)}; open at its end: {len(cp.get('open_at_end', []))}")
        for o in cp.get("open_at_end", []):
            add(f"    open: complaint {o['id']} {o['category']} received {o['received'][:10]} ({o['age_days']} days)")
    return "\n".join(out) + "\n"
