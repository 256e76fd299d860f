"""Contact import: all-or-nothing, every bad row named by line/field/reason, idempotent re-import,
bounded duplicate detection, and no value ever echoed back."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from mailer.cli.app import app
from mailer.contacts import BadRow, ContactInput, parse_row, read_rows
from mailer.errors import ImportRejected
from mailer.ledger import CONTACT_IMPORT
from mailer.models import Contact, LedgerEntry
from mailer.store.contacts import (
    contact_id_for,
    decrypt_clinical,
    decrypt_identity,
    import_contacts,
)
from tests.conftest import ROOT

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}
HEADER = "email,first_name,last_name,language,newsletter_opt_in,conditions,last_exam_date\n"


def _import(rt: Any, path: Path, **kw: Any) -> Any:
    return import_contacts(rt.engine, rt.keyring, rt.ledger, path, CLINICAL, **kw)


def _snapshot(rt: Any) -> list[tuple[Any, ...]]:
    t = Contact.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))]


def _ledger_count(rt: Any) -> int:
    t = LedgerEntry.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t)).scalar() or 0


def _decrypted(rt: Any) -> dict[str, tuple[Any, ...]]:
    out = {}
    t = Contact.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        for row in conn.execute(select(t)):
            v = decrypt_identity(rt.keyring, row)
            out[v.email] = (row.id, v.identity, decrypt_clinical(rt.keyring, row), row.language, row.newsletter_opt_in)
    return out


BAD = (
    HEADER
    + "ann.lee@example.com,Ann,Lee,en,yes,osteoporosis,2024-05-01\n"  # 2 good
    + "not-an-address,Bob,Stone,en,yes,,\n"  # 3 bad address
    + "carl.diaz@example.com,Carl,Diaz,en,perhaps,,\n"  # 4 bad boolean
    + "\n"  # 5 blank line: skipped, still counted
    + "dana.ruiz@example.com,Dana,Ruiz,en,no,,2024-13-40\n"  # 6 bad date
    + "ANN.LEE@example.com,Ann,Lee,en,yes,,\n"  # 7 duplicate of 2 (case-insensitive)
    + "erin.moss@example.com,Erin,Moss,en,no,asthma,\n"  # 8 good
)


def test_bad_rows_are_each_reported_and_nothing_is_written(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    _import(rt, ROOT / "examples/contacts.csv")
    before, entries = _snapshot(rt), _ledger_count(rt)
    f = tmp_path / "bad.csv"
    f.write_text(BAD)
    with pytest.raises(ImportRejected) as exc:
        _import(rt, f)
    got = [(p.line, p.field, p.reason) for p in exc.value.problems]
    assert got == [
        (3, "email", "not a valid address (it has no @)"),
        (4, "newsletter_opt_in", "expected true/false, yes/no or 1/0"),
        (6, "last_exam_date", "expected an ISO date YYYY-MM-DD"),
        (7, "email", "duplicate of line 2"),
    ]
    assert "4 bad row(s)" in exc.value.message
    assert _snapshot(rt) == before and _ledger_count(rt) == entries
    # never the values
    text = str(exc.value) + repr(exc.value.problems)
    for value in ("not-an-address", "Bob", "Stone", "perhaps", "2024-13-40", "ann.lee", "Dana"):
        assert value not in text


def test_skip_invalid_imports_only_the_good_rows(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    f = tmp_path / "bad.csv"
    f.write_text(BAD)
    report = _import(rt, f, skip_invalid=True)
    assert (report.rows, report.inserted, report.skipped, report.duplicates) == (6, 2, 4, 1)
    assert [p.line for p in report.problems] == [3, 4, 6, 7]
    assert sorted(_decrypted(rt)) == ["ann.lee@example.com", "erin.moss@example.com"]
    assert _decrypted(rt)["ann.lee@example.com"][2] == {"conditions": ["osteoporosis"], "last_exam_date": "2024-05-01"}


def test_an_unknown_column_rejects_the_file_even_with_skip_invalid(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    f = tmp_path / "cols.csv"
    f.write_text("email,first_name,ssn\nann.lee@example.com,Ann,123-45-6789\n")
    with pytest.raises(ImportRejected) as exc:
        _import(rt, f, skip_invalid=True)
    assert [(p.line, p.field) for p in exc.value.problems] == [(1, "ssn")]
    assert "unknown column" in exc.value.problems[0].reason
    assert _snapshot(rt) == []


def test_reimporting_the_same_file_changes_nothing(runtime_factory: Any) -> None:
    """Same row count, ids, ciphertext bytes and updated_at; same decrypted values."""
    rt = runtime_factory()
    first = _import(rt, ROOT / "examples/contacts.csv")
    assert first.inserted == 60
    rows, values = _snapshot(rt), _decrypted(rt)
    again = _import(rt, ROOT / "examples/contacts.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 60)
    assert _snapshot(rt) == rows
    assert _decrypted(rt) == values


def test_a_changed_row_is_updated_in_place_and_missing_columns_keep_their_values(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    _import(rt, ROOT / "examples/contacts.csv")
    before = _decrypted(rt)
    f = tmp_path / "update.csv"
    # no name columns, no last_exam_date: those stay as they are
    f.write_text("email,newsletter_opt_in,conditions\nKenji.Evans1@example.com,false,osteopenia\n")
    report = _import(rt, f)
    assert (report.inserted, report.updated) == (0, 1)
    after = _decrypted(rt)
    cid, identity, clinical, language, opt_in = after["kenji.evans1@example.com"]
    old = before["kenji.evans1@example.com"]
    assert cid == old[0] and identity == old[1] and language == old[3]
    assert opt_in is False
    assert clinical == {**old[2], "conditions": ["osteopenia"]}
    assert {k: v for k, v in after.items() if k != "kenji.evans1@example.com"} == \
        {k: v for k, v in before.items() if k != "kenji.evans1@example.com"}


def test_duplicates_are_found_across_batches_without_a_growing_dict(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    f = tmp_path / "dups.csv"
    lines = [f"p{i}@example.com,P,{i},en,yes,," for i in range(9)] + ["p1@example.com,P,1,en,yes,,",
                                                                       "p8@example.com,P,8,en,yes,,"]
    f.write_text(HEADER + "\n".join(lines) + "\n")
    with pytest.raises(ImportRejected) as exc:
        _import(rt, f, batch_size=2)
    assert [(p.line, p.reason) for p in exc.value.problems] == [(11, "duplicate of line 3"), (12, "duplicate of line 10")]
    report = _import(rt, f, batch_size=2, skip_invalid=True)
    assert report.inserted == 9 and report.duplicates == 2


def test_the_import_is_one_ledger_event_with_counts_only(runtime_factory: Any) -> None:
    rt = runtime_factory()
    _import(rt, ROOT / "examples/contacts.csv", actor="marketer")
    entries = [e for e in rt.ledger.rows() if e.kind == CONTACT_IMPORT]
    assert len(entries) == 1 and entries[0].actor == "marketer"
    assert '"inserted":60' in entries[0].detail and "@" not in entries[0].detail
    assert rt.ledger.verify().ok


def test_lookup_is_by_hmac_of_the_normalized_address(runtime_factory: Any) -> None:
    rt = runtime_factory()
    _import(rt, ROOT / "examples/contacts.csv")
    assert contact_id_for(rt.engine, rt.keyring, "  KENJI.EVANS1@Example.COM ") == 1
    assert contact_id_for(rt.engine, rt.keyring, "nobody@example.com") is None


def test_progress_reports_rows_and_bytes(runtime_factory: Any) -> None:
    rt = runtime_factory()
    seen: list[tuple[int, int]] = []
    _import(rt, ROOT / "examples/contacts.csv", batch_size=25, progress=lambda r, b: seen.append((r, b)))
    assert [r for r, _ in seen] == [25, 50, 60]
    assert seen[-1][1] == (ROOT / "examples/contacts.csv").stat().st_size


def test_the_cli_prints_path_line_field_reason_and_exits_2(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[database]\nurl = "{rt.settings.database.url}"\n[keys]\nfile = "{rt.settings.keys.file}"\n')
    f = tmp_path / "bad.csv"
    f.write_text(BAD)
    from tests.helpers_accounts import cli_env

    runner = CliRunner(env=cli_env(cfg, "marketer", "marketer"))
    res = runner.invoke(app, ["--config", str(cfg), "contacts", "import", str(f)])
    assert res.exit_code == 2
    assert f"{f}:3: email: not a valid address" in res.output
    assert f"{f}:7: email: duplicate of line 2" in res.output
    assert "ann.lee" not in res.output
    ok = runner.invoke(app, ["--config", str(cfg), "contacts", "import", str(f), "--skip-invalid"])
    assert ok.exit_code == 0 and "2 new" in ok.output and "skipped 4" in ok.output


def test_there_is_no_command_that_exports_contacts_to_a_third_party() -> None:
    """SPAM-7, MKT-7: only an encrypted backup for the covered entity exists."""
    import typer.main

    group = typer.main.get_command(app)
    contacts = group.commands["contacts"]  # type: ignore[attr-defined]
    assert set(contacts.commands) == {"import", "count", "backup", "restore"}  # count: numbers only  # type: ignore[attr-defined]
    assert not any("export" in name for name in group.commands)  # type: ignore[attr-defined]


# -- the pure parser -------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)
locals_ = st.from_regex(r"[a-z][a-z0-9.]{0,15}[a-z0-9]", fullmatch=True).filter(lambda s: ".." not in s)
dates = st.dates().map(lambda d: d.isoformat()).filter(lambda s: len(s) == 10)
conds = st.lists(st.from_regex(r"[a-z][a-z ]{0,20}[a-z]", fullmatch=True), max_size=4)


@settings(max_examples=200)
@given(local=locals_, first=names, last=names, opt=st.sampled_from(["yes", "no", "TRUE", "0", ""]),
       cond=conds, date=st.one_of(st.just(""), dates))
def test_any_good_row_round_trips_through_csv(local: str, first: str, last: str, opt: str,
                                              cond: list[str], date: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["email", "first_name", "last_name", "newsletter_opt_in", "conditions", "last_exam_date"])
    w.writerow([f"{local}@Example.org", first, last, opt, ";".join(cond), date])
    w.writerow(["next@example.org", "", "", "", "", ""])
    buf.seek(0)
    items = list(read_rows(buf, "x.csv", CLINICAL))
    assert all(isinstance(i, ContactInput) for i in items), items
    c = items[0]
    assert isinstance(c, ContactInput)
    assert c.email == f"{local}@example.org"
    assert c.identity["first_name"] == first.strip() and c.identity["last_name"] == last.strip()
    assert c.newsletter_opt_in is (opt.lower() in ("yes", "true"))
    assert c.clinical["conditions"] == [x.strip() for x in cond]
    assert c.clinical["last_exam_date"] == (date or None)
    # the next record's line accounts for newlines inside quoted cells
    assert items[1].line == 3 + sum(v.count("\n") + v.count("\r") for v in (first, last))


@given(bad=st.text(min_size=1, max_size=20).filter(lambda s: s.strip() and s.strip().lower() not in
                                                    {"1", "true", "yes", "y", "t", "0", "false", "no", "n", "f"}))
def test_a_bad_boolean_is_reported_without_its_value(bad: str) -> None:
    row = {"email": "a@example.com", "newsletter_opt_in": bad}
    result = parse_row(9, row, {}, ";")
    assert isinstance(result, BadRow)
    assert [(p.line, p.field) for p in result.problems] == [(9, "newsletter_opt_in")]
    assert result.problems[0].reason == "expected true/false, yes/no or 1/0"  # fixed text, never the cell


@given(value=st.text(max_size=12))
def test_a_clinical_date_is_iso_or_rejected(value: str) -> None:
    import datetime as dt

    result = parse_row(2, {"email": "a@example.com", "last_exam_date": value}, CLINICAL, ";")
    v = value.strip()
    try:
        ok = not v or (len(v) == 10 and dt.date.fromisoformat(v).isoformat() == v)
    except ValueError:
        ok = False
    if ok:
        assert isinstance(result, ContactInput)
    else:
        assert isinstance(result, BadRow) and result.problems[0].field == "last_exam_date"


@pytest.mark.parametrize("raw", ["ann.smith@", "ann@@example.com", "ann smith@example.com", "ann@exa_mple.com",
                                 "ann@-example.com", "ann@example", ""],
                         ids=["no-domain", "two-at", "space", "bad-domain-char", "hyphen", "no-dot", "empty"])
def test_a_bad_address_is_reported_without_echoing_any_part_of_it(raw: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from mailer.contacts import address_problem

    with pytest.raises(EmailNotValidError) as err:
        validate_email(raw, check_deliverability=False)
    reason = address_problem(raw, err.value)
    for part in filter(None, re.split(r"[@. ]+", raw)):
        assert part not in reason
