"""Preflight: every gate a campaign must pass before a message leaves (issue 8 fills this in)."""

from __future__ import annotations

from mailer.models import Campaign
from mailer.runtime import Runtime


def require(rt: Runtime, campaign: Campaign) -> None:
    """Raise ComplianceRefusal naming each failing gate's rule ID and fix."""
    return None
