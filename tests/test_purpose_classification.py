"""Purpose classification (MKT-1..MKT-7, SPAM-0): rules §8 items 6 and 7, as pure functions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.classify import (
    EXEMPT,
    MARKETING,
    NOT_MARKETING,
    Communication,
    Refill,
    classify,
    from_campaign,
    scope_refusals,
)
from mailer.templates import PURPOSES


def refill(**kw: object) -> Communication:
    return Communication(purpose="appointment-reminder", third_party="Acme Pharma", own_service=False,
                         refill=Refill(**kw))  # type: ignore[arg-type]


# rules §8 item 6
@pytest.mark.parametrize(("facts", "expected"), [
    (dict(payment=Decimal("0.40"), cost=Decimal("0.45")), EXEMPT),
    (dict(payment=Decimal("2.00"), cost=Decimal("0.45")), MARKETING),
    (dict(lapsed_days=89), EXEMPT),
    (dict(lapsed_days=90), EXEMPT),
    (dict(lapsed_days=91), MARKETING),
    (dict(new_formulation=True), MARKETING),
], ids=["paid-0.40-cost-0.45", "paid-2.00", "lapsed-89", "lapsed-90", "lapsed-91", "new-formulation"])
def test_refill_exception(facts: dict, expected: str) -> None:
    c = classify(refill(**facts))
    assert c.hipaa == expected
    if expected == EXEMPT:
        assert c.exception == "MKT-2a" and c.scope is None
    else:
        assert c.exception is None and c.scope is not None and "MKT-5" in c.rules


# rules §8 item 7 (classification half; the missing postal address is a preflight gate)
def test_own_new_mri_service_is_hipaa_exempt_but_commercial() -> None:
    c = classify(Communication(purpose="service-announcement"))
    assert c.hipaa == EXEMPT and c.exception == "MKT-2c"
    assert c.commercial is True  # CAN-SPAM applies all the same (SPAM-0)
    assert c.scope is None


@pytest.mark.parametrize("kind", ["parking", "gift-shop"])
def test_parking_or_gift_shop_promotion_is_marketing(kind: str) -> None:
    c = classify(Communication(purpose="service-announcement", service_kind=kind))
    assert c.hipaa == MARKETING and c.exception is None
    assert c.scope == "marketing" and "MKT-5" in c.rules


def test_payment_defeats_the_own_service_exception() -> None:
    c = classify(Communication(purpose="service-announcement", third_party="Acme Pharma", remuneration=True))
    assert c.hipaa == MARKETING and "MKT-3" in c.rules
    assert c.scope == "third-party-marketing" and c.remuneration_statement


def test_paid_campaign_must_name_the_third_party_and_state_remuneration() -> None:
    c = classify(Communication(purpose="third-party-marketing", remuneration=True))
    assert {r.rule for r in c.refusals} == {"MKT-3", "MKT-6"}
    ok = classify(Communication(purpose="third-party-marketing", remuneration=True, third_party="Acme Pharma",
                                remuneration_stated=True))
    assert ok.refusals == () and ok.scope == "third-party-marketing"


def test_health_education_and_reminders_need_no_authorization() -> None:
    edu = classify(from_campaign("health-education"))
    assert edu.hipaa == NOT_MARKETING and edu.scope is None
    rem = classify(from_campaign("appointment-reminder"))
    assert rem.scope is None and rem.commercial is False
    promo = classify(from_campaign("appointment-reminder", subject_promotional=True))
    assert promo.commercial is True  # SPAM-0: a promotional subject makes it commercial


def test_condition_targeting_needs_its_scope_whatever_the_label() -> None:
    # DIS-1: a "newsletter" whose segment selects on clinical fields is condition-targeted
    c = classify(from_campaign("newsletter", targets_condition=True))
    assert c.hipaa == MARKETING and c.scope == "condition-targeted-marketing"
    assert [r.rule for r in scope_refusals(c, segment_scope=None, segment_third_party=None,
                                           campaign_third_party=None)] == ["MKT-5"]
    assert scope_refusals(c, segment_scope="condition-targeted-marketing", segment_third_party=None,
                          campaign_third_party=None) == []


def test_email_never_claims_face_to_face_and_nominal_gift_warns() -> None:
    assert [r.rule for r in classify(Communication(purpose="newsletter", claims_face_to_face=True)).refusals] == ["MKT-4"]
    gift = classify(Communication(purpose="newsletter", nominal_gift=True))
    assert gift.refusals == () and [w.rule for w in gift.warnings] == ["MKT-4"]


def test_list_disclosure_for_pay_is_a_sale_of_phi() -> None:
    c = classify(Communication(purpose="newsletter", discloses_list=True))
    assert "MKT-7" in c.rules and c.remuneration_statement and c.scope is not None


@given(purpose=st.sampled_from(PURPOSES), third_party=st.sampled_from([None, "Acme Pharma"]),
       targets=st.booleans())
def test_paid_or_targeted_is_never_exempt(purpose: str, third_party: str | None, targets: bool) -> None:
    c = classify(from_campaign(purpose, third_party=third_party, targets_condition=targets))
    if third_party or purpose == "third-party-marketing":
        assert c.hipaa == MARKETING and c.scope == "third-party-marketing"
    elif targets:
        assert c.hipaa == MARKETING and c.scope == "condition-targeted-marketing"
    # the HIPAA and CAN-SPAM classes are separate: an exempt message may still be commercial
    if c.hipaa == EXEMPT:
        assert c.scope is None
