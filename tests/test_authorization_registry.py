"""The authorization registry end to end: rules §8 items 1-5 and 24 through grant/import/revoke/
list/purge, property tests around expiry and revocation, and one ledger event per act."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailer.authorizations import is_valid
from mailer.cli.app import app
from mailer.errors import ImportRejected, InputError, RetentionRefusal
from mailer.ledger import AUTHORIZATION
from mailer.store.auth_records import (
    authorizations_for,
    grant,
    import_authorizations,
    list_authorizations,
    parse_time,
    purge,
    revoke,
)
from mailer.store.contacts import import_contacts
from tests.conftest import ROOT

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}
SCOPE = "condition-targeted-marketing"
T = dt.datetime


def complete(**over: Any) -> dict[str, Any]:
    """Every 164.508(c) element present: a valid marketing authorization."""
    fields: dict[str, Any] = {
        "scope": SCOPE, "information_description": "Diagnoses and exam dates", "discloser": "Riverside Imaging",
        "recipients": "Riverside Imaging and its email provider", "purpose": "Screening reminders",
        "expires_at": T(2027, 12, 31), "signed_at": T(2026, 3, 1, 10), "signature_present": True,
        "statement_revocation": True, "statement_conditioning": True, "statement_redisclosure": True,
        "plain_language": True, "copy_provided": True, "signer": "patient",
        "document_sha256": hashlib.sha256(b"signed form").hexdigest(),
    }
    fields.update(over)
    return fields


@pytest.fixture
def reg(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    return rt


def record(rt: Any, auth_id: int, contact_id: int = 1) -> Any:
    return next(r for r in authorizations_for(rt.engine, rt.keyring, [contact_id])[contact_id] if r.id == auth_id)


def status_at(rt: Any, contact_id: int, at: T) -> tuple[str, tuple[str, ...]]:
    (row,) = list(list_authorizations(rt.engine, rt.keyring, at=at, contact_id=contact_id))
    return row.status, row.rules


# -- §8 item 1: expiry between scheduling and sending ------------------------------------

def test_item1_expiry_on_jul_1_blocks_later_sends(reg: Any) -> None:
    grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(expires_at=T(2026, 7, 1)))
    assert status_at(reg, 1, T(2026, 6, 30, 9))[0] == "valid"
    assert status_at(reg, 1, T(2026, 6, 30, 23, 59, 59))[0] == "valid"
    for send in (T(2026, 7, 1), T(2026, 7, 1, 8), T(2026, 7, 2, 9)):
        assert status_at(reg, 1, send) == ("expired", ("AUTH-5",))


# -- §8 item 2: revocation received between two sends --------------------------------------

def test_item2_revocation_tuesday_10_blocks_the_11_oclock_send(reg: Any) -> None:
    grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete())
    monday, tue_10, tue_11 = T(2026, 11, 2, 9), T(2026, 11, 3, 10), T(2026, 11, 3, 11)
    assert revoke(reg.engine, reg.ledger, contact_id=1, scope=SCOPE, at=tue_10)
    assert status_at(reg, 1, monday)[0] == "valid"  # Monday's message relied on it
    assert status_at(reg, 1, tue_11) == ("revoked", ("AUTH-7",))


def test_an_earlier_receipt_of_the_revocation_wins(reg: Any) -> None:
    aid = grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete())
    revoke(reg.engine, reg.ledger, contact_id=1, scope=SCOPE, at=T(2026, 11, 5))
    revoke(reg.engine, reg.ledger, contact_id=1, scope=SCOPE, at=T(2026, 11, 3))
    assert record(reg, aid).revoked_at == T(2026, 11, 3)
    assert revoke(reg.engine, reg.ledger, contact_id=1, scope=SCOPE, at=T(2026, 11, 4)) == []


# -- §8 item 3: expiry event; expiration "none" ----------------------------------------------

AUTH_HEADER = ("email,scope,information_description,discloser,recipients,purpose,expires_at,expiration_event,"
               "expiration_event_occurred_at,signed_at,signature_present,statement_revocation,statement_conditioning,"
               "statement_redisclosure,copy_provided,signer,representative_authority,compound,document_sha256\n")


def auth_row(email: str, *, expires: str = "2027-12-31", event: str = "", occurred: str = "", redisclosure: str = "true",
             signer: str = "patient", authority: str = "", compound: str = "false", sha: str = "ab" * 32) -> str:
    return (f"{email},{SCOPE},Diagnoses,Riverside Imaging,Riverside Imaging,Reminders,{expires},{event},{occurred},"
            f"2026-03-01T10:00:00Z,true,true,true,{redisclosure},true,{signer},{authority},{compound},{sha}\n")


def test_item3_expiry_event_and_expiration_none(reg: Any, tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_text(AUTH_HEADER
                 + auth_row("kenji.evans1@example.com", expires="", event="on disenrollment", occurred="2026-09-01")
                 + auth_row("ben.quinn2@example.com", expires="", event="none"))
    assert import_authorizations(reg.engine, reg.keyring, reg.ledger, f).imported == 2
    now = T(2026, 11, 28)
    assert status_at(reg, 1, now) == ("expired", ("AUTH-5",))
    assert status_at(reg, 1, T(2026, 8, 31))[0] == "valid"  # before the event was known
    assert status_at(reg, 2, now) == ("defective", ("AUTH-4",))


# -- §8 item 4: missing statement; compound; representative -----------------------------------

@pytest.mark.parametrize(("over", "status", "rule"), [
    ({"statement_redisclosure": False}, "incomplete", "AUTH-2"),
    ({"compound": True}, "defective", "AUTH-5"),
    ({"signer": "representative"}, "incomplete", "AUTH-8"),
], ids=["no-redisclosure-statement", "embedded-in-treatment-consent", "parent-without-authority"])
def test_item4_defects(reg: Any, over: dict[str, Any], status: str, rule: str) -> None:
    grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(**over))
    assert status_at(reg, 1, T(2026, 11, 28)) == (status, (rule,))


def test_item4_a_representative_with_authority_is_fine(reg: Any) -> None:
    grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(signer="representative",
                                                                representative_authority="parent of a minor"))
    assert status_at(reg, 1, T(2026, 11, 28))[0] == "valid"


# -- §8 item 5: paid campaign without a remuneration statement ---------------------------------

def test_item5_sponsor_pays_but_no_remuneration_statement(reg: Any) -> None:
    aid = grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(third_party="Acme Pharma"))
    v = is_valid(record(reg, aid), SCOPE, T(2026, 11, 28), third_party="Acme Pharma")
    assert v.status == "third-party" and v.rules == ("MKT-6",)
    ok = grant(reg.engine, reg.keyring, reg.ledger, contact_id=2, fields=complete(
        third_party="Acme Pharma", remuneration=True, remuneration_statement=True))
    assert is_valid(record(reg, ok, 2), SCOPE, T(2026, 11, 28), third_party="Acme Pharma").valid


# -- §8 item 24: retention ---------------------------------------------------------------------

def test_item24_purge_refused_before_2031_03_01(reg: Any) -> None:
    aid = grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(signed_at=T(2024, 1, 10), expires_at=T(2027, 1, 1)),
                now=T(2024, 1, 10))
    revoke(reg.engine, reg.ledger, contact_id=1, scope=SCOPE, at=T(2025, 3, 1))
    for at in (T(2026, 11, 28), T(2031, 2, 28, 23, 59, 59)):
        with pytest.raises(RetentionRefusal) as exc:
            purge(reg.engine, reg.ledger, contact_id=1, at=at)
        assert exc.value.exit_code == 3 and exc.value.rules == ("AUTH-9",)
        assert record(reg, aid) is not None
    assert purge(reg.engine, reg.ledger, contact_id=1, at=T(2031, 3, 1)) == [aid]
    assert authorizations_for(reg.engine, reg.keyring, [1]) == {}
    outcomes = [e.outcome for e in reg.ledger.rows() if e.kind == AUTHORIZATION]
    assert outcomes == ["granted", "revoked", "purge-refused", "purge-refused", "purged"]
    assert reg.ledger.verify().ok


def test_a_purge_is_all_or_nothing(reg: Any) -> None:
    grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(expires_at=T(2019, 1, 1)), now=T(2018, 1, 1))
    grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(scope="testimonial"), now=T(2026, 1, 1))
    with pytest.raises(RetentionRefusal):
        purge(reg.engine, reg.ledger, contact_id=1, at=T(2026, 11, 28))
    assert len(authorizations_for(reg.engine, reg.keyring, [1])[1]) == 2
    assert len(purge(reg.engine, reg.ledger, contact_id=1, scope=SCOPE, at=T(2026, 11, 28))) == 1


# -- properties over time -----------------------------------------------------------------------

minutes = st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exp=minutes, rev=st.one_of(st.none(), minutes), probe=minutes)
def test_valid_exactly_before_expiry_and_before_revocation(reg: Any, exp: int, rev: int | None, probe: int) -> None:
    base = T(2026, 7, 1)
    expires = base + dt.timedelta(minutes=exp)
    aid = grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(expires_at=expires, signed_at=T(2026, 1, 1)))
    revoked = None if rev is None else base + dt.timedelta(minutes=rev)
    if revoked is not None:
        revoke(reg.engine, reg.ledger, contact_id=1, scope=SCOPE, at=revoked)
    at = base + dt.timedelta(minutes=probe)
    v = is_valid(record(reg, aid), SCOPE, at)
    assert v.valid == (at < expires and (revoked is None or at < revoked))
    if revoked is not None and at >= revoked:
        assert v.status == "revoked"
    purge_all(reg)


def purge_all(rt: Any) -> None:
    from sqlalchemy import delete

    from mailer.db import writing
    from mailer.models import Authorization

    with writing(rt.engine) as conn:  # test cleanup between examples (not the purge command)
        conn.execute(delete(Authorization.__table__))  # type: ignore[attr-defined]


@given(st.datetimes(min_value=T(1990, 1, 1), max_value=T(2100, 1, 1)),
       st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", ""]))
def test_parse_time_gives_naive_utc(t: T, zone: str) -> None:
    text = t.isoformat() + zone
    got = parse_time(text)
    assert got is not None and got.tzinfo is None
    offset = {"Z": 0, "+00:00": 0, "+05:30": 330, "-08:00": -480, "": 0}[zone]
    assert got == t - dt.timedelta(minutes=offset)


# -- import: idempotent, conflicts, problems -------------------------------------------------------

def test_reimporting_authorizations_adds_nothing_and_conflicts_are_reported(reg: Any, tmp_path: Path) -> None:
    first = import_authorizations(reg.engine, reg.keyring, reg.ledger, ROOT / "examples/authorizations.csv")
    again = import_authorizations(reg.engine, reg.keyring, reg.ledger, ROOT / "examples/authorizations.csv")
    assert (first.imported, again.imported, again.unchanged) == (7, 0, 7)
    text = (ROOT / "examples/authorizations.csv").read_text().replace("Tailored information", "Other information", 1)
    f = tmp_path / "changed.csv"
    f.write_text(text)
    with pytest.raises(ImportRejected) as exc:
        import_authorizations(reg.engine, reg.keyring, reg.ledger, f)
    assert [(p.line, p.field) for p in exc.value.problems] == [(2, "(row)")]
    assert "differs from authorization 1" in exc.value.problems[0].reason


def test_bad_authorization_rows_are_named_by_line_and_nothing_is_written(reg: Any, tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(AUTH_HEADER + auth_row("kenji.evans1@example.com")
                 + auth_row("nobody@example.com") + auth_row("not-an-address")
                 + auth_row("ben.quinn2@example.com", expires="2027-02-30") + auth_row("uma.smith4@example.com", sha="xyz"))
    with pytest.raises(ImportRejected) as exc:
        import_authorizations(reg.engine, reg.keyring, reg.ledger, f)
    assert [(p.line, p.field) for p in exc.value.problems] == [
        (3, "email"), (4, "email"), (5, "expires_at"), (6, "document_sha256")]
    assert authorizations_for(reg.engine, reg.keyring, [1, 2, 4]) == {}


def test_grant_rejects_an_unknown_scope(reg: Any) -> None:
    with pytest.raises(InputError):
        grant(reg.engine, reg.keyring, reg.ledger, contact_id=1, fields=complete(scope="everything"))


# -- CLI ---------------------------------------------------------------------------------------

@pytest.fixture
def cli(reg: Any, tmp_path: Path) -> Any:
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[database]\nurl = "{reg.settings.database.url}"\n[keys]\nfile = "{reg.settings.keys.file}"\n')
    from tests.helpers_accounts import cli_env

    runner = CliRunner(env=cli_env(cfg, "compliance"))
    return lambda *args: runner.invoke(app, ["--config", str(cfg), *args])


def test_cli_grant_with_document_then_list_revoke_and_purge(cli: Any, reg: Any, tmp_path: Path) -> None:
    doc = tmp_path / "signed.pdf"
    doc.write_bytes(b"%PDF signed authorization")
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).date().isoformat()
    res = cli("authorizations", "grant", "--contact", "kenji.evans1@example.com", "--scope", SCOPE,
              "--information", "Diagnoses and exam dates", "--discloser", "Riverside Imaging",
              "--recipients", "Riverside Imaging", "--purpose", "Screening reminders", "--expires", soon,
              "--signed-at", "2026-03-01T10:00:00Z", "--signature", "--statement-revocation",
              "--statement-conditioning", "--statement-redisclosure", "--copy-provided", "--document", str(doc),
              "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["status"] == "valid" and data["contact_id"] == 1
    assert record(reg, data["id"]).document_sha256 == hashlib.sha256(doc.read_bytes()).hexdigest()

    listed = json.loads(cli("authorizations", "list", "--expiring-within", "30d", "--format", "json").stdout)
    assert [a["id"] for a in listed["authorizations"]] == [data["id"]]
    assert listed["authorizations"][0]["status"] == "valid"
    assert json.loads(cli("authorizations", "list", "--expiring-within", "10d", "--format", "json").stdout)[
        "authorizations"] == []
    text = cli("authorizations", "list").output
    for pii in ("kenji", "Evans", "@", "Riverside", "Screening"):
        assert pii not in text

    future = cli("authorizations", "revoke", "--contact", "1", "--scope", SCOPE, "--at", "2099-01-01")
    assert future.exit_code == 2
    assert cli("authorizations", "revoke", "--contact", "1", "--scope", SCOPE).exit_code == 0
    assert json.loads(cli("authorizations", "list", "--contact", "1", "--format", "json").stdout)[
        "authorizations"][0]["status"] == "revoked"

    refused = cli("authorizations", "purge", "--contact", "kenji.evans1@example.com")
    assert refused.exit_code == 3 and "AUTH-9" in refused.output
    outcomes = [e.outcome for e in reg.ledger.rows() if e.kind == AUTHORIZATION]
    assert outcomes == ["granted", "revoked", "purge-refused"]


def test_cli_revoke_for_an_unknown_contact_id_is_exit_2_and_records_nothing(cli: Any, reg: Any) -> None:
    res = cli("authorizations", "revoke", "--contact", "99999", "--scope", SCOPE)
    assert res.exit_code == 2 and "no contact with id 99999" in res.output
    assert [e for e in reg.ledger.rows() if e.kind == AUTHORIZATION and e.outcome.startswith("revoke")] == []


def test_cli_unknown_contact_is_exit_2_without_echoing_the_address(cli: Any) -> None:
    res = cli("authorizations", "revoke", "--contact", "someone.else@example.com", "--scope", SCOPE)
    assert res.exit_code == 2 and "someone.else" not in res.output
