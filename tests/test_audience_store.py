"""Segment evaluation over the real store (SQLite file and PostgreSQL): authorization first,
suppression, expiry and revocation at evaluation time (rules §8 items 1 and 2), keyset
pages that neither skip nor repeat, a bounded number of queries per page, flat memory,
and the frozen audience's hash in the ledger."""

from __future__ import annotations

import gc
import hashlib
import json
import math
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from mailer import sending
from mailer.campaigns import create as create_campaign
from mailer.config import FieldSettings
from mailer.contacts import ContactInput
from mailer.db import writing
from mailer.ledger import AUDIENCE
from mailer.models import Authorization, Campaign, Contact, Delivery, LedgerEntry
from mailer.runtime import Runtime
from mailer.segments import Evaluator, SegmentPlan, load_segment, parse_segment, plan_segment
from mailer.store import audience
from mailer.store.auth_records import encrypt_record, revoke
from mailer.store.contacts import contact_id_for, encrypt_contact
from mailer.store.suppressions import suppress
from tests.conftest import ROOT

AT = datetime(2026, 11, 28, 12, 0)
SCOPE = "condition-targeted-marketing"
FIELDS = FieldSettings()
AUTHORIZED = ("carla.huang3@example.org", "rosa.chen7@example.com", "victor.chen11@example.com",
              "ximena.huang15@example.org")  # valid at AT in examples/authorizations.csv

COMPLETE: dict[str, Any] = {
    "scope": SCOPE,
    "information_description": "conditions, procedures and last exam date",
    "discloser": "Riverside Imaging Center",
    "recipients": "Riverside Imaging Center and its email service provider",
    "purpose": "tailored information about bone-density screening",
    "expires_at": datetime(2027, 12, 31),
    "signed_at": datetime(2026, 3, 1, 10),
    "signature_present": True,
    "statement_revocation": True,
    "statement_conditioning": True,
    "statement_redisclosure": True,
    "plain_language": True,
    "copy_provided": True,
    "signer": "patient",
}


def plan_of(name: str) -> SegmentPlan:
    return plan_segment(load_segment(ROOT / "segments" / f"{name}.toml", FIELDS))


def plan_text(text: str) -> SegmentPlan:
    return plan_segment(parse_segment(text, path="<test>", fields=FIELDS))


def cid(rt: Runtime, email: str) -> int:
    found = contact_id_for(rt.engine, rt.keyring, email)
    assert found is not None
    return found


def grant(rt: Runtime, contact_id: int, **overrides: Any) -> int:
    now = datetime(2026, 3, 1)
    with writing(rt.engine) as conn:
        return int(conn.execute(insert(Authorization.__table__).values(  # type: ignore[attr-defined]
            **encrypt_record(rt.keyring, {"contact_id": contact_id, "created_at": now, "updated_at": now,
                                          **COMPLETE, **overrides}))).inserted_primary_key[0])


def run(rt: Runtime, plan: SegmentPlan, at: datetime = AT, *, page: int = audience.PAGE) -> tuple[list[tuple[int, int | None]], Any]:
    ev = Evaluator(plan, at)
    got = list(audience.members(rt.engine, rt.keyring, plan, at, page=page, evaluator=ev))
    return got, ev.counts


@contextmanager
def decryptions(rt: Runtime) -> Iterator[Counter[str]]:
    """Counts every decryption by AAD kind ('phi', 'email', 'identity'; 'elements' for an
    authorization record) and contact hash (or, for a record, its identity)."""
    seen: Counter[str] = Counter()
    original = rt.keyring.decrypt

    def spy(blob: bytes, aad: bytes) -> bytes:
        _, kind, email_hash = aad.decode().split(":", 2)
        seen[kind] += 1
        seen[f"{kind}:{email_hash}"] += 1
        return original(blob, aad)

    rt.keyring.decrypt = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del rt.keyring.decrypt


@contextmanager
def statements(rt: Runtime) -> Iterator[list[str]]:
    sql: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            sql.append(statement)

    event.listen(rt.engine, "before_cursor_execute", record)
    try:
        yield sql
    finally:
        event.remove(rt.engine, "before_cursor_execute", record)


# --------------------------------------------------------------------------- who is in


def test_members_are_the_authorized_matches_with_their_authorization(sample_rt: Runtime) -> None:
    got, counts = run(sample_rt, plan_of("osteoporosis-followup"))
    ids = [cid(sample_rt, e) for e in AUTHORIZED]
    assert [c for c, _ in got] == sorted(ids)
    auth_table = Authorization.__table__  # type: ignore[attr-defined]
    with sample_rt.engine.connect() as conn:
        owner = dict(conn.execute(select(auth_table.c.id, auth_table.c.contact_id)).tuples().all())
    assert all(owner[a] == c for c, a in got if a is not None) and all(a is not None for _, a in got)
    assert counts.matched == 4 and counts.considered == 54


@pytest.mark.parametrize("name", ["newsletter", "osteoporosis-followup", "service-announcement", "sponsored-bone-health"])
def test_page_size_changes_nothing(sample_rt: Runtime, name: str) -> None:
    plan = plan_of(name)
    reference = run(sample_rt, plan)
    for page in (1, 2, 7, 59, 60, 61):
        got, counts = run(sample_rt, plan, page=page)
        assert got == reference[0]
        assert counts == reference[1]


def test_suppressed_contacts_never_match(sample_rt: Runtime) -> None:
    rt = sample_rt
    for email in ("carla.huang3@example.org", "ben.quinn2@example.com"):
        suppress(rt.engine, rt.ledger, rt.keyring.lookup_hash(email), "bounce", contact_id=cid(rt, email))
    for name, expected in (("osteoporosis-followup", 3), ("newsletter", 52)):
        got, counts = run(rt, plan_of(name))
        assert cid(rt, "carla.huang3@example.org") not in {c for c, _ in got}
        assert cid(rt, "ben.quinn2@example.com") not in {c for c, _ in got}
        assert counts.suppressed == 2 and counts.matched == expected == len(got)


def test_scope_is_compared_as_the_rules_do(sample_rt: Runtime) -> None:
    """best_validity compares scopes case- and space-insensitively, and reports 'scope' when
    only another scope's record exists: the store must not pre-filter scopes in SQL."""
    rt = sample_rt
    spelled = cid(rt, "kenji.evans1@example.com")  # opted in, osteoporosis, no record yet
    other = cid(rt, "lena.fischer14@example.com")  # opted in, osteopenia
    grant(rt, spelled, scope=" Condition-Targeted-Marketing ")
    grant(rt, other, scope="marketing")
    got, counts = run(rt, plan_of("osteoporosis-followup"))
    assert spelled in {c for c, _ in got}
    assert other not in {c for c, _ in got}
    assert counts.excluded_no_authorization["scope"] == 1


def test_a_refused_plan_reads_no_contact(sample_rt: Runtime) -> None:
    plan = plan_text('name = "x"\n[match]\nall = [ { field = "conditions", op = "contains", value = "asthma" } ]\n')
    assert [r.rule for r in plan.refusals] == ["SEG-1"]
    with statements(sample_rt) as sql, decryptions(sample_rt) as dec:
        got, counts = run(sample_rt, plan)
    assert got == [] and counts.considered == 0
    assert sql == [] and not dec


# --------------------------------------------------------------------------- decryption (SEG-2)


def test_only_authorized_contacts_are_decrypted_and_only_their_clinical_fields(sample_rt: Runtime) -> None:
    rt = sample_rt
    with decryptions(rt) as dec:
        run(rt, plan_of("osteoporosis-followup"))
    allowed = {f"phi:{rt.keyring.lookup_hash(e)}" for e in AUTHORIZED}
    decrypted = {k for k in dec if k.startswith("phi:")}
    assert decrypted == allowed
    assert all(dec[k] == 1 for k in decrypted)
    assert dec["email"] == dec["identity"] == 0
    assert dec["elements"] == 7  # each authorization record (SEC-4) decrypted once to judge it


@pytest.mark.parametrize("name", ["newsletter", "service-announcement"])
def test_non_clinical_segments_decrypt_nothing(sample_rt: Runtime, name: str) -> None:
    with decryptions(sample_rt) as dec:
        got, _ = run(sample_rt, plan_of(name))
    assert got and not dec


# --------------------------------------------------------------------------- rules §8 items 1 and 2


@pytest.mark.parametrize(
    ("at", "included", "reason"),
    [
        (datetime(2026, 6, 30, 9, 0), True, None),  # first day of the Jun 30 - Jul 2 campaign
        (datetime(2026, 6, 30, 23, 59, 59), True, None),
        (datetime(2026, 7, 1, 0, 0), False, "expired"),  # the expiry instant itself
        (datetime(2026, 7, 2, 9, 0), False, "expired"),  # scheduled before expiry, evaluated after
    ],
    ids=["jun30-morning", "jun30-last-second", "jul1-midnight", "jul2"],
)
def test_item1_expiry_at_evaluation_time(rt: Runtime, at: datetime, included: bool, reason: str | None) -> None:
    from mailer.store.contacts import import_contacts

    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(FIELDS.clinical))
    who = cid(rt, "kenji.evans1@example.com")
    auth_id = grant(rt, who, expires_at=datetime(2026, 7, 1, 0, 0))
    got, counts = run(rt, plan_of("osteoporosis-followup"), at)
    assert (got == [(who, auth_id)]) is included
    if reason:
        assert got == [] and counts.excluded_no_authorization[reason] == 1


def test_item2_revocation_at_evaluation_time(rt: Runtime) -> None:
    from mailer.store.contacts import import_contacts

    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(FIELDS.clinical))
    who = cid(rt, "kenji.evans1@example.com")
    grant(rt, who)
    monday, tuesday_10 = datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 24, 10, 0)
    plan = plan_of("osteoporosis-followup")
    assert [c for c, _ in run(rt, plan, monday)[0]] == [who]
    revoked = revoke(rt.engine, rt.ledger, contact_id=who, scope=SCOPE, at=tuesday_10)
    assert len(revoked) == 1
    assert [c for c, _ in run(rt, plan, monday)[0]] == [who]  # Monday's evaluation relied on it
    assert [c for c, _ in run(rt, plan, tuesday_10 - timedelta(seconds=1))[0]] == [who]
    for at in (tuesday_10, tuesday_10 + timedelta(hours=1)):  # the Tuesday 11:00 send slot
        with decryptions(rt) as dec:
            got, counts = run(rt, plan, at)
        assert got == [] and counts.excluded_no_authorization["revoked"] == 1
        # no contact field of anybody left to decrypt; the revoked record itself is read to judge it
        assert {k for k in dec if not k.startswith("elements")} == set() and dec["elements"] == 1


# --------------------------------------------------------------------------- freezing


def test_freeze_records_the_audience_hash_and_a_second_freeze_is_a_no_op(sample_rt: Runtime) -> None:
    rt = sample_rt
    seg = ROOT / "segments/osteoporosis-followup.toml"
    campaign = create_campaign(rt, name="dexa", purpose="newsletter", template=ROOT / "templates/newsletter",
                               segment=seg, author="tester")
    first = sending.prepare(rt, campaign, actor="tester", at=AT)
    assert first.frozen == 4 and first.counts is not None and first.counts.matched == 4

    expected = hashlib.sha256("".join(f"{c}:{a or ''}\n" for c, a in run(rt, plan_of("osteoporosis-followup"))[0])
                              .encode()).hexdigest()
    ledger = LedgerEntry.__table__  # type: ignore[attr-defined]
    deliveries = Delivery.__table__  # type: ignore[attr-defined]
    campaigns = Campaign.__table__  # type: ignore[attr-defined]

    def snapshot() -> tuple[list[dict[str, Any]], int, str]:
        with rt.engine.connect() as conn:
            entries = [json.loads(d) for d in conn.execute(
                select(ledger.c.detail).where(ledger.c.kind == AUDIENCE, ledger.c.campaign_id == campaign.id)).scalars()]
            n = len(conn.execute(select(deliveries.c.id).where(deliveries.c.campaign_id == campaign.id)).all())
            h = conn.execute(select(campaigns.c.audience_hash).where(campaigns.c.id == campaign.id)).scalar_one()
        return entries, n, h

    entries, n, stored = snapshot()
    assert entries == [{"run": 0, "recipients": 4, "audience_sha256": expected}]
    assert n == 4 and stored == expected

    second = sending.prepare(rt, campaign, actor="tester", at=AT + timedelta(days=1))
    assert second.counts is None and second.frozen == 4
    assert snapshot() == (entries, n, stored)


# --------------------------------------------------------------------------- streaming


def _bulk_contacts(rt: Runtime, n: int, *, start: int = 0, authorized_every: int = 20) -> None:
    """n contacts encrypted by the store's own encrypt_contact; 1 in `authorized_every`
    holds a valid authorization."""
    contacts = Contact.__table__  # type: ignore[attr-defined]
    now = datetime(2026, 1, 1)
    with writing(rt.engine) as conn:
        rows = []
        for i in range(start, start + n):
            c = ContactInput(line=i, email=f"p{i}@example.com", identity={"first_name": "F", "last_name": "L"},
                             language="en", newsletter_opt_in=i % 2 == 0,
                             clinical={"conditions": ["osteoporosis"], "procedures": [], "last_exam_date": "2022-01-01"})
            rows.append({**encrypt_contact(rt.keyring, c), "created_at": now})
        conn.execute(insert(contacts), rows)
        ids = conn.execute(select(contacts.c.id).where(contacts.c.id > 0).order_by(contacts.c.id)).scalars().all()
        conn.execute(insert(Authorization.__table__), [  # type: ignore[attr-defined]
            encrypt_record(rt.keyring, {**COMPLETE, "contact_id": i, "created_at": now, "updated_at": now})
            for i in ids[start::authorized_every]])


@pytest.mark.parametrize("name", ["osteoporosis-followup", "newsletter"])
def test_a_bounded_number_of_queries_per_page(runtime_factory: Any, name: str) -> None:
    rt = runtime_factory()
    _bulk_contacts(rt, 250)
    plan, page = plan_of(name), 40
    with statements(rt) as sql:
        got, counts = run(rt, plan, page=page)
    pages = math.ceil(counts.considered / page) if plan.sql_filter is not None else math.ceil(250 / page)
    per_page = 3 if plan.requires_authorization else 1  # contacts, authorizations, ciphertexts
    assert len(sql) <= per_page * pages + 1
    assert got


def _peak_bytes(rt: Runtime, plan: SegmentPlan, page: int) -> tuple[int, Any]:
    gc.collect()  # measure this evaluation, not garbage left by the setup
    tracemalloc.start()
    try:
        counts = audience.evaluate(rt.engine, rt.keyring, plan, AT, page=page)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, counts


@pytest.mark.parametrize("name", ["osteoporosis-followup", "newsletter"])
def test_memory_does_not_grow_with_the_number_of_contacts(runtime_factory: Any, name: str) -> None:
    rt = runtime_factory()
    plan, page = plan_of(name), 100
    _bulk_contacts(rt, 600)
    audience.evaluate(rt.engine, rt.keyring, plan, AT, page=page)  # warm caches (compiled SQL, pool)
    small, counts_small = _peak_bytes(rt, plan, page)
    _bulk_contacts(rt, 5400, start=600)  # ten times as many
    large, counts_large = _peak_bytes(rt, plan, page)
    assert counts_large.considered >= 9 * counts_small.considered
    # Keeping anything per contact (rows, ids, decisions) would add megabytes here.
    assert large < small * 1.3 + 128 * 1024, (small, large)
