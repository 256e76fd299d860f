"""From a parsed report and what the database knows to a decision. Pure.

A report acts on a delivery only when it names one of ours, by the return-path token
(looked up by its hash) or by our Message-ID (the delivery's primary key plus 128 random
bits that must match), and when the recipient it reports is that delivery's recipient:
the same lookup hash, or for a feedback report (whose providers redact the local part)
the same domain. Anything else changes nothing: rejected as forged, or kept for review.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mailer.bounces.parse import ACTIONABLE, REJECTED, Report

APPLY, REVIEW, REJECT = "apply", "review", "rejected"


@dataclass(frozen=True)
class Target:
    """The delivery a report answers, as the database has it."""

    delivery_id: int
    campaign_id: int
    contact_id: int | None
    email_hash: str
    message_id: str = ""  # set when found by Message-ID: compared in constant time


@dataclass(frozen=True)
class Decision:
    action: str  # apply | review | rejected
    reason: str = ""
    target: Target | None = None
    klass: str = ""
    status: str = ""

    @property
    def event_key(self) -> str:
        """A delivery has one event per class: the same DSN twice is one event."""
        assert self.target is not None
        return hashlib.sha256(f"{self.target.delivery_id}:{self.klass}".encode()).hexdigest()


def decide(report: Report, *, by_token: Mapping[str, Target], by_delivery: Mapping[int, Target],
           token_hash: Callable[[str], str], recipient_hashes: Callable[[Report, str], bool],
           recipient_domain_matches: Callable[[Report, Target], bool]) -> Decision:
    if report.kind in REJECTED:
        return Decision(REJECT, f"{report.kind}: {report.reason}")
    if report.kind not in ACTIONABLE:
        return Decision(REVIEW, report.reason or report.kind, klass=report.kind, status=report.status)
    target = next((by_token[h] for h in (token_hash(t) for t in report.tokens) if h in by_token), None)
    if target is None:
        for _campaign, delivery, mid in report.message_ids:
            t = by_delivery.get(delivery)
            if t is not None and hmac.compare_digest(t.message_id.encode(), mid.encode()):
                target = t
                break
    if target is None:
        if report.tokens:
            return Decision(REJECT, "forged: unknown return-path token", klass=report.kind)
        if report.message_ids:
            return Decision(REJECT, "forged: unknown Message-ID", klass=report.kind)
        return Decision(REVIEW, "names no message of ours", klass=report.kind, status=report.status)
    if report.recipients:
        if not recipient_hashes(report, target.email_hash) and not (
                report.redacted_ok and recipient_domain_matches(report, target)):
            return Decision(REJECT, "forged: reported recipient is not the delivery's", klass=report.kind)
    return Decision(APPLY, target=target, klass=report.kind, status=report.status)
