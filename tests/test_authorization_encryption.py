"""SEC-4: authorization records are encrypted at rest, bound to their record, rotated with
the field key, and every decision made on them is the same as before encryption."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select, text, update

from mailer.authorizations import is_valid
from mailer.config import FieldSettings
from mailer.crypto import Keyring, key_id_of
from mailer.db import alembic_config, make_engine, migrate, writing
from mailer.errors import DecryptionError, StoreError
from mailer.ledger import Ledger
from mailer.models import Authorization, Contact
from mailer.segments import Evaluator, load_segment, plan_segment
from mailer.store import audience
from mailer.store.auth_records import (
    ELEMENT_FIELDS,
    AuthorizationRecord,
    authorizations_for,
    decrypt_authorization,
    grant,
    import_authorizations,
    list_authorizations,
    revoke,
)
from mailer.store.contacts import import_contacts
from mailer.store.rotation import key_status, rotate, unfinished
from mailer.store.suppressions import suppress
from tests.conftest import ROOT
from tests.test_no_cleartext_at_rest import find_cleartext

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}
SCOPE = "condition-targeted-marketing"
AT = dt.datetime(2026, 11, 28, 12, 0)
T = dt.datetime
#: Text elements given through `grant` (the sample file has no third party or representative).
GRANTED = {
    "information_description": "Mammography results and follow-up recommendations",
    "discloser": "Lakeside Women's Health Clinic",
    "recipients": "Lakeside Women's Health Clinic and Northwind Mailing Services",
    "purpose": "Offers for a sponsored breast-health programme",
    "expiration_event": "on disenrollment from the Northwind plan",
    "representative_authority": "Court-appointed guardian of the patient",
    "third_party": "Acme Pharmaceuticals Incorporated",
}


def sample_authorization_text() -> set[str]:
    """Every text element of the sample authorizations, plus those granted below."""
    values = set(GRANTED.values())
    with (ROOT / "examples/authorizations.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            values |= {row[k] for k in ELEMENT_FIELDS if row[k]}
    return values


def granted_fields(**over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "scope": "third-party-marketing", **GRANTED, "expires_at": T(2027, 12, 31), "signed_at": T(2026, 3, 1, 10),
        "signature_present": True, "statement_revocation": True, "statement_conditioning": True,
        "statement_redisclosure": True, "plain_language": True, "copy_provided": True, "signer": "representative",
        "remuneration": True, "remuneration_statement": True,
        "document_sha256": hashlib.sha256(b"signed form").hexdigest(),
    }
    fields.update(over)
    return fields


@pytest.fixture
def loaded(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    return rt


def _all_records(rt: Any, keyring: Keyring | None = None) -> dict[int, AuthorizationRecord]:
    found = authorizations_for(rt.engine, keyring or rt.keyring, range(1, 100))
    return {r.id: r for recs in found.values() for r in recs if r.id is not None}


def _statuses(rt: Any, keyring: Keyring, at: dt.datetime) -> list[tuple[int, str, tuple[str, ...]]]:
    return [(r.id, r.status, r.rules) for r in list_authorizations(rt.engine, keyring, at=at)]


# -- nothing in clear ----------------------------------------------------------------------


def test_the_sqlite_file_and_its_wal_hold_no_authorization_text(runtime_factory: Any, db_url: str) -> None:
    if not db_url.startswith("sqlite:///"):
        pytest.skip("reads the SQLite file's raw bytes")
    db = Path(db_url.removeprefix("sqlite:///"))
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    grant(rt.engine, rt.keyring, rt.ledger, contact_id=2, fields=granted_fields())
    revoke(rt.engine, rt.ledger, contact_id=3, scope=SCOPE)
    rotate(rt.engine, rt.keyring, rt.ledger, batch=4)
    values = sample_authorization_text()
    assert {"Diagnoses, procedures and exam dates held by Riverside Imaging",
            "Tailored information about bone-density screening", "Acme Pharmaceuticals Incorporated"} <= values
    assert Path(f"{db}-wal").exists(), "the WAL should still hold recent pages while the engine is open"
    for p in (p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()):
        assert find_cleartext(p.read_bytes(), values) == set(), p.name
    with sqlite3.connect(db) as conn:
        for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            for row in conn.execute(f'SELECT * FROM "{t}"'):  # noqa: S608 - table names from sqlite_master
                cells = " ".join(str(c) for c in row if isinstance(c, str))
                assert find_cleartext(cells.encode(), values) == set(), t
    # ... and it all reads back
    rec = next(r for r in _all_records(rt).values() if r.contact_id == 2)
    assert {k: getattr(rec, k) for k in GRANTED} == GRANTED
    assert is_valid(rec, "third-party-marketing", AT, "Acme Pharmaceuticals Incorporated").valid


def test_a_decrypted_record_keeps_its_text_out_of_repr(loaded: Any) -> None:
    aid = grant(loaded.engine, loaded.keyring, loaded.ledger, contact_id=2, fields=granted_fields())
    rec = _all_records(loaded)[aid]
    assert not any(v in repr(rec) for v in GRANTED.values())
    assert f"id={aid}" in repr(rec) and "third-party-marketing" in repr(rec)


def test_elements_are_stored_once_under_the_active_key(loaded: Any) -> None:
    t = Authorization.__table__  # type: ignore[attr-defined]
    with loaded.engine.connect() as conn:
        rows = conn.execute(select(t)).all()
    assert len(rows) == 7
    assert all(r.key_id == "k1" and key_id_of(r.elements_enc) == "k1" for r in rows)
    assert not any(hasattr(rows[0], name) for name in ELEMENT_FIELDS)


# -- bound to the record -------------------------------------------------------------------


def _swap(rt: Any, a: int, b: int) -> None:
    t = Authorization.__table__  # type: ignore[attr-defined]
    with writing(rt.engine) as conn:
        blobs = dict(conn.execute(select(t.c.id, t.c.elements_enc).where(t.c.id.in_([a, b]))).tuples().all())
        conn.execute(update(t).where(t.c.id == a).values(elements_enc=blobs[b]))
        conn.execute(update(t).where(t.c.id == b).values(elements_enc=blobs[a]))


def _row(rt: Any, auth_id: int) -> Any:
    t = Authorization.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        return conn.execute(select(t).where(t.c.id == auth_id)).one()


def test_elements_swapped_between_two_patients_fail_to_decrypt(loaded: Any) -> None:
    rt = loaded
    before = _all_records(rt)
    first, second = sorted(before)[:2]
    assert before[first].contact_id != before[second].contact_id
    _swap(rt, first, second)
    for aid in (first, second):
        with pytest.raises(DecryptionError):
            decrypt_authorization(rt.keyring, _row(rt, aid))
    with pytest.raises(DecryptionError):
        authorizations_for(rt.engine, rt.keyring, [before[first].contact_id])
    # the segment gate fails closed rather than deciding on another patient's record
    plan = plan_segment(load_segment(ROOT / "segments/osteoporosis-followup.toml", FieldSettings()))
    with pytest.raises(DecryptionError):
        audience.evaluate(rt.engine, rt.keyring, plan, AT)


def test_elements_swapped_between_two_documents_of_one_patient_fail_to_decrypt(loaded: Any) -> None:
    rt = loaded
    old = grant(rt.engine, rt.keyring, rt.ledger, contact_id=2, fields=granted_fields(signed_at=T(2025, 1, 1)))
    new = grant(rt.engine, rt.keyring, rt.ledger, contact_id=2, fields=granted_fields(third_party="Other Sponsor"))
    _swap(rt, old, new)
    for aid in (old, new):
        with pytest.raises(DecryptionError):
            decrypt_authorization(rt.keyring, _row(rt, aid))


def test_a_moved_row_fails_to_decrypt(loaded: Any) -> None:
    """Editing what the ciphertext is bound to (here: the contact) is detected too."""
    rt = loaded
    t = Authorization.__table__  # type: ignore[attr-defined]
    with writing(rt.engine) as conn:
        conn.execute(update(t).where(t.c.id == 1).values(contact_id=2))
    with pytest.raises(DecryptionError):
        decrypt_authorization(rt.keyring, _row(rt, 1))


# -- rotation ------------------------------------------------------------------------------


def test_rotation_reencrypts_authorizations_and_they_validate_the_same(loaded: Any) -> None:
    rt = loaded
    grant(rt.engine, rt.keyring, rt.ledger, contact_id=2, fields=granted_fields())
    records = _all_records(rt)
    moments = (T(2026, 6, 1), AT, T(2028, 1, 1))
    statuses = {at: _statuses(rt, rt.keyring, at) for at in moments}
    res = rotate(rt.engine, rt.keyring, rt.ledger, batch=3)
    assert res.rewritten == 60 + 8 and res.to_key_id == "k2"
    on_disk = Keyring.load(rt.settings.keys.file)
    t = Authorization.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        rows = conn.execute(select(t.c.key_id, t.c.elements_enc)).all()
    assert {r.key_id for r in rows} == {key_id_of(r.elements_enc) for r in rows} == {"k2"}
    assert _all_records(rt, on_disk) == records
    assert {at: _statuses(rt, on_disk, at) for at in moments} == statuses
    st = key_status(rt.engine, on_disk)
    assert st["authorizations_per_key"] == {"k2": 8} and st["contacts_per_key"] == {"k2": 60}
    assert st["last_rotation"]["last_authorization_id"] == max(records)


def test_an_interrupted_rotation_resumes_inside_the_authorizations(loaded: Any) -> None:
    rt = loaded
    records = _all_records(rt)
    calls = 0

    def crash_in_authorizations(_: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 6 + 1:  # 6 pages of 10 contacts, then the one page of all 7 authorizations
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotate(rt.engine, rt.keyring, rt.ledger, batch=10, progress=crash_in_authorizations)
    pending = unfinished(rt.engine)
    assert pending is not None and pending.last_contact_id == 60 and pending.last_authorization_id == 7
    assert key_status(rt.engine, rt.keyring)["authorizations_per_key"] == {"k2": 7}
    # the next run has nothing left but to close the rotation
    res = rotate(rt.engine, Keyring.load(rt.settings.keys.file), rt.ledger, batch=10)
    assert res.resumed and res.rewritten == 0 and unfinished(rt.engine) is None
    assert _all_records(rt, Keyring.load(rt.settings.keys.file)) == records


def test_a_rotation_interrupted_between_authorization_pages_loses_none(loaded: Any) -> None:
    rt = loaded
    records = _all_records(rt)
    calls = 0

    def crash(_: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 20 + 1:  # 20 pages of 3 contacts, then one page of 3 authorizations
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotate(rt.engine, rt.keyring, rt.ledger, batch=3, progress=crash)
    pending = unfinished(rt.engine)
    assert pending is not None and (pending.last_contact_id, pending.last_authorization_id) == (60, 3)
    assert key_status(rt.engine, rt.keyring)["authorizations_per_key"] == {"k1": 4, "k2": 3}
    keyring = Keyring.load(rt.settings.keys.file)
    res = rotate(rt.engine, keyring, Ledger(rt.engine, keyring), batch=3)
    assert res.resumed and res.rewritten == 4
    assert key_status(rt.engine, keyring)["authorizations_per_key"] == {"k2": 7}
    assert _all_records(rt, keyring) == records


# -- decisions unchanged -------------------------------------------------------------------

#: Segment counts on the sample data, computed by the code before authorizations were
#: encrypted: (considered, authorized, matched, non-zero exclusions, members with their
#: authorization id).
EXPECTED = {
    T(2026, 6, 1): (54, 6, 6, {"incomplete": 1, "none": 47}, [(3, 1), (7, 2), (11, 3), (15, 4), (19, 5), (27, 7)]),
    AT: (54, 4, 4, {"expired": 1, "incomplete": 1, "none": 47, "revoked": 1}, [(3, 1), (7, 2), (11, 3), (15, 4)]),
    T(2028, 1, 1): (54, 0, 0, {"expired": 6, "none": 47, "revoked": 1}, []),
}


def _counts(rt: Any, name: str, at: dt.datetime, keyring: Keyring | None = None) -> tuple[Any, ...]:
    plan = plan_segment(load_segment(ROOT / "segments" / f"{name}.toml", FieldSettings()))
    ev = Evaluator(plan, at)
    got = list(audience.members(rt.engine, keyring or rt.keyring, plan, at, page=7, evaluator=ev))
    c = ev.counts
    return c.considered, c.authorized, c.matched, {k: v for k, v in c.excluded_no_authorization.items() if v}, got


@pytest.mark.parametrize("at", list(EXPECTED), ids=lambda t: t.date().isoformat())
def test_segment_counts_are_unchanged_by_encryption_and_rotation(loaded: Any, at: dt.datetime) -> None:
    rt = loaded
    assert _counts(rt, "osteoporosis-followup", at) == EXPECTED[at]
    sponsored = _counts(rt, "sponsored-bone-health", at)
    assert sponsored[:4] == (52, 0, 0, {"none": 46, "scope": 6})
    rotate(rt.engine, rt.keyring, rt.ledger, batch=5)
    keyring = Keyring.load(rt.settings.keys.file)
    assert _counts(rt, "osteoporosis-followup", at, keyring) == EXPECTED[at]
    assert _counts(rt, "sponsored-bone-health", at, keyring) == sponsored


def test_segment_evaluation_decrypts_each_record_once_and_none_of_suppressed_contacts(loaded: Any) -> None:
    rt = loaded
    t, c = Authorization.__table__, Contact.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        owners = dict(conn.execute(select(t.c.id, t.c.contact_id)).tuples().all())
        hashes = dict(conn.execute(select(c.c.id, c.c.email_hash)).tuples().all())
    suppressed_contact = owners[1]
    suppress(rt.engine, rt.ledger, hashes[suppressed_contact], "unsubscribe")
    seen: list[bytes] = []
    original = rt.keyring.decrypt

    def spy(blob: bytes, aad: bytes) -> bytes:
        if aad.startswith(b"authorization:"):
            seen.append(aad)
        return original(blob, aad)

    rt.keyring.decrypt = spy  # type: ignore[method-assign]
    try:
        plan = plan_segment(load_segment(ROOT / "segments/osteoporosis-followup.toml", FieldSettings()))
        counts = audience.evaluate(rt.engine, rt.keyring, plan, AT, page=5)
    finally:
        del rt.keyring.decrypt
    assert counts.suppressed == 1 and counts.matched == 3
    assert len(seen) == len(set(seen)) == len(owners) - 1
    assert not any(a.startswith(f"authorization:elements:{suppressed_contact}:".encode()) for a in seen)


def test_the_send_time_recheck_decrypts_only_the_recipients_records_for_the_scope(loaded: Any) -> None:
    rt = loaded
    grant(rt.engine, rt.keyring, rt.ledger, contact_id=3, fields=granted_fields())
    got = authorizations_for(rt.engine, rt.keyring, [3], SCOPE)
    assert [r.scope for r in got[3]] == [SCOPE]
    assert len(authorizations_for(rt.engine, rt.keyring, [3])[3]) == 2


# -- migration -----------------------------------------------------------------------------


#: The authorization table as migration 0002 left it (text elements in clear columns).
_OLD_AUTHORIZATION = sa.table(
    "authorization",
    *(sa.column(n, sa.String()) for n in ("scope", "information_description", "discloser", "recipients", "purpose",
                                         "signer", "document_sha256")),
    *(sa.column(n, sa.Boolean()) for n in ("signature_present", "statement_revocation", "statement_conditioning",
                                          "statement_redisclosure", "plain_language", "copy_provided", "compound",
                                          "treatment_conditioned", "known_false", "remuneration",
                                          "remuneration_statement")),
    sa.column("contact_id", sa.Integer()), sa.column("created_at", sa.DateTime()),
    sa.column("updated_at", sa.DateTime()),
)


def test_the_migration_refuses_a_table_that_holds_clear_text_rows(db_url: str) -> None:
    from alembic import command

    engine = make_engine(db_url)
    cfg = alembic_config(db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002_ledger")
    now = T(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(insert(Contact.__table__).values(  # type: ignore[attr-defined]
            email_hash="e" * 64, email_enc=b"x", identity_enc=b"x", key_id="k1", language="en",
            newsletter_opt_in=False, created_at=now, updated_at=now))
        conn.execute(insert(_OLD_AUTHORIZATION).values(
            contact_id=1, scope=SCOPE, information_description="a", discloser="b", recipients="c", purpose="d",
            signer="patient", document_sha256="", created_at=now, updated_at=now,
            **dict.fromkeys(("signature_present", "statement_revocation", "statement_conditioning",
                             "statement_redisclosure", "plain_language", "copy_provided", "compound",
                             "treatment_conditioned", "known_false", "remuneration", "remuneration_statement"),
                            False)))
    with pytest.raises(StoreError, match="0003_authz_enc.*refused.*1 row"):
        migrate(engine)
    with engine.connect() as conn:  # nothing changed: the clear row and its columns are still there
        assert conn.execute(text('SELECT information_description FROM "authorization"')).scalar() == "a"
    with engine.begin() as conn:
        conn.execute(text('DELETE FROM "authorization"'))
    migrate(engine)
    with engine.connect() as conn:
        cols = set(conn.execute(select(Authorization.__table__)).keys())  # type: ignore[attr-defined]
    assert {"elements_enc", "key_id"} <= cols and not cols & set(ELEMENT_FIELDS)
    engine.dispose()
