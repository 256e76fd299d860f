"""Validity of HIPAA authorizations (45 CFR 164.508) at a point in time: pure, no I/O.

Every decision that rests on an authorization (segment gate SEG-2, send-time re-check
SEG-3, purge AUTH-9) calls `is_valid` / `best_validity` here, so the rules AUTH-1..AUTH-9,
MKT-5, MKT-6 and SEG-5 are decided in exactly one place. Reasons name rule IDs and field
names only: never a patient value, a date tied to a patient, or a third party's name.

All datetimes are naive UTC (see `mailer.models.utcnow`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mailer.errors import RetentionRefusal
from mailer.refusal import Refusal

__all__ = [
    "MARKETING_SCOPES",
    "NO_EXPIRY_EVENTS",
    "RETENTION_YEARS",
    "SCOPES",
    "AuthorizationLike",
    "RetentionLike",
    "Status",
    "Validity",
    "best_validity",
    "check_purge",
    "is_valid",
    "retention_until",
]

#: Authorization scopes mailer knows. A record's `scope` must equal the scope a campaign
#: or segment relies on; there is no implied coverage between scopes.
SCOPES: tuple[str, ...] = (
    "condition-targeted-marketing",
    "third-party-marketing",
    "marketing",
    "testimonial",
)
#: Scopes a segment may rely on (a testimonial authorization covers the patient quoted,
#: not the recipients of the campaign).
MARKETING_SCOPES: tuple[str, ...] = (
    "condition-targeted-marketing",
    "third-party-marketing",
    "marketing",
)
#: Expirations that are valid only for research (AUTH-4); every mailer scope is marketing.
NO_EXPIRY_EVENTS = frozenset(
    {
        "none",
        "never",
        "no expiration",
        "no expiry",
        "end of study",
        "end of the study",
        "end of the research study",
        "end of research study",
    }
)
RESEARCH_SCOPES = frozenset({"research"})
RETENTION_YEARS = 6  # AUTH-9: 164.508(b)(6), 164.530(j)(2)


class AuthorizationLike(Protocol):
    """The attributes validity depends on: a decrypted record
    (`mailer.store.auth_records.AuthorizationRecord`), never a stored row, whose text
    elements are ciphertext (SEC-4)."""

    @property
    def id(self) -> int | None: ...
    @property
    def scope(self) -> str: ...
    @property
    def information_description(self) -> str: ...
    @property
    def discloser(self) -> str: ...
    @property
    def recipients(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def expiration_event(self) -> str | None: ...
    @property
    def expiration_event_occurred_at(self) -> datetime | None: ...
    @property
    def signed_at(self) -> datetime | None: ...
    @property
    def signature_present(self) -> bool: ...
    @property
    def statement_revocation(self) -> bool: ...
    @property
    def statement_conditioning(self) -> bool: ...
    @property
    def statement_redisclosure(self) -> bool: ...
    @property
    def plain_language(self) -> bool: ...
    @property
    def copy_provided(self) -> bool: ...
    @property
    def signer(self) -> str: ...
    @property
    def representative_authority(self) -> str | None: ...
    @property
    def compound(self) -> bool: ...
    @property
    def treatment_conditioned(self) -> bool: ...
    @property
    def known_false(self) -> bool: ...
    @property
    def remuneration(self) -> bool: ...
    @property
    def remuneration_statement(self) -> bool: ...
    @property
    def third_party(self) -> str | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


class RetentionLike(Protocol):
    """What AUTH-9 retention depends on: ids and dates only, never the text elements, so a
    purge decides without decrypting anything (minimum necessary)."""

    @property
    def id(self) -> int | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def expiration_event_occurred_at(self) -> datetime | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


class Status(StrEnum):
    """Closed vocabulary of outcomes; the non-valid values are the reviewer's exclusion keys."""

    VALID = "valid"
    NONE = "none"
    EXPIRED = "expired"
    REVOKED = "revoked"
    INCOMPLETE = "incomplete"
    DEFECTIVE = "defective"
    SCOPE = "scope"
    THIRD_PARTY = "third-party"


#: Most decisive first: the status reported when several rules fail. A record for another
#: scope is irrelevant whatever its state, so SCOPE leads; then facts that end any
#: authorization (revoked, expired), then "not signed yet at that time", then defects of
#: the form itself, then the paid-campaign checks.
PRECEDENCE: tuple[Status, ...] = (
    Status.SCOPE,
    Status.REVOKED,
    Status.EXPIRED,
    Status.NONE,
    Status.DEFECTIVE,
    Status.INCOMPLETE,
    Status.THIRD_PARTY,
)


@dataclass(frozen=True)
class Validity:
    """Outcome of a validity check: the decisive status plus every failing rule and why."""

    status: Status
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()  # no PHI: rule IDs and field names only

    @property
    def valid(self) -> bool:
        return self.status is Status.VALID

    def as_dict(self) -> dict[str, object]:
        return {
            "status": str(self.status),
            "rules": list(self.rules),
            "reasons": list(self.reasons),
        }


VALID = Validity(Status.VALID)


def _blank(value: str | None) -> bool:
    return value is None or not str(value).strip()


def _norm(value: str | None) -> str:
    """Case- and space-insensitive form for comparing scopes, events and party names."""
    return re.sub(r"\s+", " ", str(value or "")).strip().rstrip(".").casefold()


def is_valid(
    auth: AuthorizationLike | None,
    scope: str,
    at: datetime,
    third_party: str | None = None,
) -> Validity:
    """Whether `auth` lets mailer use PHI for `scope` at time `at` (naive UTC).

    `third_party` is the sponsor of a paid campaign (MKT-3): the authorization must then
    state remuneration (MKT-6) and name that sponsor (SEG-5). Every failing rule is
    reported; `status` is the most decisive one (see PRECEDENCE).
    """
    if auth is None:
        return Validity(
            Status.NONE, ("MKT-5",), ("MKT-5: no authorization on file for this scope",)
        )

    failures: list[tuple[Status, str, str]] = []

    def fail(status: Status, rule: str, reason: str) -> None:
        failures.append((status, rule, f"{rule}: {reason}"))

    if _norm(auth.scope) != _norm(scope):
        fail(Status.SCOPE, "AUTH-6", "authorization is for another scope than the one required")

    # AUTH-7: a written revocation is effective when received, for every unsent message.
    if auth.revoked_at is not None and auth.revoked_at <= at:
        fail(Status.REVOKED, "AUTH-7", "revoked (revocation received at or before evaluation time)")
    # AUTH-5 (b)(2)(i): expiration date passed or expiration event known to have occurred.
    if auth.expires_at is not None and auth.expires_at <= at:
        fail(Status.EXPIRED, "AUTH-5", "expiration date reached at or before evaluation time")
    if auth.expiration_event_occurred_at is not None and auth.expiration_event_occurred_at <= at:
        fail(Status.EXPIRED, "AUTH-5", "expiration event known to have occurred")
    if auth.signed_at is not None and auth.signed_at > at:
        fail(Status.NONE, "MKT-5", "not yet signed at evaluation time")

    # AUTH-4: "none" / "end of study" is valid only for research.
    if (
        not _blank(auth.expiration_event)
        and _norm(auth.expiration_event) in NO_EXPIRY_EVENTS
        and _norm(scope) not in RESEARCH_SCOPES
    ):
        fail(
            Status.DEFECTIVE,
            "AUTH-4",
            "expiration 'none' or 'end of study' is valid only for research",
        )
    # AUTH-5 (b)(3)-(4): compound, conditioned on treatment, known false.
    if auth.compound:
        fail(Status.DEFECTIVE, "AUTH-5", "compound authorization (combined with another document)")
    if auth.treatment_conditioned:
        fail(Status.DEFECTIVE, "AUTH-5", "treatment conditioned on signing")
    if auth.known_false:
        fail(Status.DEFECTIVE, "AUTH-5", "known to contain false material information")

    # AUTH-1: six core elements, none empty.
    missing = [
        name
        for name in ("information_description", "discloser", "recipients", "purpose")
        if _blank(getattr(auth, name))
    ]
    if auth.expires_at is None and _blank(auth.expiration_event):
        missing.append("expires_at/expiration_event")
    if not auth.signature_present:
        missing.append("signature_present")
    if auth.signed_at is None:
        missing.append("signed_at")
    if missing:
        fail(Status.INCOMPLETE, "AUTH-1", "missing core element(s): " + ", ".join(missing))
    # AUTH-2: the three required statements.
    statements = [
        name
        for name in ("statement_revocation", "statement_conditioning", "statement_redisclosure")
        if not getattr(auth, name)
    ]
    if statements:
        fail(Status.INCOMPLETE, "AUTH-2", "missing required statement(s): " + ", ".join(statements))
    # AUTH-3: plain language, copy given.
    if not auth.plain_language:
        fail(Status.INCOMPLETE, "AUTH-3", "not written in plain language")
    if not auth.copy_provided:
        fail(Status.INCOMPLETE, "AUTH-3", "no record that a copy was given to the individual")
    # AUTH-8: anyone but the patient signing must show their authority.
    if _norm(auth.signer) != "patient" and _blank(auth.representative_authority):
        fail(
            Status.INCOMPLETE,
            "AUTH-8",
            "signed by a representative without a description of authority",
        )

    # MKT-6 applies to EVERY authorization that involves remuneration, whatever the scope
    # (164.508(a)(3)(ii)): one that records remuneration without stating it to the patient
    # is missing a required statement, so it is valid for nothing (issue 17).
    if auth.remuneration and not auth.remuneration_statement:
        fail(
            Status.THIRD_PARTY if third_party is not None else Status.INCOMPLETE,
            "MKT-6",
            "remuneration is involved, but the authorization does not state it",
        )
    if third_party is not None:
        # MKT-6: a paid campaign needs an authorization that states remuneration.
        if not auth.remuneration:
            fail(
                Status.THIRD_PARTY,
                "MKT-6",
                "paid campaign, but the authorization does not state remuneration",
            )
        # SEG-5: ... and that names the paying third party.
        if _blank(auth.third_party) or _norm(auth.third_party) != _norm(third_party):
            fail(
                Status.THIRD_PARTY,
                "SEG-5",
                "authorization does not name the campaign's third party",
            )

    if not failures:
        return VALID
    status = min((s for s, _, _ in failures), key=PRECEDENCE.index)
    rules = tuple(dict.fromkeys(rule for _, rule, _ in failures))
    reasons = tuple(reason for _, _, reason in failures)
    return Validity(status, rules, reasons)


def _recency(auth: AuthorizationLike) -> tuple[datetime, int]:
    return (auth.signed_at or auth.created_at or datetime.min, auth.id or 0)


def best_validity(
    auths: Iterable[AuthorizationLike],
    scope: str,
    at: datetime,
    third_party: str | None = None,
) -> tuple[Validity, AuthorizationLike | None]:
    """The decisive validity among a contact's records, and the record it comes from.

    A contact may hold several records (renewals, other scopes). Any valid one for the
    scope wins (the most recently signed). Otherwise the reason reported is that of the
    most recent record for the scope, since that is the current state of affairs; records
    for other scopes only explain the exclusion when none exists for this scope.
    """
    records = list(auths)
    if not records:
        return is_valid(None, scope, at, third_party), None
    matching = [a for a in records if _norm(a.scope) == _norm(scope)]
    if not matching:
        latest = max(records, key=_recency)
        return is_valid(latest, scope, at, third_party), latest
    results = [(is_valid(a, scope, at, third_party), a) for a in matching]
    valid = [r for r in results if r[0].valid]
    if valid:
        return max(valid, key=lambda r: _recency(r[1]))
    signed = [r for r in results if r[0].status is not Status.NONE] or results
    return max(signed, key=lambda r: _recency(r[1]))


def _add_years(moment: datetime, years: int) -> datetime:
    """`moment` plus whole calendar years; Feb 29 rolls to Mar 1 (the later, stricter day)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, month=3, day=1)


def retention_until(auth: RetentionLike) -> datetime:
    """End of the AUTH-9 retention period: 6 years from creation or from the date the
    authorization was last in effect, whichever is later.

    The last effective date is the earliest of revocation, expiration date and expiration
    event. An authorization still in effect (no end known) has no end of retention yet:
    `datetime.max` is returned so that every purge is refused.
    """
    ends = [
        t
        for t in (auth.revoked_at, auth.expires_at, auth.expiration_event_occurred_at)
        if t is not None
    ]
    if not ends:
        return datetime.max
    last_effective = min(ends)
    return _add_years(max(auth.created_at, last_effective), RETENTION_YEARS)


def check_purge(auth: RetentionLike, at: datetime) -> None:
    """Refuse (AUTH-9, exit 3) to purge an authorization inside its retention period."""
    if at < retention_until(auth):
        ids = (auth.id,) if auth.id is not None else ()
        raise RetentionRefusal(
            [
                Refusal(
                    rule="AUTH-9",
                    reason=(
                        f"authorization {auth.id} is inside its {RETENTION_YEARS}-year retention "
                        "period (from creation or last effective date, whichever is later)"
                    ),
                    fix="keep the record; it may be purged once the retention period has ended",
                    count=1,
                    ids=ids,
                )
            ]
        )
