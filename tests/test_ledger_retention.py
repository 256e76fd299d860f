"""Retention (AUTH-9, 164.530(j)): six years; a purge keeps the chain verifiable through a signed anchor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError
from test_ledger_support import cli, drop_triggers, send_event, sql, write_config

from mailer.errors import RetentionRefusal
from mailer.ledger import AUTHORIZATION, Event
from mailer.models import Authorization, Contact
from mailer.retention import add_years, latest_cutoff, plan_purge, purge
from mailer.store.auth_records import encrypt_record

NOW = datetime(2026, 11, 28, 12, 0)


def _history(rt: Any) -> None:
    """Entries 1-10 in 2019, 11-20 in 2020-10, 21-30 this year."""
    for year, month, first in ((2019, 3, 1), (2020, 10, 11), (2026, 6, 21)):
        rt.ledger.append([send_event(i, at=datetime(year, month, 1 + i % 20, 9, 0)) for i in range(first, first + 10)])


def test_the_cutoff_is_six_years_back_and_leap_days_land_on_the_28th() -> None:
    assert latest_cutoff(NOW) == datetime(2020, 11, 28, 12, 0)
    assert add_years(datetime(2024, 2, 29), 6) == datetime(2030, 2, 28)


def test_a_purge_inside_six_years_is_refused_naming_auth_9_and_the_dates(runtime_factory: Any) -> None:
    rt = runtime_factory()
    _history(rt)
    with pytest.raises(RetentionRefusal) as info:
        purge(rt.ledger, datetime(2021, 1, 1), now=NOW)
    err = info.value
    assert err.rules == ("AUTH-9",) and err.exit_code == 3
    assert "2020-11-28" in err.hint and "2027-01-01" in err.hint  # latest allowed today; when this one becomes allowed
    assert rt.ledger.verify().entries == 30


def test_the_cli_refuses_with_exit_3(runtime_factory: Any, tmp_path: Any) -> None:
    rt = runtime_factory()
    _history(rt)
    res = cli(write_config(rt, tmp_path), "ledger", "purge", "--before", "2025-01-01")
    assert res.exit_code == 3, res.output
    assert "AUTH-9" in res.output and "allowed" in res.output
    assert rt.ledger.verify().ok  # nothing purged: the 30 entries, plus the signed-in account's access entries
    assert sum(1 for r in rt.ledger.rows() if r.kind != "access") == 30


def test_a_lawful_purge_leaves_a_verifiable_anchored_chain(runtime_factory: Any) -> None:
    rt = runtime_factory()
    _history(rt)
    plan = plan_purge(rt.ledger, datetime(2020, 6, 1), now=NOW)
    assert (plan.first_seq, plan.through_seq, plan.entries) == (1, 10, 10)
    purge(rt.ledger, datetime(2020, 6, 1), now=NOW, actor="records-officer")
    v = rt.ledger.verify()
    assert v.ok, v
    assert v.anchor_seq == 10 and v.entries == 21  # 20 kept + the purge's own entry
    last = list(rt.ledger.rows())[-1]
    assert (last.kind, last.outcome, last.rule_ids, last.actor) == ("system", "purge", "AUTH-9", "records-officer")
    # the append-only triggers are back
    with pytest.raises(DBAPIError, match="append-only"):
        sql(rt.engine, "DELETE FROM ledger WHERE seq = 11")
    # a second purge continues from the anchor
    purge(rt.ledger, datetime(2020, 11, 1), now=NOW)
    v = rt.ledger.verify()
    assert v.ok and v.anchor_seq == 20


def test_a_purge_of_everything_continues_the_chain_from_the_anchor(runtime_factory: Any) -> None:
    rt = runtime_factory()
    rt.ledger.append([send_event(i, at=datetime(2018, 1, 1)) for i in range(1, 6)])
    purge(rt.ledger, datetime(2019, 1, 1), now=NOW)
    rt.ledger.append([send_event(99)])
    v = rt.ledger.verify()
    assert v.ok and v.anchor_seq == 5 and v.last_seq == 7


def test_a_forged_anchor_or_entries_before_it_are_found(runtime_factory: Any) -> None:
    rt = runtime_factory()
    _history(rt)
    purge(rt.ledger, datetime(2020, 6, 1), now=NOW)
    drop_triggers(rt.engine)
    # hide entries 11-15 by moving the anchor forward (without the key)
    sql(rt.engine, "DELETE FROM ledger WHERE seq <= 15")
    sql(rt.engine, "UPDATE ledger_checkpoint SET seq = 15 WHERE name = 'purged'")
    v = rt.ledger.verify()
    assert (v.ok, v.reason, v.first_bad_seq) == (False, "anchor", 16)


def test_entries_removed_after_the_anchor_are_found(runtime_factory: Any) -> None:
    rt = runtime_factory()
    _history(rt)
    purge(rt.ledger, datetime(2020, 6, 1), now=NOW)
    drop_triggers(rt.engine)
    sql(rt.engine, "DELETE FROM ledger WHERE seq = 11")
    v = rt.ledger.verify()
    assert (v.ok, v.reason, v.first_bad_seq) == (False, "missing", 11)


def _authorization(rt: Any, created: datetime, revoked: datetime | None) -> int:
    with rt.engine.begin() as conn:
        cid = conn.execute(insert(Contact.__table__).values(
            email_hash="e" * 64, email_enc=b"x", identity_enc=b"x", key_id="k1", language="en",
            newsletter_opt_in=False, created_at=created, updated_at=created)).inserted_primary_key[0]
        auth = encrypt_record(rt.keyring, {"contact_id": cid, "scope": "condition-targeted-marketing",
                                           "created_at": created, "updated_at": created, "signed_at": created,
                                           "revoked_at": revoked})
        return conn.execute(insert(Authorization.__table__).values(**auth)).inserted_primary_key[0]


def test_authorization_entries_are_kept_six_years_after_the_last_effective_date(runtime_factory: Any) -> None:
    """Rules §8 case 24: created 2024-01-10, revoked 2025-03-01 -> purge refused before 2031-03-01."""
    rt = runtime_factory()
    aid = _authorization(rt, datetime(2024, 1, 10), datetime(2025, 3, 1))
    rt.ledger.append([Event(kind=AUTHORIZATION, outcome="imported", authorization_id=aid, at=datetime(2024, 1, 10))])
    rt.ledger.append([Event(kind=AUTHORIZATION, outcome="revoked", authorization_id=aid, at=datetime(2025, 3, 1),
                            rule_ids=("AUTH-7",))])
    with pytest.raises(RetentionRefusal) as info:
        purge(rt.ledger, datetime(2024, 6, 1), now=datetime(2031, 2, 28))
    assert info.value.rules == ("AUTH-9",)
    assert "2031-03-01" in info.value.hint and info.value.refusals[0].ids == (aid,)
    purge(rt.ledger, datetime(2024, 6, 1), now=datetime(2031, 3, 2))
    v = rt.ledger.verify()
    assert v.ok and v.anchor_seq == 1


def test_an_authorization_still_in_effect_is_never_purged(runtime_factory: Any) -> None:
    rt = runtime_factory()
    aid = _authorization(rt, datetime(2010, 1, 10), None)
    rt.ledger.append([Event(kind=AUTHORIZATION, outcome="imported", authorization_id=aid, at=datetime(2010, 1, 10))])
    with pytest.raises(RetentionRefusal):
        purge(rt.ledger, datetime(2011, 1, 1), now=NOW)
