"""`mailer segment check`: the reviewer's counts (never a name or an address), exit 0 when
usable and 3 when refused (SEG-1, SEG-4, SEG-5), the plan with --explain, and file errors
with exit 2. Runs the real CLI against a real SQLite file and a PostgreSQL schema."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailer.config import load_settings
from mailer.runtime import Runtime
from mailer.segments import EXCLUSION_REASONS
from mailer.store.contacts import contact_id_for
from mailer.store.suppressions import suppress
from tests.cli.conftest import config_file, mailer  # noqa: F401 - fixtures
from tests.conftest import ROOT

AT = "2026-11-28T12:00:00Z"  # "today": evaluation time pinned so the counts are exact
SEGMENTS = ROOT / "segments"
REQUIRED_KEYS = {"segment", "considered", "excluded_no_authorization", "suppressed", "matched", "refused", "rules"}
SCOPE_HEADER = (
    "email,scope,information_description,discloser,recipients,purpose,expires_at,signed_at,signature_present,"
    "statement_revocation,statement_conditioning,statement_redisclosure,copy_provided,remuneration,"
    "remuneration_statement,third_party\n"
)

Run = Callable[..., Any]


@pytest.fixture
def sample(mailer: Run) -> Run:  # noqa: F811 - the fixture imported above
    """An initialised installation with examples/contacts.csv and examples/authorizations.csv."""
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    res = mailer("authorizations", "import", str(ROOT / "examples/authorizations.csv"))
    assert res.exit_code == 0, res.output
    return mailer


def check(run: Run, segment: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    res = run("segment", "check", str(segment), "--format", "json", "--at", AT, *extra)
    assert res.exit_code in (0, 3), res.output
    return res.exit_code, json.loads(res.stdout)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def reasons(**nonzero: int) -> dict[str, int]:
    out = {r: 0 for r in EXCLUSION_REASONS}
    out.update({k.replace("_", "-"): v for k, v in nonzero.items()})
    return out


def runtime_of(config: Path) -> Runtime:
    return Runtime(load_settings(config))


# --------------------------------------------------------------------------- usable


def test_condition_segment_counts_by_reason_and_exit_0(sample: Run) -> None:
    code, data = check(sample, SEGMENTS / "osteoporosis-followup.toml")
    assert code == 0
    assert REQUIRED_KEYS <= data.keys()
    # 54 opted in; of the 7 authorizations: 4 valid, one expired on 2026-06-30, one revoked
    # on 2026-09-15, one without the redisclosure statement; 47 have none.
    assert data["considered"] == 54
    assert data["excluded_no_authorization"] == reasons(none=47, expired=1, revoked=1, incomplete=1)
    assert data["suppressed"] == 0
    assert data["authorized"] == 4 and data["matched"] == 4
    assert data["refused"] is False and data["rules"] == []
    assert data["authorization_scope"] == "condition-targeted-marketing"


def test_non_clinical_segment_needs_no_authorization(sample: Run) -> None:
    code, data = check(sample, SEGMENTS / "newsletter.toml")
    assert code == 0
    assert data["considered"] == data["matched"] == 54
    assert data["excluded_no_authorization"] == reasons()
    assert data["refused"] is False


def test_evaluation_time_decides_expiry_and_revocation(sample: Run) -> None:
    # Before the expiry (2026-06-30) and the revocation (2026-09-15) both still count.
    _, before = check(sample, SEGMENTS / "osteoporosis-followup.toml", "--at", "2026-05-01T00:00:00Z")
    assert before["matched"] == 6
    assert before["excluded_no_authorization"] == reasons(none=47, incomplete=1)


def test_suppressed_contacts_never_match(sample: Run, config_file: Path) -> None:  # noqa: F811
    rt = runtime_of(config_file)
    try:
        for address in ("carla.huang3@example.org", "ben.quinn2@example.com"):  # authorized; plain opt-in
            cid = contact_id_for(rt.engine, rt.keyring, address)
            assert cid is not None
            suppress(rt.engine, rt.ledger, rt.keyring.lookup_hash(address), "unsubscribe", contact_id=cid)
    finally:
        rt.dispose()
    _, clinical = check(sample, SEGMENTS / "osteoporosis-followup.toml")
    assert clinical["suppressed"] == 2 and clinical["matched"] == 3
    assert clinical["excluded_no_authorization"]["none"] == 46
    _, plain = check(sample, SEGMENTS / "newsletter.toml")
    assert plain["suppressed"] == 2 and plain["matched"] == 52


# --------------------------------------------------------------------------- refused


def test_seg1_condition_rule_without_scope_is_exit_3(sample: Run, tmp_path: Path) -> None:
    seg = write(tmp_path, "noscope.toml", 'name = "noscope"\n[match]\nall = [\n'
                '  { field = "conditions", op = "contains", value = "osteoporosis" },\n]\n')
    code, data = check(sample, seg)
    assert code == 3
    assert data["refused"] is True and data["rules"] == ["SEG-1"]
    assert data["matched"] == 0


def test_seg4_zero_authorized_is_exit_3_with_the_counts(sample: Run, tmp_path: Path) -> None:
    seg = write(tmp_path, "marketing.toml", 'name = "mkt"\nauthorization_scope = "marketing"\n[match]\nall = [\n'
                '  { field = "language", op = "equals", value = "es" },\n'
                '  { field = "conditions", op = "contains", value = "asthma" },\n]\n')
    code, data = check(sample, seg)
    assert code == 3 and data["rules"] == ["SEG-4"]
    spanish = sum(1 for r in csv.DictReader((ROOT / "examples/contacts.csv").open()) if r["language"] == "es")
    assert data["considered"] == spanish > 0
    # one Spanish reader holds a condition-targeted-marketing record: another scope
    assert data["excluded_no_authorization"] == reasons(none=spanish - 1, scope=1)
    reason = data["refusals"][0]["reason"]
    assert f"0 of {spanish} considered" in reason and f"none: {spanish - 1}" in reason


def test_seg5_paid_segment_without_the_paid_scope_is_exit_3(sample: Run, tmp_path: Path) -> None:
    seg = write(tmp_path, "paid.toml", 'name = "paid"\nauthorization_scope = "condition-targeted-marketing"\n'
                'third_party = "Acme Pharma"\n[match]\nall = [ { field = "conditions", op = "contains", value = "osteoporosis" } ]\n')
    code, data = check(sample, seg)
    assert code == 3 and data["rules"] == ["SEG-5"]


def _paid_authorizations(tmp_path: Path, rows: list[tuple[str, bool, str]]) -> Path:
    lines = [SCOPE_HEADER]
    for email, statement, sponsor in rows:
        lines.append(f"{email},third-party-marketing,Diagnoses,Riverside Imaging Center,Acme Pharma,Sponsored education,"
                     f"2027-12-31T00:00:00Z,2026-03-01T10:00:00Z,true,true,true,true,true,true,"
                     f"{'true' if statement else 'false'},{sponsor}\n")
    return write(tmp_path, "paid-auths.csv", "".join(lines))


def test_seg5_per_recipient_remuneration_and_third_party(sample: Run, tmp_path: Path) -> None:
    paid = _paid_authorizations(tmp_path, [
        ("kenji.evans1@example.com", True, "Acme Pharma"),      # valid for the paid campaign
        ("victor.chen11@example.com", False, "Acme Pharma"),    # no remuneration statement (MKT-6)
        ("farid.diaz22@example.com", True, "Other Co"),         # names another sponsor (SEG-5)
    ])
    assert sample("authorizations", "import", str(paid)).exit_code == 0
    code, data = check(sample, SEGMENTS / "sponsored-bone-health.toml")
    assert code == 0
    assert data["matched"] == 1
    assert data["excluded_no_authorization"]["third-party"] == 2


def test_seg5_no_recipient_states_remuneration_is_exit_3(sample: Run, tmp_path: Path) -> None:
    paid = _paid_authorizations(tmp_path, [("kenji.evans1@example.com", False, "Acme Pharma")])
    assert sample("authorizations", "import", str(paid)).exit_code == 0
    code, data = check(sample, SEGMENTS / "sponsored-bone-health.toml")
    assert code == 3 and data["rules"] == ["SEG-4"]
    assert data["excluded_no_authorization"]["third-party"] == 1


# --------------------------------------------------------------------------- explain, text, privacy


def test_explain_shows_sql_and_decrypted_parts(sample: Run) -> None:
    _, data = check(sample, SEGMENTS / "osteoporosis-followup.toml", "--explain")
    plan = data["plan"]
    assert plan["in_sql"] == "newsletter_opt_in equals true"
    assert "conditions contains 'osteoporosis'" in plan["after_decryption"]
    assert "newsletter_opt_in" not in plan["after_decryption"]
    assert plan["clinical_fields"] == ["conditions", "last_exam_date", "procedures"]
    text = sample("segment", "check", str(SEGMENTS / "osteoporosis-followup.toml"), "--explain", "--at", AT)
    assert text.exit_code == 0
    assert "plan: in SQL (non-PHI fields): newsletter_opt_in equals true" in text.stdout
    assert "plan: after decryption, authorized contacts only" in text.stdout
    plain = sample("segment", "check", str(SEGMENTS / "newsletter.toml"), "--explain", "--format", "json")
    assert json.loads(plain.stdout)["plan"]["after_decryption"] is None


def _patient_strings() -> set[str]:
    values: set[str] = set()
    with (ROOT / "examples/contacts.csv").open() as fh:
        for row in csv.DictReader(fh):
            values.update(v for k, v in row.items() if k in ("first_name", "last_name", "preferred_name") and v)
            values.add(row["email"])
            values.add(row["email"].split("@")[0])
    return values


def test_output_never_contains_names_or_addresses(sample: Run, tmp_path: Path) -> None:
    secrets = _patient_strings()
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, secrets), key=len, reverse=True)) + r")\b")
    outputs = []
    segs = [*sorted(SEGMENTS.glob("*.toml")),
            write(tmp_path, "noscope.toml", 'name = "x"\n[match]\nall = [ { field = "conditions", op = "exists" } ]\n')]
    for seg in segs:
        for fmt in ("text", "json"):
            res = sample("segment", "check", str(seg), "--format", fmt, "--explain", "--at", AT)
            assert res.exit_code in (0, 3)
            outputs.append(res.output)
    found = {m.group(0) for text in outputs for m in pattern.finditer(text)}
    assert found == set()


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    ("text", "line", "needles"),
    [
        ('name = "x"\n[match]\nall = [\n  { field = "diagnosis", op = "contains", value = "x" },\n]\n', 4,
         ["unknown field 'diagnosis'", "accepted fields:", "language", "conditions"]),
        ('name = "x"\n\n[[match.all]]\nfield = "language"\nop = "like"\nvalue = "en"\n', 5,
         ["unknown operator 'like'", "accepted operators", "equals, in, contains, exists"]),
    ],
    ids=["unknown-field", "unknown-operator"],
)
def test_unknown_field_or_operator_is_exit_2_naming_file_line_and_accepted(
    sample: Run, tmp_path: Path, text: str, line: int, needles: list[str]
) -> None:
    seg = write(tmp_path, "bad.toml", text)
    res = sample("segment", "check", str(seg), "--format", "json")
    assert res.exit_code == 2
    assert f"{seg}:{line}:" in res.output
    for needle in needles:
        assert needle in res.output
    assert res.stdout == ""  # nothing half-printed on stdout


@pytest.mark.parametrize(
    "args",
    [("--format", "xml"), ("--at", "yesterday")],
    ids=["bad-format", "bad-time"],
)
def test_bad_options_are_exit_2(sample: Run, args: tuple[str, ...]) -> None:
    res = sample("segment", "check", str(SEGMENTS / "newsletter.toml"), *args)
    assert res.exit_code == 2


def test_missing_segment_file_is_exit_2(sample: Run, tmp_path: Path) -> None:
    res = sample("segment", "check", str(tmp_path / "nope.toml"))
    assert res.exit_code == 2
    assert "nope.toml" in res.output
