"""Authorization validity (AUTH-1..AUTH-9, MKT-5, MKT-6, SEG-5) and retention (AUTH-9).

Covers rules.md §8 items 1-5 and 24, plus property tests over times around expiry and
revocation.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.authorizations import (
    SCOPES,
    Status,
    Validity,
    best_validity,
    check_purge,
    is_valid,
    retention_until,
)
from mailer.errors import EXIT_REFUSED, ComplianceRefusal, RetentionRefusal, exit_code
from mailer.store.auth_records import AuthorizationRecord

SCOPE = "condition-targeted-marketing"

COMPLETE: dict[str, Any] = {
    "id": 7,
    "contact_id": 1,
    "scope": SCOPE,
    "information_description": "conditions, procedures and last exam date",
    "discloser": "Example Imaging Center",
    "recipients": "Example Imaging Center and its email service provider",
    "purpose": "email about services related to the patient's conditions",
    "expires_at": datetime(2026, 1, 1),
    "expiration_event": None,
    "signed_at": datetime(2024, 1, 10, 9, 30),
    "signature_present": True,
    "statement_revocation": True,
    "statement_conditioning": True,
    "statement_redisclosure": True,
    "plain_language": True,
    "copy_provided": True,
    "signer": "patient",
    "created_at": datetime(2024, 1, 10, 9, 30),
}


def auth(**overrides: Any) -> AuthorizationRecord:
    """A complete, valid authorization (as the store decrypts it), with the given fields changed."""
    return AuthorizationRecord(**{**COMPLETE, **overrides})


AT = datetime(2025, 6, 1, 12, 0)


def test_complete_authorization_is_valid() -> None:
    v = is_valid(auth(), SCOPE, AT)
    assert v.valid and v.status is Status.VALID
    assert v.rules == () and v.reasons == ()


def test_no_authorization_is_none_mkt5() -> None:
    v = is_valid(None, SCOPE, AT)
    assert v.status is Status.NONE and not v.valid
    assert v.rules == ("MKT-5",)


def test_other_scope_is_scope_mismatch() -> None:
    v = is_valid(auth(scope="testimonial"), SCOPE, AT)
    assert v.status is Status.SCOPE
    assert "AUTH-6" in v.rules


def test_scope_compare_ignores_case_and_spaces() -> None:
    assert is_valid(auth(scope=" Condition-Targeted-Marketing "), SCOPE, AT).valid


# --- §8 item 1: expiry at the moment of sending ------------------------------------------

JUL1 = datetime(2025, 7, 1)


@pytest.mark.parametrize(
    ("at", "valid"),
    [
        (datetime(2025, 6, 30, 0, 0), True),
        (datetime(2025, 6, 30, 23, 59, 59, 999999), True),
        (datetime(2025, 7, 1, 0, 0), False),
        (datetime(2025, 7, 1, 0, 0, 0, 1), False),
        (datetime(2025, 7, 2, 9, 0), False),
    ],
    ids=["jun30-start", "jun30-last-microsecond", "jul1-midnight", "jul1-after", "jul2"],
)
def test_item1_expiry_during_campaign(at: datetime, valid: bool) -> None:
    """Campaign Jun 30 - Jul 2; authorization expires Jul 1 00:00 (rules §8 item 1)."""
    v = is_valid(auth(expires_at=JUL1), SCOPE, at)
    assert v.valid is valid
    if not valid:
        assert v.status is Status.EXPIRED
        assert v.rules == ("AUTH-5",)


def test_item1_scheduling_time_does_not_matter() -> None:
    """Checked at send time: valid when scheduled (Jun 30) does not carry over to Jul 2."""
    a = auth(expires_at=JUL1)
    assert is_valid(a, SCOPE, datetime(2025, 6, 30, 8)).valid
    assert is_valid(a, SCOPE, datetime(2025, 7, 2, 8)).status is Status.EXPIRED


# --- §8 item 2: revocation effective when received (AUTH-7) -------------------------------

MONDAY = datetime(2025, 3, 3, 9, 0)
TUESDAY_10 = datetime(2025, 3, 4, 10, 0)


@pytest.mark.parametrize(
    ("at", "valid"),
    [
        (MONDAY, True),
        (TUESDAY_10 - timedelta(microseconds=1), True),
        (TUESDAY_10, False),
        (datetime(2025, 3, 4, 11, 0), False),
    ],
    ids=["monday-send-is-reliance", "just-before-receipt", "at-receipt", "tuesday-11-slot"],
)
def test_item2_revocation_received_tuesday(at: datetime, valid: bool) -> None:
    v = is_valid(auth(revoked_at=TUESDAY_10), SCOPE, at)
    assert v.valid is valid
    if not valid:
        assert v.status is Status.REVOKED
        assert "AUTH-7" in v.rules


# --- §8 item 3: expiration events, "none" ------------------------------------------------


def test_item3_expiry_event_occurred_blocks() -> None:
    a = auth(
        expires_at=None,
        expiration_event="on disenrollment",
        expiration_event_occurred_at=datetime(2025, 5, 1),
    )
    v = is_valid(a, SCOPE, AT)
    assert v.status is Status.EXPIRED
    assert v.rules == ("AUTH-5",)
    # before the event was recorded as occurring, the event-based expiry is fine
    assert is_valid(a, SCOPE, datetime(2025, 4, 30)).valid


@pytest.mark.parametrize(
    "event",
    ["none", "None", "  NONE ", "end of study", "End of the study.", "never"],
    ids=["none", "None", "spaced-NONE", "end-of-study", "end-of-the-study-dot", "never"],
)
def test_item3_expiration_none_is_auth4_for_marketing(event: str) -> None:
    v = is_valid(auth(expires_at=None, expiration_event=event), SCOPE, AT)
    assert v.status is Status.DEFECTIVE
    assert v.rules == ("AUTH-4",)


def test_auth4_applies_even_with_a_date() -> None:
    """Stricter than the law: a marketing form saying "none" is defective whatever else."""
    v = is_valid(auth(expiration_event="none"), SCOPE, AT)
    assert v.rules == ("AUTH-4",)


# --- §8 item 4: statements, treatment consent, representative -----------------------------


@pytest.mark.parametrize(
    ("overrides", "status", "rule"),
    [
        ({"statement_redisclosure": False}, Status.INCOMPLETE, "AUTH-2"),
        ({"statement_revocation": False}, Status.INCOMPLETE, "AUTH-2"),
        ({"statement_conditioning": False}, Status.INCOMPLETE, "AUTH-2"),
        ({"compound": True}, Status.DEFECTIVE, "AUTH-5"),
        ({"treatment_conditioned": True}, Status.DEFECTIVE, "AUTH-5"),
        ({"known_false": True}, Status.DEFECTIVE, "AUTH-5"),
        (
            {"signer": "representative", "representative_authority": None},
            Status.INCOMPLETE,
            "AUTH-8",
        ),
        ({"signer": "parent", "representative_authority": "  "}, Status.INCOMPLETE, "AUTH-8"),
        ({"plain_language": False}, Status.INCOMPLETE, "AUTH-3"),
        ({"copy_provided": False}, Status.INCOMPLETE, "AUTH-3"),
    ],
    ids=[
        "no-redisclosure-statement",
        "no-revocation-statement",
        "no-conditioning-statement",
        "embedded-in-treatment-consent-compound",
        "treatment-conditioned",
        "known-false",
        "representative-without-authority",
        "parent-without-authority",
        "not-plain-language",
        "no-copy-given",
    ],
)
def test_item4_defects(overrides: dict[str, Any], status: Status, rule: str) -> None:
    v = is_valid(auth(**overrides), SCOPE, AT)
    assert v.status is status
    assert v.rules == (rule,)


def test_item4_representative_with_authority_is_valid() -> None:
    a = auth(signer="representative", representative_authority="parent of a minor (custodial)")
    assert is_valid(a, SCOPE, AT).valid


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"information_description": ""}, "information_description"),
        ({"discloser": "  "}, "discloser"),
        ({"recipients": ""}, "recipients"),
        ({"purpose": ""}, "purpose"),
        ({"expires_at": None, "expiration_event": None}, "expires_at/expiration_event"),
        ({"expires_at": None, "expiration_event": " "}, "expires_at/expiration_event"),
        ({"signature_present": False}, "signature_present"),
        ({"signed_at": None}, "signed_at"),
    ],
    ids=[
        "description",
        "discloser",
        "recipients",
        "purpose",
        "expiration",
        "blank-event",
        "signature",
        "signature-date",
    ],
)
def test_auth1_each_core_element(overrides: dict[str, Any], missing: str) -> None:
    v = is_valid(auth(**overrides), SCOPE, AT)
    assert v.status is Status.INCOMPLETE
    assert v.rules == ("AUTH-1",)
    assert missing in v.reasons[0]


# --- §8 item 5 and SEG-5: paid campaigns --------------------------------------------------

PAID = {
    "scope": "third-party-marketing",
    "remuneration": True,
    "remuneration_statement": True,
    "third_party": "Acme Pharma",
}


@pytest.mark.parametrize(
    ("overrides", "third_party", "rules"),
    [
        ({"remuneration_statement": False}, "Acme Pharma", ("MKT-6",)),
        ({"remuneration": False, "remuneration_statement": False}, "Acme Pharma", ("MKT-6",)),
        ({"third_party": "Other Co"}, "Acme Pharma", ("SEG-5",)),
        ({"third_party": None}, "Acme Pharma", ("SEG-5",)),
        ({"remuneration_statement": False, "third_party": None}, "Acme Pharma", ("MKT-6", "SEG-5")),
    ],
    ids=[
        "item5-no-remuneration-statement",
        "no-remuneration-at-all",
        "other-third-party",
        "no-third-party-named",
        "both",
    ],
)
def test_item5_paid_campaign(
    overrides: dict[str, Any], third_party: str, rules: tuple[str, ...]
) -> None:
    v = is_valid(
        auth(**{**PAID, **overrides}), "third-party-marketing", AT, third_party=third_party
    )
    assert v.status is Status.THIRD_PARTY
    assert v.rules == rules


def test_paid_campaign_valid_with_statement_and_sponsor_any_case() -> None:
    a = auth(**PAID)
    assert is_valid(a, "third-party-marketing", AT, third_party="  acme   PHARMA ").valid


def test_unpaid_campaign_ignores_remuneration_fields() -> None:
    assert is_valid(auth(), SCOPE, AT, third_party=None).valid


# --- every failing rule is reported; the most decisive status wins ---------------------


def test_reports_all_failing_rules_revoked_wins() -> None:
    a = auth(
        revoked_at=datetime(2025, 1, 1),
        expires_at=datetime(2025, 2, 1),
        discloser="",
        statement_redisclosure=False,
        compound=True,
    )
    v = is_valid(a, SCOPE, AT)
    assert v.status is Status.REVOKED
    assert set(v.rules) == {"AUTH-7", "AUTH-5", "AUTH-1", "AUTH-2"}
    assert len(v.reasons) == 5


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"expires_at": datetime(2025, 1, 1), "compound": True}, Status.EXPIRED),
        ({"compound": True, "discloser": ""}, Status.DEFECTIVE),
        ({"discloser": ""}, Status.INCOMPLETE),
        ({"scope": "testimonial", "revoked_at": datetime(2025, 1, 1)}, Status.SCOPE),
        ({"signed_at": datetime(2025, 7, 1), "compound": True}, Status.NONE),
    ],
    ids=[
        "expired-over-defective",
        "defective-over-incomplete",
        "incomplete",
        "scope-first",
        "not-yet-signed-over-defective",
    ],
)
def test_precedence(overrides: dict[str, Any], status: Status) -> None:
    assert is_valid(auth(**overrides), SCOPE, AT).status is status


def test_reasons_carry_no_patient_values() -> None:
    secret = "SECRET-osteoporosis-Jane-Doe"
    a = auth(
        information_description=secret,
        purpose=secret,
        representative_authority=None,
        signer=secret,
        third_party=secret,
        revoked_at=datetime(2025, 1, 2, 3, 4),
        expires_at=datetime(2025, 1, 5),
        statement_redisclosure=False,
    )
    v = is_valid(a, SCOPE, AT, third_party="Acme Pharma")
    text = " ".join(v.reasons)
    assert secret not in text and "Acme" not in text
    assert "2025" not in text


def test_validity_as_dict() -> None:
    v = is_valid(auth(discloser=""), SCOPE, AT)
    assert v.as_dict() == {"status": "incomplete", "rules": ["AUTH-1"], "reasons": list(v.reasons)}


# --- several records per contact ---------------------------------------------------------


def test_best_validity_no_records() -> None:
    v, chosen = best_validity([], SCOPE, AT)
    assert v.status is Status.NONE and chosen is None


def test_best_validity_any_valid_record_wins() -> None:
    old = auth(id=1, revoked_at=datetime(2024, 6, 1))
    new = auth(id=2, signed_at=datetime(2024, 7, 1), created_at=datetime(2024, 7, 1))
    v, chosen = best_validity([new, old], SCOPE, AT)
    assert v.valid and chosen is new
    v, chosen = best_validity([old, new], SCOPE, AT)
    assert v.valid and chosen is new


def test_best_validity_latest_record_explains_exclusion() -> None:
    expired = auth(id=1, expires_at=datetime(2024, 12, 1))
    revoked = auth(
        id=2,
        signed_at=datetime(2025, 1, 1),
        created_at=datetime(2025, 1, 1),
        revoked_at=datetime(2025, 3, 1),
    )
    v, chosen = best_validity([expired, revoked], SCOPE, AT)
    assert v.status is Status.REVOKED and chosen is revoked


def test_best_validity_other_scope_only_is_scope() -> None:
    v, chosen = best_validity([auth(scope="testimonial")], SCOPE, AT)
    assert v.status is Status.SCOPE and chosen is not None


def test_best_validity_prefers_matching_scope_reason() -> None:
    other = auth(id=1, scope="testimonial", signed_at=datetime(2025, 5, 1))
    expired = auth(id=2, expires_at=datetime(2025, 1, 1))
    v, chosen = best_validity([other, expired], SCOPE, AT)
    assert v.status is Status.EXPIRED and chosen is expired


def test_best_validity_not_yet_signed_does_not_hide_older_reason() -> None:
    expired = auth(id=1, expires_at=datetime(2025, 1, 1))
    future = auth(id=2, signed_at=datetime(2025, 9, 1), created_at=datetime(2025, 9, 1))
    v, chosen = best_validity([expired, future], SCOPE, AT)
    assert v.status is Status.EXPIRED and chosen is expired


# --- property tests: random times around expiry and revocation ---------------------------

BASE = datetime(2025, 7, 1)
offsets = st.one_of(
    st.sampled_from([0, 1, -1]),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-400 * 86_400 * 10**6, max_value=400 * 86_400 * 10**6),
).map(lambda us: timedelta(microseconds=us))


@settings(max_examples=300, deadline=None)
@given(expiry=offsets, revocation=st.none() | offsets, at=offsets)
def test_property_validity_around_expiry_and_revocation(
    expiry: timedelta, revocation: timedelta | None, at: timedelta
) -> None:
    expires_at = BASE + expiry
    revoked_at = None if revocation is None else BASE + revocation
    when = BASE + at
    signed = BASE - timedelta(days=800)
    a = auth(expires_at=expires_at, revoked_at=revoked_at, signed_at=signed, created_at=signed)
    v = is_valid(a, SCOPE, when)
    revoked = revoked_at is not None and revoked_at <= when
    expired = expires_at <= when
    assert v.valid is (not revoked and not expired)
    if revoked:
        assert v.status is Status.REVOKED and "AUTH-7" in v.rules
    elif expired:
        assert v.status is Status.EXPIRED and v.rules == ("AUTH-5",)
    assert ("AUTH-5" in v.rules) is expired


@settings(max_examples=200, deadline=None)
@given(expiry=offsets, revocation=st.none() | offsets, t1=offsets, t2=offsets)
def test_property_once_invalid_by_time_stays_invalid(
    expiry: timedelta, revocation: timedelta | None, t1: timedelta, t2: timedelta
) -> None:
    """Expiry and revocation never undo themselves: invalid at t implies invalid later."""
    a = auth(
        expires_at=BASE + expiry,
        revoked_at=None if revocation is None else BASE + revocation,
        signed_at=BASE - timedelta(days=800),
    )
    early, late = sorted((BASE + t1, BASE + t2))
    if not is_valid(a, SCOPE, early).valid:
        assert not is_valid(a, SCOPE, late).valid


FLAGS = {
    "statement_revocation": "AUTH-2",
    "statement_conditioning": "AUTH-2",
    "statement_redisclosure": "AUTH-2",
    "plain_language": "AUTH-3",
    "copy_provided": "AUTH-3",
    "signature_present": "AUTH-1",
}
DEFECTS = {"compound": "AUTH-5", "treatment_conditioned": "AUTH-5", "known_false": "AUTH-5"}


@settings(max_examples=300, deadline=None)
@given(
    good=st.fixed_dictionaries({k: st.booleans() for k in FLAGS}),
    bad=st.fixed_dictionaries({k: st.booleans() for k in DEFECTS}),
    scope=st.sampled_from(SCOPES),
)
def test_property_valid_iff_every_element_present(
    good: dict[str, bool], bad: dict[str, bool], scope: str
) -> None:
    v = is_valid(auth(scope=scope, **good, **bad), SCOPE, AT)
    expected_rules = {FLAGS[k] for k, ok in good.items() if not ok} | {
        DEFECTS[k] for k, on in bad.items() if on
    }
    if scope != SCOPE:
        expected_rules.add("AUTH-6")
    assert set(v.rules) == expected_rules
    assert v.valid is (not expected_rules)


# --- §8 item 24: retention (AUTH-9) -------------------------------------------------------


def test_item24_purge_refused_before_2031_03_01() -> None:
    a = auth(
        created_at=datetime(2024, 1, 10),
        revoked_at=datetime(2025, 3, 1),
        expires_at=datetime(2027, 1, 1),
    )
    assert retention_until(a) == datetime(2031, 3, 1)
    with pytest.raises(RetentionRefusal) as info:
        check_purge(a, datetime(2031, 2, 28, 23, 59, 59))
    err = info.value
    assert isinstance(err, ComplianceRefusal)
    assert err.rules == ("AUTH-9",)
    assert exit_code(err) == EXIT_REFUSED == 3
    assert err.refusals[0].ids == (7,)
    check_purge(a, datetime(2031, 3, 1))  # from then on, allowed


@pytest.mark.parametrize(
    ("overrides", "until"),
    [
        (
            {"created_at": datetime(2024, 1, 10), "expires_at": datetime(2026, 1, 1)},
            datetime(2032, 1, 1),
        ),
        (
            {"created_at": datetime(2024, 1, 10), "expires_at": datetime(2020, 1, 1)},
            datetime(2030, 1, 10),
        ),
        (
            {"created_at": datetime(2024, 2, 29), "expires_at": datetime(2024, 1, 1)},
            datetime(2030, 3, 1),
        ),
        (
            {
                "created_at": datetime(2024, 1, 10),
                "expires_at": None,
                "expiration_event": "on disenrollment",
                "expiration_event_occurred_at": datetime(2025, 4, 2),
            },
            datetime(2031, 4, 2),
        ),
        (
            {
                "created_at": datetime(2024, 1, 10),
                "expires_at": None,
                "expiration_event": "on disenrollment",
            },
            datetime.max,
        ),
    ],
    ids=[
        "expiry-later-than-creation",
        "creation-later-than-expiry",
        "leap-day-rolls-forward",
        "event-occurred",
        "still-in-effect-never-purgeable",
    ],
)
def test_retention_until(overrides: dict[str, Any], until: datetime) -> None:
    assert retention_until(auth(**overrides)) == until


def test_still_effective_authorization_is_never_purged() -> None:
    a = auth(expires_at=None, expiration_event="on disenrollment")
    with pytest.raises(RetentionRefusal):
        check_purge(a, datetime(2999, 1, 1))


def test_status_vocabulary_is_closed() -> None:
    assert {s.value for s in Status} == {
        "valid",
        "none",
        "expired",
        "revoked",
        "incomplete",
        "defective",
        "scope",
        "third-party",
    }
    assert isinstance(is_valid(None, SCOPE, AT), Validity)
