"""Segment evaluation: operators, the SQL/clinical split, SEG-1..SEG-5, and the
authorization-first evaluator (no decryption without a valid authorization)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    select,
)

from mailer.authorizations import SCOPES, Status
from mailer.config import FieldSettings
from mailer.errors import EXIT_REFUSED, ComplianceRefusal, exit_code
from mailer.segments import (
    EXCLUSION_REASONS,
    AllOf,
    AnyOf,
    Condition,
    Evaluator,
    Node,
    Not,
    Segment,
    SegmentCounts,
    describe,
    gate,
    matches,
    parse_segment,
    plan_segment,
    to_sql,
)
from mailer.store.auth_records import AuthorizationRecord

FIELDS = FieldSettings()
AT = datetime(2025, 7, 1, 12, 0)
SCOPE = "condition-targeted-marketing"

COMPLETE: dict[str, Any] = {
    "id": None,
    "contact_id": 1,
    "scope": SCOPE,
    "information_description": "conditions, procedures and last exam date",
    "discloser": "Example Imaging Center",
    "recipients": "Example Imaging Center and its email service provider",
    "purpose": "email about services related to the patient's conditions",
    "expires_at": datetime(2026, 1, 1),
    "signed_at": datetime(2024, 1, 10),
    "signature_present": True,
    "statement_revocation": True,
    "statement_conditioning": True,
    "statement_redisclosure": True,
    "plain_language": True,
    "copy_provided": True,
    "created_at": datetime(2024, 1, 10),
}


def auth(**overrides: Any) -> AuthorizationRecord:
    return AuthorizationRecord(**{**COMPLETE, **overrides})


def segment(
    match: Node, *, scope: str | None = SCOPE, third_party: str | None = None, name: str = "t"
) -> Segment:
    return Segment(
        name=name,
        description="",
        scope=scope,
        third_party=third_party,
        match=match,
        source_path=f"{name}.toml",
        content_hash="0" * 64,
    )


C = Condition


# --- operators ------------------------------------------------------------------------

OPERATOR_CASES = [
    ("equals-text-case-insensitive", C("language", "equals", "en"), "EN", True),
    ("equals-text-other", C("language", "equals", "en"), "es", False),
    ("equals-bool-true", C("newsletter_opt_in", "equals", True), True, True),
    ("equals-bool-false", C("newsletter_opt_in", "equals", True), False, False),
    ("equals-bool-sqlite-int", C("newsletter_opt_in", "equals", True), 1, True),
    (
        "equals-date-same-day",
        C("created_at", "equals", date(2024, 5, 1)),
        datetime(2024, 5, 1, 23, 59),
        True,
    ),
    (
        "equals-date-other-day",
        C("created_at", "equals", date(2024, 5, 1)),
        datetime(2024, 5, 2),
        False,
    ),
    ("in-text", C("language", "in", ("en", "es")), "Es", True),
    ("in-text-miss", C("language", "in", ("en", "es")), "fr", False),
    (
        "in-list-any-element",
        C("conditions", "in", ("osteopenia", "osteoporosis")),
        ["asthma", "Osteoporosis"],
        True,
    ),
    ("in-list-miss", C("conditions", "in", ("osteopenia",)), ["asthma"], False),
    ("contains-list-element", C("conditions", "contains", "osteoporosis"), ["OSTEOPOROSIS"], True),
    ("contains-list-no-substring", C("conditions", "contains", "osteo"), ["osteoporosis"], False),
    ("contains-text-substring", C("language", "contains", "en"), "en-US", True),
    ("contains-text-miss", C("language", "contains", "fr"), "en-US", False),
    ("before-iso-string", C("last_exam_date", "before", date(2024, 1, 1)), "2023-12-31", True),
    ("before-same-day-false", C("last_exam_date", "before", date(2024, 1, 1)), "2024-01-01", False),
    ("after-iso-string", C("last_exam_date", "after", date(2024, 1, 1)), "2024-01-02", True),
    ("after-same-day-false", C("last_exam_date", "after", date(2024, 1, 1)), "2024-01-01", False),
    (
        "after-iso-datetime-string",
        C("last_exam_date", "after", date(2024, 1, 1)),
        "2024-01-02T08:00:00",
        True,
    ),
    ("within-inside", C("last_exam_date", "within", timedelta(days=365)), "2025-01-01", True),
    ("within-first-day", C("last_exam_date", "within", timedelta(days=365)), "2024-07-01", True),
    ("within-too-old", C("last_exam_date", "within", timedelta(days=365)), "2024-06-30", False),
    (
        "within-future-false",
        C("last_exam_date", "within", timedelta(days=365)),
        "2025-07-02",
        False,
    ),
    ("within-today", C("last_exam_date", "within", timedelta(days=0)), "2025-07-01", True),
    ("exists-list", C("procedures", "exists", True), ["MRI"], True),
    ("exists-empty-list", C("procedures", "exists", True), [], False),
    ("exists-missing", C("procedures", "exists", True), None, False),
    ("not-exists-missing", C("procedures", "exists", False), None, True),
    ("not-exists-empty-text", C("language", "exists", False), "", True),
    ("missing-value-never-matches", C("conditions", "contains", "x"), None, False),
    (
        "malformed-date-never-matches",
        C("last_exam_date", "before", date(2030, 1, 1)),
        "not a date",
        False,
    ),
    ("wrong-type-never-matches", C("language", "equals", "en"), 42, False),
]


@pytest.mark.parametrize(
    ("cond", "value", "expected"),
    [case[1:] for case in OPERATOR_CASES],
    ids=[case[0] for case in OPERATOR_CASES],
)
def test_operator(cond: Condition, value: Any, expected: bool) -> None:
    assert matches(cond, {cond.field: value}, AT) is expected


def test_groups() -> None:
    en = C("language", "equals", "en")
    opt = C("newsletter_opt_in", "equals", True)
    values = {"language": "en", "newsletter_opt_in": False}
    assert matches(AnyOf((en, opt)), values, AT)
    assert not matches(AllOf((en, opt)), values, AT)
    assert matches(Not(opt), values, AT)
    assert matches(Not(C("conditions", "contains", "x")), {}, AT)  # missing -> not(False)


def test_parsed_operators_round_trip_through_matches() -> None:
    text = """\
name = "ops"
authorization_scope = "condition-targeted-marketing"
[match]
all = [
  { field = "language", op = "in", value = ["EN"] },
  { field = "conditions", op = "contains", value = "Osteoporosis" },
  { field = "last_exam_date", op = "within", value = "52w" },
  { field = "created_at", op = "before", value = 2025-01-01 },
  { field = "procedures", op = "exists", value = false },
]
"""
    seg = parse_segment(text, path="ops.toml", fields=FIELDS)
    values = {
        "language": "en",
        "conditions": ["osteoporosis"],
        "last_exam_date": "2025-01-15",
        "created_at": datetime(2024, 3, 1),
        "procedures": [],
    }
    assert matches(seg.match, values, AT)
    assert "last_exam_date within 364d" in describe(seg.match)


# --- the SQL / clinical split ---------------------------------------------------------

OPT = C("newsletter_opt_in", "equals", True)
EN = C("language", "equals", "en")
OST = C("conditions", "contains", "osteoporosis")


@pytest.mark.parametrize(
    ("match", "sql", "clinical"),
    [
        (AllOf((OPT, EN)), AllOf((OPT, EN)), None),
        (OPT, OPT, None),
        (AnyOf((OPT, EN)), AnyOf((OPT, EN)), None),
        (AllOf((OPT, OST)), OPT, OST),
        (AllOf((OPT, EN, OST)), AllOf((OPT, EN)), OST),
        (AllOf((OPT, AnyOf((EN, OST)))), OPT, AnyOf((EN, OST))),
        (AnyOf((OPT, OST)), None, AnyOf((OPT, OST))),
        (Not(OST), None, Not(OST)),
        (AllOf((Not(AllOf((EN, OST))),)), None, Not(AllOf((EN, OST)))),
    ],
    ids=[
        "all-non-phi",
        "single-non-phi",
        "any-non-phi",
        "all-split",
        "all-split-two-sql",
        "mixed-any-stays-clinical",
        "any-root-all-clinical",
        "not-root",
        "nested-not-mixed",
    ],
)
def test_plan_split(match: Node, sql: Node | None, clinical: Node | None) -> None:
    plan = plan_segment(segment(match))
    assert plan.sql_filter == sql
    assert plan.clinical_filter == clinical


def test_field_declared_clinical_never_goes_to_sql() -> None:
    """A deployment that declares `language` as PHI keeps it out of SQL."""
    fields = FieldSettings(clinical={"language": "text", "conditions": "list"})
    text = (
        'name = "t"\nauthorization_scope = "condition-targeted-marketing"\n[match]\n'
        'all = [{ field = "language", op = "equals", value = "en" }, '
        '{ field = "newsletter_opt_in", op = "equals", value = true }]\n'
    )
    plan = plan_segment(parse_segment(text, path="t.toml", fields=fields))
    assert plan.clinical_fields == {"language"}
    assert plan.sql_filter == OPT
    assert plan.clinical_filter == EN


def test_explain_lists_sql_and_decrypted_parts() -> None:
    plan = plan_segment(segment(AllOf((OPT, OST))))
    lines = plan.explain()
    assert any(
        line.startswith("in SQL") and "newsletter_opt_in equals true" in line for line in lines
    )
    assert any(
        line.startswith("after decryption") and "conditions contains" in line for line in lines
    )
    assert any("SEG-2" in line for line in lines)


# --- to_sql agrees with matches (property test on SQLite) --------------------------------

_meta = MetaData()
_contacts = Table(
    "contacts",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("language", String(16), nullable=True),
    Column("newsletter_opt_in", Boolean, nullable=True),
    Column("created_at", DateTime, nullable=True),
)
_engine = create_engine("sqlite://")
_meta.create_all(_engine)
COLUMNS = {name: _contacts.c[name] for name in ("language", "newsletter_opt_in", "created_at")}

days = st.dates(min_value=date(2023, 1, 1), max_value=date(2026, 12, 31))
words = st.sampled_from(["en", "EN", "es", "fr", "en-us", "e", "%", "_"])
non_phi_conditions = st.one_of(
    st.builds(C, st.just("language"), st.sampled_from(["equals", "contains"]), words),
    st.builds(
        C, st.just("language"), st.just("in"), st.lists(words, min_size=1, max_size=3).map(tuple)
    ),
    st.builds(C, st.just("newsletter_opt_in"), st.just("equals"), st.booleans()),
    st.builds(C, st.just("created_at"), st.sampled_from(["equals", "before", "after"]), days),
    st.builds(
        C,
        st.just("created_at"),
        st.just("within"),
        st.integers(0, 900).map(lambda d: timedelta(days=d)),
    ),
    st.builds(
        C,
        st.sampled_from(["language", "newsletter_opt_in", "created_at"]),
        st.just("exists"),
        st.booleans(),
    ),
)


def trees(leaves: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, min_size=1, max_size=3).map(lambda c: AllOf(tuple(c))),
            st.lists(kids, min_size=1, max_size=3).map(lambda c: AnyOf(tuple(c))),
            kids.map(Not),
        ),
        max_leaves=6,
    )


rows = st.lists(
    st.fixed_dictionaries(
        {
            "language": st.none() | st.sampled_from(["en", "EN", "es", "fr", "en-us", "", "100%"]),
            "newsletter_opt_in": st.none() | st.booleans(),
            "created_at": st.none()
            | st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31)),
        }
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=trees(non_phi_conditions),
    data=rows,
    at=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 1, 1)),
)
def test_property_to_sql_equals_matches(
    tree: Node, data: list[dict[str, Any]], at: datetime
) -> None:
    with _engine.begin() as conn:
        conn.execute(_contacts.delete())
        if data:
            conn.execute(_contacts.insert(), [{"id": i, **row} for i, row in enumerate(data)])
        got = set(
            conn.execute(select(_contacts.c.id).where(to_sql(tree, COLUMNS, at=at))).scalars()
        )
    expected = {i for i, row in enumerate(data) if matches(tree, row, at)}
    assert got == expected


def test_to_sql_refuses_clinical_fields() -> None:
    with pytest.raises(ValueError, match="clinical fields are never queried in SQL"):
        to_sql(AllOf((OPT, OST)), COLUMNS)


def test_to_sql_within_needs_evaluation_time() -> None:
    with pytest.raises(ValueError, match="needs `at`"):
        to_sql(C("created_at", "within", timedelta(days=30)), COLUMNS)


# --- SEG-1: condition rules need an authorization scope ------------------------------------


@pytest.mark.parametrize(
    "match",
    [
        AllOf((OPT, OST)),
        AnyOf((EN, OST)),
        Not(C("last_exam_date", "within", timedelta(days=365))),
        AllOf((OPT, AnyOf((EN, Not(C("procedures", "exists", True)))))),
    ],
    ids=["top-level-all", "inside-any", "inside-not", "deeply-nested-exists"],
)
def test_seg1_clinical_rule_without_scope_is_refused(match: Node) -> None:
    plan = plan_segment(segment(match, scope=None))
    assert [r.rule for r in plan.refusals] == ["SEG-1"]
    assert plan.requires_authorization
    refusals = gate(plan, SegmentCounts(segment="t"))
    assert [r.rule for r in refusals] == ["SEG-1"]
    ev = Evaluator(plan, AT)  # a refused plan includes nobody and never decrypts anything
    d = ev.decide(OPTED, [auth()], False, lambda: pytest.fail("decrypted under a refused plan"))
    assert (d.included, d.reason, d.rules) == (False, "refused", ("SEG-1",))
    assert gate(plan, ev.counts) == list(plan.refusals)
    assert ev.counts.as_dict()["refused"] is True and ev.counts.rules == ["SEG-1"]
    err = ComplianceRefusal(plan.refusals)
    assert exit_code(err) == EXIT_REFUSED and err.rules == ("SEG-1",)
    assert any("REFUSED [SEG-1]" in line for line in plan.explain())


def test_seg1_message_names_fields_not_values() -> None:
    plan = plan_segment(segment(AllOf((OPT, C("conditions", "contains", "SECRET"))), scope=None))
    reason = plan.refusals[0].reason
    assert "conditions" in reason and "SECRET" not in reason


def test_seg1_from_a_file() -> None:
    text = 'name = "t"\n[match]\nall = [{ field = "conditions", op = "contains", value = "x" }]\n'
    plan = plan_segment(parse_segment(text, path="t.toml", fields=FIELDS))
    assert [r.rule for r in plan.refusals] == ["SEG-1"]


def test_non_clinical_segment_needs_no_scope() -> None:
    plan = plan_segment(segment(AllOf((OPT, EN)), scope=None))
    assert plan.refusals == () and not plan.requires_authorization
    assert plan.clinical_filter is None


# --- SEG-5: third-party-paid campaigns -----------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "third_party", "rules"),
    [
        (None, "Acme Pharma", ["SEG-5"]),
        ("condition-targeted-marketing", "Acme Pharma", ["SEG-5"]),
        ("third-party-marketing", None, ["SEG-5"]),
        ("third-party-marketing", "Acme Pharma", []),
    ],
    ids=["paid-without-scope", "paid-with-other-scope", "third-party-scope-without-sponsor", "ok"],
)
def test_seg5_plan(scope: str | None, third_party: str | None, rules: list[str]) -> None:
    plan = plan_segment(segment(AllOf((OPT, EN)), scope=scope, third_party=third_party))
    assert [r.rule for r in plan.refusals] == rules
    assert plan.requires_authorization  # whatever the segment's rules (SEG-5)


def test_seg5_refused_plan_includes_nobody() -> None:
    plan = plan_segment(segment(OST, scope=SCOPE, third_party="Acme Pharma"))
    ev = Evaluator(plan, AT)
    d = ev.decide({}, [auth()], False, lambda: pytest.fail("decrypted under a refused plan"))
    assert (d.included, d.rules) == (False, ("SEG-5",))
    assert [r.rule for r in gate(plan, ev.counts)] == ["SEG-5"]


PAID = {
    "scope": "third-party-marketing",
    "remuneration": True,
    "remuneration_statement": True,
    "third_party": "Acme Pharma",
}


@pytest.mark.parametrize(
    ("overrides", "included", "reason"),
    [
        ({}, True, "matched"),
        ({"third_party": "ACME pharma"}, True, "matched"),
        ({"remuneration_statement": False}, False, "third-party"),
        ({"third_party": "Other Co"}, False, "third-party"),
        ({"scope": "condition-targeted-marketing"}, False, "scope"),
    ],
    ids=[
        "stated-and-named",
        "named-any-case",
        "item5-no-remuneration-statement",
        "other-sponsor",
        "other-scope",
    ],
)
def test_seg5_per_recipient(overrides: dict[str, Any], included: bool, reason: str) -> None:
    plan = plan_segment(segment(EN, scope="third-party-marketing", third_party="Acme Pharma"))
    ev = Evaluator(plan, AT)
    d = ev.decide({"language": "en"}, [auth(id=3, **{**PAID, **overrides})], False, lambda: {})
    assert d.included is included and d.reason == reason
    assert d.authorization_id == 3


# --- SEG-4: zero authorized contacts --------------------------------------------------------


def test_seg4_zero_authorized_is_refused_with_counts() -> None:
    plan = plan_segment(segment(AllOf((OPT, OST))))
    ev = Evaluator(plan, AT)
    values = {"newsletter_opt_in": True}
    ev.decide(values, [], False, lambda: pytest.fail("decrypted"))
    ev.decide(
        values, [auth(expires_at=datetime(2025, 1, 1))], False, lambda: pytest.fail("decrypted")
    )
    ev.decide(
        values, [auth(revoked_at=datetime(2025, 2, 1))], False, lambda: pytest.fail("decrypted")
    )
    ev.decide(values, [auth(discloser="")], False, lambda: pytest.fail("decrypted"))
    ev.decide(values, [auth()], True, lambda: pytest.fail("decrypted"))
    ev.decide({"newsletter_opt_in": False}, [auth()], False, lambda: pytest.fail("decrypted"))
    refusals = gate(plan, ev.counts)
    assert [r.rule for r in refusals] == ["SEG-4"]
    reason = refusals[0].reason
    assert "0 of 5 considered" in reason
    assert "1 suppressed" in reason
    for part in ("none: 1", "expired: 1", "revoked: 1", "incomplete: 1"):
        assert part in reason
    assert refusals[0].count == 5
    out = ev.counts.as_dict()
    assert out["refused"] is True and out["rules"] == ["SEG-4"]
    assert out["considered"] == 5 and out["suppressed"] == 1 and out["matched"] == 0
    assert out["excluded_no_authorization"] == {
        "none": 1,
        "expired": 1,
        "revoked": 1,
        "incomplete": 1,
        "defective": 0,
        "scope": 0,
        "third-party": 0,
    }
    json.dumps(out)  # the CLI's --format json


def test_seg4_not_raised_with_one_authorized_contact() -> None:
    plan = plan_segment(segment(AllOf((OPT, OST))))
    ev = Evaluator(plan, AT)
    ev.decide({"newsletter_opt_in": True}, [auth()], False, lambda: {"conditions": ["asthma"]})
    assert gate(plan, ev.counts) == []
    assert ev.counts.authorized == 1 and ev.counts.matched == 0 and ev.counts.unmatched == 1
    assert ev.counts.as_dict()["refused"] is False


def test_seg4_not_for_non_clinical_segments() -> None:
    plan = plan_segment(segment(OPT, scope=None))
    ev = Evaluator(plan, AT)
    ev.decide({"newsletter_opt_in": True}, [], True, lambda: pytest.fail("decrypted"))
    assert gate(plan, ev.counts) == []


def test_counts_json_keys() -> None:
    keys = SegmentCounts(segment="s").as_dict().keys()
    assert {
        "segment",
        "considered",
        "excluded_no_authorization",
        "suppressed",
        "matched",
        "refused",
        "rules",
    } <= set(keys)
    assert set(SegmentCounts(segment="s").excluded_no_authorization) == set(EXCLUSION_REASONS)
    assert set(EXCLUSION_REASONS) == {s.value for s in Status} - {"valid"}


# --- the evaluator: order of checks (SEG-2) ---------------------------------------------


class Decrypt:
    """A decrypt_clinical closure that records every call."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.calls = 0

    def __call__(self) -> Mapping[str, Any]:
        self.calls += 1
        return self.values


OST_PLAN = plan_segment(segment(AllOf((OPT, OST))))
OPTED = {"newsletter_opt_in": True, "language": "en", "created_at": datetime(2024, 1, 1)}


@pytest.mark.parametrize(
    ("values", "auths", "suppressed", "reason", "decrypts"),
    [
        (OPTED, [auth()], False, "matched", 1),
        (OPTED, [auth()], True, "suppressed", 0),
        ({**OPTED, "newsletter_opt_in": False}, [auth()], False, "not-selected", 0),
        (OPTED, [], False, "none", 0),
        (OPTED, [auth(expires_at=datetime(2025, 7, 1))], False, "expired", 0),
        (OPTED, [auth(revoked_at=datetime(2025, 7, 1, 11))], False, "revoked", 0),
        (OPTED, [auth(statement_redisclosure=False)], False, "incomplete", 0),
        (OPTED, [auth(compound=True)], False, "defective", 0),
        (OPTED, [auth(scope="testimonial")], False, "scope", 0),
    ],
    ids=[
        "authorized",
        "suppressed",
        "non-phi-filter",
        "no-authorization",
        "expired",
        "revoked",
        "incomplete",
        "defective",
        "other-scope",
    ],
)
def test_decide_order(
    values: dict[str, Any], auths: list[AuthorizationRecord], suppressed: bool, reason: str, decrypts: int
) -> None:
    ev = Evaluator(OST_PLAN, AT)
    decrypt = Decrypt({"conditions": ["osteoporosis"]})
    d = ev.decide(values, auths, suppressed, decrypt)
    assert d.reason == reason
    assert d.included is (reason == "matched")
    assert decrypt.calls == decrypts


def test_suppressed_never_matches_even_without_authorization_requirement() -> None:
    ev = Evaluator(plan_segment(segment(OPT, scope=None)), AT)
    assert not ev.decide(OPTED, [], True, Decrypt({})).included
    assert ev.decide(OPTED, [], False, Decrypt({})).included
    assert ev.counts.suppressed == 1 and ev.counts.matched == 1


def test_non_clinical_plan_never_decrypts() -> None:
    ev = Evaluator(plan_segment(segment(AllOf((OPT, EN)), scope=None)), AT)
    decrypt = Decrypt({"conditions": ["x"]})
    assert ev.decide(OPTED, [], False, decrypt).included
    assert decrypt.calls == 0


def test_only_used_clinical_fields_reach_matching() -> None:
    """Minimum necessary: fields the segment does not use are not merged in."""
    ev = Evaluator(OST_PLAN, AT)
    seen: dict[str, Any] = {}

    class Spy(dict):  # type: ignore[type-arg]
        def get(self, key: str, default: Any = None) -> Any:
            seen[key] = True
            return super().get(key, default)

    ev.decide(OPTED, [auth()], False, lambda: Spy(conditions=["osteoporosis"], procedures=["MRI"]))
    assert set(seen) == {"conditions"}


@pytest.mark.parametrize(
    ("at", "included", "reason"),
    [
        (datetime(2025, 6, 30, 9), True, "matched"),
        (datetime(2025, 7, 1, 0, 0), False, "expired"),
        (datetime(2025, 7, 2, 9), False, "expired"),
    ],
    ids=["jun30", "jul1-midnight", "jul2"],
)
def test_item1_expiry_at_evaluation_time(at: datetime, included: bool, reason: str) -> None:
    ev = Evaluator(OST_PLAN, at)
    decrypt = Decrypt({"conditions": ["osteoporosis"]})
    d = ev.decide(OPTED, [auth(expires_at=datetime(2025, 7, 1))], False, decrypt)
    assert (d.included, d.reason) == (included, reason)
    assert decrypt.calls == (1 if included else 0)


@pytest.mark.parametrize(
    ("at", "included"),
    [(datetime(2025, 3, 3, 11), True), (datetime(2025, 3, 4, 11), False)],
    ids=["monday", "tuesday-11-after-10-revocation"],
)
def test_item2_revocation_at_evaluation_time(at: datetime, included: bool) -> None:
    ev = Evaluator(OST_PLAN, at)
    decrypt = Decrypt({"conditions": ["osteoporosis"]})
    d = ev.decide(OPTED, [auth(revoked_at=datetime(2025, 3, 4, 10))], False, decrypt)
    assert d.included is included
    if not included:
        assert d.reason == "revoked" and "AUTH-7" in d.rules and decrypt.calls == 0


# --- the acceptance property test (issue 4) -----------------------------------------------

CLINICAL_WORDS = ["osteoporosis", "osteopenia", "asthma", "dexa", "mri"]
clinical_conditions = st.one_of(
    st.builds(
        C,
        st.sampled_from(["conditions", "procedures"]),
        st.just("contains"),
        st.sampled_from(CLINICAL_WORDS),
    ),
    st.builds(
        C,
        st.sampled_from(["conditions", "procedures"]),
        st.just("in"),
        st.lists(st.sampled_from(CLINICAL_WORDS), min_size=1, max_size=3).map(tuple),
    ),
    st.builds(C, st.just("last_exam_date"), st.sampled_from(["equals", "before", "after"]), days),
    st.builds(
        C,
        st.just("last_exam_date"),
        st.just("within"),
        st.integers(0, 800).map(lambda d: timedelta(days=d)),
    ),
    st.builds(
        C,
        st.sampled_from(["conditions", "procedures", "last_exam_date"]),
        st.just("exists"),
        st.booleans(),
    ),
)
any_conditions = st.one_of(non_phi_conditions, clinical_conditions)


@st.composite
def condition_segments(draw: st.DrawFn) -> Segment:
    tree = draw(trees(any_conditions))
    anchor = draw(clinical_conditions)  # at least one clinical rule: condition-based
    match: Node = AllOf((tree, anchor)) if draw(st.booleans()) else AnyOf((tree, anchor))
    if draw(st.booleans()):
        return segment(match, scope="third-party-marketing", third_party="Acme Pharma")
    return segment(
        match, scope=draw(st.sampled_from(["condition-targeted-marketing", "marketing"]))
    )


offsets = st.integers(min_value=-3 * 86_400, max_value=3 * 86_400).map(
    lambda s: timedelta(seconds=s)
)
DEFECT_CHOICES = [
    None,
    None,
    None,
    {"discloser": ""},
    {"statement_redisclosure": False},
    {"signature_present": False},
    {"signer": "representative"},
    {"compound": True},
    {"expiration_event": "none"},
    {"copy_provided": False},
]


@dataclass(frozen=True)
class AuthSpec:
    """What was generated, so the oracle does not depend on the code under test."""

    scope: str
    expires: timedelta
    revoked: timedelta | None
    signed: timedelta
    defect: dict[str, Any] | None
    paid: bool
    sponsor: str | None

    def build(self, at: datetime, ident: int) -> AuthorizationRecord:
        fields: dict[str, Any] = {
            "id": ident,
            "scope": self.scope,
            "expires_at": at + self.expires,
            "revoked_at": None if self.revoked is None else at + self.revoked,
            "signed_at": at + self.signed,
            "created_at": at + self.signed,
            "remuneration": self.paid,
            "remuneration_statement": self.paid,
            "third_party": self.sponsor,
        }
        return auth(**{**fields, **(self.defect or {})})

    def valid_for(self, scope: str, third_party: str | None) -> bool:
        if self.scope != scope or self.defect is not None:
            return False
        if self.expires <= timedelta(0) or self.signed > timedelta(0):
            return False
        if self.revoked is not None and self.revoked <= timedelta(0):
            return False
        if third_party is not None:
            return self.paid and (self.sponsor or "").strip().lower() == third_party.lower()
        return True


auth_specs = st.builds(
    AuthSpec,
    scope=st.sampled_from(list(SCOPES)),
    expires=st.one_of(st.just(timedelta(0)), offsets, st.just(timedelta(days=300))),
    revoked=st.none() | st.just(timedelta(0)) | offsets,
    signed=st.one_of(st.just(-timedelta(days=400)), offsets),
    defect=st.sampled_from(DEFECT_CHOICES),
    paid=st.booleans(),
    sponsor=st.sampled_from([None, "Acme Pharma", " acme pharma ", "Other Co"]),
)


@dataclass(frozen=True)
class ContactSpec:
    values: dict[str, Any]
    clinical: dict[str, Any]
    auths: list[AuthSpec]
    suppressed: bool


contacts = st.builds(
    ContactSpec,
    values=st.fixed_dictionaries(
        {
            "language": st.sampled_from(["en", "es", "fr", "EN"]),
            "newsletter_opt_in": st.booleans(),
            "created_at": st.datetimes(
                min_value=datetime(2023, 1, 1), max_value=datetime(2026, 1, 1)
            ),
        }
    ),
    clinical=st.fixed_dictionaries(
        {
            "conditions": st.none() | st.lists(st.sampled_from(CLINICAL_WORDS), max_size=3),
            "procedures": st.none() | st.lists(st.sampled_from(CLINICAL_WORDS), max_size=3),
            "last_exam_date": st.none() | days.map(date.isoformat) | st.just("garbage"),
        }
    ),
    auths=st.lists(auth_specs, max_size=3),
    suppressed=st.booleans(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seg=condition_segments(),
    people=st.lists(contacts, min_size=1, max_size=12),
    at=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 1, 1)),
)
def test_property_no_unauthorized_contact_is_included_or_decrypted(
    seg: Segment, people: list[ContactSpec], at: datetime
) -> None:
    plan = plan_segment(seg)
    assert plan.refusals == () and plan.requires_authorization
    ev = Evaluator(plan, at)
    calls: Counter[int] = Counter()
    included: set[int] = set()

    for cid, person in enumerate(people):

        def decrypt(cid: int = cid, person: ContactSpec = person) -> Mapping[str, Any]:
            calls[cid] += 1
            return person.clinical

        records = [spec.build(at, cid * 10 + n) for n, spec in enumerate(person.auths)]
        if ev.decide(person.values, records, person.suppressed, decrypt).included:
            included.add(cid)

    for cid, person in enumerate(people):
        authorized = any(s.valid_for(seg.scope or "", seg.third_party) for s in person.auths)
        selected = plan.sql_filter is None or matches(plan.sql_filter, person.values, at)
        if not authorized or person.suppressed:
            assert cid not in included  # SEG-2, SEG-5, suppression
            assert calls[cid] == 0  # never decrypted
        else:
            assert calls[cid] == (1 if selected else 0)
            expected = matches(seg.match, {**person.values, **person.clinical}, at)
            assert (cid in included) is expected

    c = ev.counts
    assert (
        c.considered
        == c.suppressed + sum(c.excluded_no_authorization.values()) + c.matched + c.unmatched
    )
    assert c.matched == len(included)
    assert c.authorized == c.matched + c.unmatched
