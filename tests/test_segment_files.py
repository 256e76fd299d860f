"""Segment files: the shipped examples, the format, and errors that name file, line and
the accepted names."""

from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from mailer.config import FieldSettings
from mailer.errors import EXIT_USAGE, SegmentFileError, exit_code
from mailer.segments import (
    AllOf,
    AnyOf,
    Condition,
    Not,
    load_segment,
    parse_segment,
    plan_segment,
    segment_hash,
)

ROOT = Path(__file__).resolve().parents[1]
SEGMENTS = ROOT / "segments"
FIELDS = FieldSettings()


@pytest.mark.parametrize(
    ("name", "requires", "clinical"),
    [
        ("newsletter", False, frozenset()),
        ("service-announcement", False, frozenset()),
        ("osteoporosis-followup", True, frozenset({"conditions", "procedures", "last_exam_date"})),
        ("sponsored-bone-health", True, frozenset({"conditions"})),
    ],
    ids=["newsletter", "service-announcement", "osteoporosis-followup", "sponsored-bone-health"],
)
def test_shipped_segments_load_and_plan(
    name: str, requires: bool, clinical: frozenset[str]
) -> None:
    path = SEGMENTS / f"{name}.toml"
    seg = load_segment(path, FIELDS)
    assert seg.name == name
    assert seg.description
    assert seg.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    plan = plan_segment(seg)
    assert plan.refusals == ()
    assert plan.requires_authorization is requires
    assert plan.clinical_fields == clinical
    assert plan.sql_filter is not None  # every example narrows in SQL first
    assert (plan.clinical_filter is not None) is bool(clinical)
    assert plan.explain()


def test_osteoporosis_segment_names_its_scope() -> None:
    seg = load_segment(SEGMENTS / "osteoporosis-followup.toml", FIELDS)
    assert seg.scope == "condition-targeted-marketing"
    assert seg.third_party is None


def test_every_shipped_segment_is_usable() -> None:
    files = sorted(SEGMENTS.glob("*.toml"))
    assert len(files) >= 3
    for path in files:
        assert plan_segment(load_segment(path, FIELDS)).refusals == (), path.name


BRIEF_EXAMPLE = """\
name = "osteoporosis-followup"
description = "Patients with osteoporosis indicators, for a DEXA scan campaign"
authorization_scope = "condition-targeted-marketing"
third_party = "Acme Pharma"
[match]
all = [
  { field = "newsletter_opt_in", op = "equals", value = true },
  { field = "conditions", op = "contains", value = "osteoporosis" },
  { any = [ { field = "language", op = "in", value = ["en","es"] }, { not = { field = "last_exam_date", op = "before", value = "2024-01-01" } } ] },
]
"""


def test_parses_the_documented_format() -> None:
    seg = parse_segment(BRIEF_EXAMPLE, path="x.toml", fields=FIELDS)
    assert seg.scope == "condition-targeted-marketing"
    assert seg.third_party == "Acme Pharma"
    assert seg.match == AllOf(
        (
            Condition("newsletter_opt_in", "equals", True),
            Condition("conditions", "contains", "osteoporosis"),
            AnyOf(
                (
                    Condition("language", "in", ("en", "es")),
                    Not(Condition("last_exam_date", "before", date(2024, 1, 1))),
                )
            ),
        )
    )
    assert [c.line for c in (seg.match.children[0], seg.match.children[1])] == [7, 8]  # type: ignore[union-attr]


def test_array_of_tables_and_toml_dates() -> None:
    text = """\
name = "recent"
authorization_scope = "condition-targeted-marketing"

[[match.all]]
field = "last_exam_date"
op = "after"
value = 2023-06-01

[[match.all]]
field = "last_exam_date"
op = "within"
value = "2w"

[[match.all]]
field = "procedures"
op = "exists"
"""
    seg = parse_segment(text, path="recent.toml", fields=FIELDS)
    assert seg.match == AllOf(
        (
            Condition("last_exam_date", "after", date(2023, 6, 1)),
            Condition("last_exam_date", "within", timedelta(days=14)),
            Condition("procedures", "exists", True),
        )
    )
    assert seg.description == ""


def test_single_condition_match_table() -> None:
    text = 'name = "es"\n[match]\nfield = "language"\nop = "equals"\nvalue = "es"\n'
    seg = parse_segment(text, path="es.toml", fields=FIELDS)
    assert seg.match == Condition("language", "equals", "es")


def test_segment_hash_is_sha256_of_bytes(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_bytes(BRIEF_EXAMPLE.encode())
    assert load_segment(p, FIELDS).content_hash == hashlib.sha256(p.read_bytes()).hexdigest()
    assert segment_hash(BRIEF_EXAMPLE) == segment_hash(BRIEF_EXAMPLE.encode())
    assert parse_segment(BRIEF_EXAMPLE, path="x", fields=FIELDS).content_hash == segment_hash(
        BRIEF_EXAMPLE
    )


def test_custom_clinical_fields_from_config() -> None:
    fields = FieldSettings(clinical={"referral_reason": "text", "medications": "list"})
    text = """\
name = "referrals"
authorization_scope = "condition-targeted-marketing"
[match]
all = [
  { field = "referral_reason", op = "contains", value = "fracture" },
  { field = "medications", op = "in", value = ["alendronate"] },
]
"""
    plan = plan_segment(parse_segment(text, path="r.toml", fields=fields))
    assert plan.clinical_fields == {"referral_reason", "medications"}
    with pytest.raises(SegmentFileError, match="unknown field 'conditions'"):
        parse_segment(text.replace("referral_reason", "conditions"), path="r.toml", fields=fields)


# --- errors: file, line, accepted names ---------------------------------------------------

HEADER = 'name = "t"\nauthorization_scope = "condition-targeted-marketing"\n[match]\n'


def _match_all(*conds: str) -> str:
    return HEADER + "all = [\n" + "".join(f"  {c},\n" for c in conds) + "]\n"


OK = '{ field = "newsletter_opt_in", op = "equals", value = true }'
ALL_FIELDS = [
    "conditions",
    "created_at",
    "language",
    "last_exam_date",
    "newsletter_opt_in",
    "procedures",
]


@pytest.mark.parametrize(
    ("text", "line", "needles"),
    [
        (
            _match_all(OK, '{ field = "diagnosis", op = "contains", value = "x" }'),
            6,
            ["unknown field 'diagnosis'", *ALL_FIELDS],
        ),
        (
            _match_all(OK, '{ field = "conditions", op = "has", value = "x" }'),
            6,
            ["unknown operator 'has'", "contains", "in", "exists"],
        ),
        (
            _match_all(OK, '{ field = "language", op = "before", value = "2024-01-01" }'),
            6,
            ["operator 'before' does not apply to 'language'", "equals, in, contains, exists"],
        ),
        (
            _match_all(OK, '{ field = "conditions", op = "equals", value = "x" }'),
            6,
            ["operator 'equals' does not apply to 'conditions'", "contains, in, exists"],
        ),
        (
            _match_all(OK, '{ field = "newsletter_opt_in", op = "equals", value = "yes" }'),
            6,
            ["'newsletter_opt_in' equals", "true or false"],
        ),
        (
            _match_all(OK, '{ field = "last_exam_date", op = "before", value = "2024-13-01" }'),
            6,
            ["ISO date"],
        ),
        (
            _match_all(OK, '{ field = "last_exam_date", op = "within", value = "1 year" }'),
            6,
            ["duration", "365d"],
        ),
        (
            _match_all(OK, '{ field = "language", op = "in", value = "en" }'),
            6,
            ["non-empty array of strings"],
        ),
        (
            _match_all(OK, '{ field = "conditions", op = "contains", value = 5 }'),
            6,
            ["non-empty string"],
        ),
        (
            _match_all(OK, '{ field = "conditions", op = "contains" }'),
            6,
            ["missing 'value'"],
        ),
        (
            _match_all(OK, '{ field = "conditions", value = "x" }'),
            6,
            ["without an 'op'", "contains, in, exists"],
        ),
        (
            _match_all(OK, '{ fild = "conditions", op = "contains", value = "x" }'),
            6,
            ["unknown key 'fild'", "field, op, value"],
        ),
        (
            _match_all(OK, '{ all = [], field = "language" }'),
            6,
            ["must hold only 'all'"],
        ),
        (
            _match_all(OK, "{ any = [] }"),
            6,
            ["'any' must be a non-empty array"],
        ),
        (
            HEADER + 'not = [{ field = "language", op = "equals", value = "en" }]\n',
            4,
            ["'not' must be a table"],
        ),
        (
            HEADER + "all = []\n",
            4,
            ["'all' must be a non-empty array"],
        ),
        (
            _match_all(OK, '"not a table"'),
            4,
            ["each item of 'all' must be a table"],
        ),
        (
            'name = "t"\nauthorization_scope = "marketting"\n[match]\n' + f"all = [{OK}]\n",
            2,
            [
                "unknown authorization_scope",
                "condition-targeted-marketing",
                "third-party-marketing",
            ],
        ),
        (
            'name = "t"\naudience = "all"\n[match]\n' + f"all = [{OK}]\n",
            2,
            [
                "unknown key 'audience'",
                "name, description, authorization_scope, third_party, match",
            ],
        ),
        (
            'description = "no name"\n[match]\n' + f"all = [{OK}]\n",
            1,
            ["missing required key 'name'"],
        ),
        (
            'name = "t"\n',
            1,
            ["missing [match] table"],
        ),
        (
            'name = ""\n[match]\n' + f"all = [{OK}]\n",
            1,
            ["'name' must be a non-empty string"],
        ),
    ],
    ids=[
        "unknown-field",
        "unknown-operator",
        "operator-wrong-for-type",
        "equals-on-list",
        "bool-value-type",
        "bad-date",
        "bad-duration",
        "in-needs-array",
        "contains-needs-string",
        "missing-value",
        "missing-op",
        "unknown-condition-key",
        "group-mixed-with-condition",
        "empty-any",
        "not-needs-a-table",
        "empty-all",
        "node-not-a-table",
        "unknown-scope",
        "unknown-top-key",
        "missing-name",
        "missing-match",
        "empty-name",
    ],
)
def test_errors_name_file_line_and_accepted_names(text: str, line: int, needles: list[str]) -> None:
    with pytest.raises(SegmentFileError) as info:
        parse_segment(text, path="segments/bad.toml", fields=FIELDS)
    msg = str(info.value)
    assert msg.startswith(f"segments/bad.toml:{line}: "), msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert exit_code(info.value) == EXIT_USAGE


def test_repeated_field_points_at_the_right_line() -> None:
    text = _match_all(
        '{ field = "conditions", op = "contains", value = "a" }',
        '{ field = "conditions", op = "contains", value = "b" }',
        '{ field = "conditions", op = "containz", value = "c" }',
    )
    with pytest.raises(SegmentFileError, match=r"^segments/x.toml:7: unknown operator 'containz'"):
        parse_segment(text, path="segments/x.toml", fields=FIELDS)


def test_multiline_table_error_points_at_the_op_line() -> None:
    text = HEADER.replace("[match]\n", "") + (
        '[[match.all]]\nfield = "language"\nop = "equals"\nvalue = "en"\n\n'
        '[[match.all]]\nfield = "conditions"\nop = "like"\nvalue = "x"\n'
    )
    with pytest.raises(SegmentFileError) as info:
        parse_segment(text, path="m.toml", fields=FIELDS)
    assert str(info.value).startswith("m.toml:10: unknown operator 'like'")


def test_nested_error_line() -> None:
    text = HEADER + (
        "all = [\n"
        '  { field = "language", op = "equals", value = "en" },\n'
        "  { any = [\n"
        '      { field = "conditions", op = "contains", value = "x" },\n'
        '      { not = { field = "last_exam_date", op = "within", value = "soon" } },\n'
        "  ] },\n"
        "]\n"
    )
    with pytest.raises(SegmentFileError, match=r"^n.toml:8: 'last_exam_date' within"):
        parse_segment(text, path="n.toml", fields=FIELDS)


def test_invalid_toml_names_file_and_position() -> None:
    with pytest.raises(SegmentFileError) as info:
        parse_segment('name = "t"\n[match\n', path="broken.toml", fields=FIELDS)
    msg = str(info.value)
    assert msg.startswith("broken.toml: not valid TOML")
    assert re.search(r"line 2", msg)


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(SegmentFileError, match="cannot read"):
        load_segment(tmp_path / "nope.toml", FIELDS)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(SegmentFileError, match="not UTF-8"):
        load_segment(bad, FIELDS)


def test_error_messages_do_not_echo_values() -> None:
    """Segment values are the marketer's, but errors still print names only."""
    text = _match_all('{ field = "conditions", op = "contains", value = ["SECRET-VALUE"] }')
    with pytest.raises(SegmentFileError) as info:
        parse_segment(text, path="s.toml", fields=FIELDS)
    assert "SECRET-VALUE" not in str(info.value)
