"""The closed vocabulary of campaign purposes, shared by templates, lint and classification."""

from __future__ import annotations

PURPOSES: tuple[str, ...] = (
    "newsletter",
    "service-announcement",
    "health-education",
    "appointment-reminder",
    "condition-targeted-marketing",
    "third-party-marketing",
)
# SPAM-3 / MKT-1: always marketing, so always labelled as advertisements.
MARKETING_PURPOSES = frozenset({"condition-targeted-marketing", "third-party-marketing"})
# SPAM-0 / DIS-2: everything but a transactional reminder may be commercial.
TRANSACTIONAL_PURPOSES = frozenset({"appointment-reminder"})
