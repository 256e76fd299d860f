"""Tampering straight in the database is caught by `verify` at the right entry (SEC-5, SEC-6)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError
from test_ledger_support import cli, drop_triggers, fill, insert_row, row, sql, write_config

from mailer.ledger import GENESIS, entry_hash

N = 30


@pytest.fixture
def ledger_rt(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    fill(rt, N)
    assert rt.ledger.verify().ok
    return rt


def _resign(rt: Any, values: dict[str, Any], key: bytes) -> dict[str, Any]:
    values = dict(values)
    values["entry_hash"] = entry_hash(values)
    values["mac"] = hmac.new(key, values["entry_hash"].encode(), hashlib.sha256).hexdigest()
    return values


def _replace(rt: Any, seq: int, values: dict[str, Any]) -> None:
    sql(rt.engine, "DELETE FROM ledger WHERE seq = :s", {"s": seq})
    insert_row(rt.engine, values)


def test_the_database_refuses_update_and_delete(ledger_rt: Any) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        sql(ledger_rt.engine, "UPDATE ledger SET smtp_code = 251 WHERE seq = 3")
    with pytest.raises(DBAPIError, match="append-only"):
        sql(ledger_rt.engine, "DELETE FROM ledger WHERE seq = 3")
    if ledger_rt.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            sql(ledger_rt.engine, "TRUNCATE ledger")
    assert ledger_rt.ledger.verify().ok


@pytest.mark.parametrize(("column", "change"), [
    ("smtp_text", lambda v: v[:-1] + chr(ord(v[-1]) ^ 1)),
    ("recipient_hash", lambda v: ("1" if v[0] != "1" else "2") + v[1:]),
    ("smtp_code", lambda v: v + 1),
    ("detail", lambda v: v.replace('"attempt":1', '"attempt":2')),
    ("rule_ids", lambda v: "SPAM-5"),
], ids=["one-byte-of-smtp-text", "recipient-hash", "smtp-code", "detail", "rule-ids"])
def test_a_changed_field_is_found_at_its_entry(ledger_rt: Any, column: str, change: Any) -> None:
    drop_triggers(ledger_rt.engine)
    old = row(ledger_rt.engine, 17)[column]
    sql(ledger_rt.engine, f"UPDATE ledger SET {column} = :v WHERE seq = 17", {"v": change(old)})
    v = ledger_rt.ledger.verify()
    assert not v.ok and v.first_bad_seq == 17 and v.reason == "content", v


def test_a_changed_time_is_found(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    at = row(ledger_rt.engine, 9)["at"]
    sql(ledger_rt.engine, "UPDATE ledger SET at = :v WHERE seq = 9", {"v": str(at.replace(microsecond=at.microsecond ^ 1))})
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 9, "content")


def test_a_changed_field_with_its_hash_recomputed_fails_the_signature(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    values = row(ledger_rt.engine, 12)
    values["smtp_code"] = 550
    values["entry_hash"] = entry_hash(values)
    sql(ledger_rt.engine, "UPDATE ledger SET smtp_code = 550, entry_hash = :h WHERE seq = 12", {"h": values["entry_hash"]})
    v = ledger_rt.ledger.verify()
    assert (v.first_bad_seq, v.reason) == (12, "signature")


def test_a_re_chained_forgery_without_the_key_fails_at_its_first_entry(ledger_rt: Any) -> None:
    """Change entry 11, then recompute every hash after it and sign them with a guessed key."""
    drop_triggers(ledger_rt.engine)
    wrong = secrets.token_bytes(32)
    prev = row(ledger_rt.engine, 10)["entry_hash"]
    for seq in range(11, N + 1):
        values = row(ledger_rt.engine, seq)
        if seq == 11:
            values["outcome"] = "failed"
        values["prev_hash"] = prev
        values = _resign(ledger_rt, values, wrong)
        _replace(ledger_rt, seq, values)
        prev = values["entry_hash"]
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 11, "signature")


def test_an_entry_signed_with_a_wrong_key_is_found(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    values = _resign(ledger_rt, row(ledger_rt.engine, 5), secrets.token_bytes(32))
    sql(ledger_rt.engine, "UPDATE ledger SET mac = :m WHERE seq = 5", {"m": values["mac"]})
    v = ledger_rt.ledger.verify()
    assert (v.first_bad_seq, v.reason) == (5, "signature")


def test_an_entry_naming_an_unknown_key_is_found(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    values = row(ledger_rt.engine, 6)
    values["key_id"] = "L9"
    values = _resign(ledger_rt, values, secrets.token_bytes(32))
    _replace(ledger_rt, 6, values)
    v = ledger_rt.ledger.verify()
    assert v.first_bad_seq == 6 and v.reason in ("link", "unknown-key")


@pytest.mark.parametrize("seq", [1, 14, N - 1])
def test_a_deleted_entry_is_found(ledger_rt: Any, seq: int) -> None:
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "DELETE FROM ledger WHERE seq = :s", {"s": seq})
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, seq, "missing"), v


def test_a_deleted_tail_is_found_through_the_signed_head(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "DELETE FROM ledger WHERE seq > 27")
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 28, "missing")
    assert "28..30" in v.problem


def test_a_forged_head_is_found(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "DELETE FROM ledger WHERE seq > 27")
    sql(ledger_rt.engine, "UPDATE ledger_checkpoint SET seq = 27, entry_hash = :h WHERE name = 'head'",
        {"h": row(ledger_rt.engine, 27)["entry_hash"]})
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.reason) == (False, "head")
    sql(ledger_rt.engine, "DELETE FROM ledger_checkpoint WHERE name = 'head'")
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.reason) == (False, "head")


def test_a_forged_entry_appended_at_the_end_is_found(ledger_rt: Any) -> None:
    last = row(ledger_rt.engine, N)
    forged = dict(last, seq=N + 1, prev_hash=last["entry_hash"], outcome="sent", contact_id=999)
    insert_row(ledger_rt.engine, _resign(ledger_rt, forged, secrets.token_bytes(32)))  # triggers allow INSERT
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, N + 1, "signature")


def test_a_forged_entry_inserted_in_the_middle_is_found(ledger_rt: Any) -> None:
    """Make room after entry 8 by renumbering, then insert a well-formed entry under a guessed key."""
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "UPDATE ledger SET seq = seq + 1000 WHERE seq > 8")
    sql(ledger_rt.engine, "UPDATE ledger SET seq = seq - 999 WHERE seq > 1000")
    before = row(ledger_rt.engine, 8)
    forged = dict(before, seq=9, prev_hash=before["entry_hash"], contact_id=4242)
    insert_row(ledger_rt.engine, _resign(ledger_rt, forged, secrets.token_bytes(32)))
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 9, "signature")


def test_a_garbage_row_inserted_in_the_middle_is_found(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "UPDATE ledger SET seq = seq + 1000 WHERE seq > 20")
    sql(ledger_rt.engine, "UPDATE ledger SET seq = seq - 999 WHERE seq > 1000")
    insert_row(ledger_rt.engine, dict(row(ledger_rt.engine, 20), seq=21, prev_hash=GENESIS))
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 21, "link")


def test_two_swapped_entries_are_found_at_the_earlier(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "UPDATE ledger SET seq = -1 WHERE seq = 7")
    sql(ledger_rt.engine, "UPDATE ledger SET seq = 7 WHERE seq = 19")
    sql(ledger_rt.engine, "UPDATE ledger SET seq = 19 WHERE seq = -1")
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 7, "link")


def test_adjacent_entries_swapped_are_found(ledger_rt: Any) -> None:
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "UPDATE ledger SET seq = -1 WHERE seq = 15")
    sql(ledger_rt.engine, "UPDATE ledger SET seq = 15 WHERE seq = 16")
    sql(ledger_rt.engine, "UPDATE ledger SET seq = 16 WHERE seq = -1")
    v = ledger_rt.ledger.verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 15, "link")


def test_a_ledger_verified_with_another_key_file_fails_at_entry_1(ledger_rt: Any) -> None:
    from mailer.crypto import Keyring
    from mailer.ledger import Ledger

    v = Ledger(ledger_rt.engine, Keyring.generate()).verify()
    assert (v.ok, v.first_bad_seq, v.reason) == (False, 1, "signature")


def test_the_cli_exits_0_when_intact_and_1_at_the_broken_entry(ledger_rt: Any, tmp_path: Any) -> None:
    config = write_config(ledger_rt, tmp_path)
    ok = cli(config, "ledger", "verify", actor=None)  # verifying needs no account (it shows no entry)
    assert ok.exit_code == 0, ok.output
    assert f"ledger intact: {N} entries verified" in ok.output
    drop_triggers(ledger_rt.engine)
    sql(ledger_rt.engine, "UPDATE ledger SET tls_version = 'TLSv1.0' WHERE seq = 23")
    bad = cli(config, "ledger", "verify", actor=None)
    assert bad.exit_code == 1, bad.output
    assert "ledger BROKEN at entry 23" in bad.output
    as_json = cli(config, "ledger", "verify", "--json", actor=None)
    assert as_json.exit_code == 1
    assert '"first_bad_seq": 23' in as_json.output
