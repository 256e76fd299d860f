"""Processing bounces and complaints (issue 19): suppress what the rules say, change
nothing for anything forged, malformed or oversized, idempotent, and nothing lost on a
crash. Real SQLite files (and PostgreSQL when configured), real Maildirs."""

from __future__ import annotations

import mailbox
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailer import campaigns
from mailer.bounces.mailbox import fetch_maildir
from mailer.bounces.models import BounceEvent, BounceHeld, BounceToken
from mailer.bounces.process import Incoming, Processor
from mailer.bounces.rates import campaign_rates
from mailer.contacts import normalize_email
from mailer.crypto import token_hash
from mailer.models import LedgerEntry, Suppression, utcnow
from tests.bounces.helpers import (
    arf,
    bounce_settings,
    dsn,
    import_patients,
    maildir_with,
    send_campaign,
)


@pytest.fixture
def brt(runtime_factory, tmp_path):  # type: ignore[no-untyped-def]
    rt = runtime_factory(None, **bounce_settings())
    import_patients(rt, tmp_path)
    return rt


def suppressed(rt) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with rt.engine.connect() as conn:
        return {r.email_hash: r.reason for r in conn.execute(select(Suppression.__table__))}


def bounce_entries(rt) -> list:  # type: ignore[no-untyped-def]
    t = LedgerEntry.__table__
    with rt.engine.connect() as conn:
        return conn.execute(select(t).where(t.c.kind == "bounce").order_by(t.c.seq)).all()


def h(rt, addr: str) -> str:  # type: ignore[no-untyped-def]
    return rt.keyring.lookup_hash(normalize_email(addr))


async def test_each_message_gets_a_random_return_path_stored_as_a_hash(brt) -> None:
    cid, sent = await send_campaign(brt)
    assert len(sent) == 6 and len({m.token for m in sent}) == 6
    with brt.engine.connect() as conn:
        rows = conn.execute(select(BounceToken.__table__)).all()
    assert {r.token_hash for r in rows} == {token_hash(m.token) for m in sent}  # only hashes at rest
    assert all(m.token not in repr(r) for m in sent for r in rows)
    assert all(r.campaign_id == cid for r in rows)


async def test_hard_bounce_suppresses_at_once_and_is_a_ledger_entry(brt, tmp_path) -> None:
    cid, sent = await send_campaign(brt)
    md = maildir_with(tmp_path / "Maildir", [dsn(sent[0])])
    totals = fetch_maildir(Processor(brt, actor="ops"), md)
    assert totals.by_class == {"hard": 1} and totals.suppressed == 1
    assert suppressed(brt) == {h(brt, sent[0].recipient): "bounce"}
    [e] = bounce_entries(brt)
    assert (e.outcome, e.campaign_id, e.rule_ids, e.actor) == ("hard", cid, "BNC-1", "ops")
    assert '"status":"5.1.1"' in e.detail and "@" not in e.detail and "Could not deliver" not in e.detail
    # filed away, never deleted
    assert not list((md / "new").iterdir())
    assert len(list((md / ".mailer-processed" / "cur").iterdir())) == 1
    assert brt.ledger.verify().ok


async def test_the_same_dsn_twice_is_one_event(brt, tmp_path) -> None:
    _cid, sent = await send_campaign(brt)
    raw = dsn(sent[1])
    proc = Processor(brt)
    first = proc.process([Incoming(raw, "smtp"), Incoming(raw, "smtp")])
    again = fetch_maildir(proc, maildir_with(tmp_path / "Maildir", [raw]))
    assert [o.disposition for o in first] == ["applied", "duplicate"]
    assert again.by_disposition == {"duplicate": 1}
    assert len(bounce_entries(brt)) == 1
    with brt.engine.connect() as conn:
        assert len(conn.execute(select(BounceEvent.__table__)).all()) == 1


async def test_soft_bounces_suppress_only_at_the_limit_within_the_window(runtime_factory, tmp_path) -> None:
    rt = runtime_factory(None, **bounce_settings(soft_limit=2, soft_window_days=7))
    import_patients(rt, tmp_path)
    target = "pat2@patients.example.com"
    _c1, s1 = await send_campaign(rt, "one")
    _c2, s2 = await send_campaign(rt, "two")
    _c3, s3 = await send_campaign(rt, "three")
    m1, m2, m3 = (next(m for m in s if m.recipient == target) for s in (s1, s2, s3))
    old = Processor(rt, clock=lambda: utcnow() - timedelta(days=30))
    assert old.process([Incoming(dsn(m1, action="delayed", status="4.2.2"), "smtp")])[0].suppressed is False
    now = Processor(rt)
    o2 = now.process([Incoming(dsn(m2, action="delayed", status="4.4.1"), "smtp")])[0]
    assert o2.disposition == "applied" and not o2.suppressed  # the first one is outside the window
    assert suppressed(rt) == {}
    o3 = now.process([Incoming(dsn(m3, action="delayed", status="4.4.1"), "smtp")])[0]
    assert o3.suppressed and suppressed(rt) == {h(rt, target): "bounce"}


async def test_complaint_suppresses_and_pauses_recurring_runs_past_the_threshold(brt) -> None:
    cid, sent = await send_campaign(brt, cron="0 9 * * MON")
    out = Processor(brt).process([Incoming(arf(sent[3], rcpt=sent[3].recipient), "imap")])
    assert out[0].disposition == "applied" and out[0].klass == "complaint"
    assert suppressed(brt) == {h(brt, sent[3].recipient): "complaint"}
    c = campaigns.get(brt, cid)
    assert c.status == "paused" and "STD-7" in c.status_reason and "complaint rate 16.67%" in c.status_reason
    r = campaign_rates(brt.engine, cid)
    assert (r.sent, r.complaints) == (6, 1)
    [e] = [e for e in bounce_entries(brt) if e.outcome == "complaint"]
    assert e.rule_ids == "STD-7,SPAM-5"


async def test_complaint_below_the_threshold_does_not_pause(runtime_factory, tmp_path) -> None:
    rt = runtime_factory(None, **bounce_settings(complaint_rate_threshold=0.5))
    import_patients(rt, tmp_path)
    cid, sent = await send_campaign(rt, cron="0 9 * * MON")
    Processor(rt).process([Incoming(arf(sent[0]), "smtp")])
    assert campaigns.get(rt, cid).status == "scheduled"


async def test_redacted_complaint_matches_by_domain_only(brt) -> None:
    _cid, sent = await send_campaign(brt)
    ok = Processor(brt).process([Incoming(arf(sent[4], rcpt="redacted@patients.example.com"), "imap")])[0]
    assert ok.disposition == "applied"
    bad = Processor(brt).process([Incoming(arf(sent[5], rcpt="redacted@elsewhere.example"), "imap")])[0]
    assert bad.disposition == "rejected" and "recipient" in bad.reason


async def test_forged_reports_are_rejected_and_change_nothing(brt) -> None:
    _cid, sent = await send_campaign(brt)
    before = suppressed(brt)
    unknown = sent[0].__class__("x@patients.example.com", "0" * 32, "<1.999.00000000000000000000000000000000@x.example>")
    other_recipient = dsn(sent[0], recipient=sent[1].recipient)  # a real token, someone else's address
    wrong_id = sent[2].__class__(sent[2].recipient, "", sent[2].message_id[:-20] + "0" * 5 + sent[2].message_id[-15:])
    out = Processor(brt).process([Incoming(dsn(unknown), "smtp"), Incoming(other_recipient, "smtp"),
                                  Incoming(dsn(wrong_id, envelope=False), "smtp")])
    assert [o.disposition for o in out] == ["rejected"] * 3
    assert [o.reason for o in out] == ["forged: unknown return-path token",
                                       "forged: reported recipient is not the delivery's",
                                       "forged: unknown Message-ID"]
    assert suppressed(brt) == before
    with brt.engine.connect() as conn:
        assert not conn.execute(select(BounceEvent.__table__)).all()
        held = conn.execute(select(BounceHeld.__table__)).all()
    assert len(held) == 3 and all(r.body_enc and b"Could not deliver" not in r.body_enc for r in held)
    assert [e.outcome for e in bounce_entries(brt)] == ["rejected"] * 3


async def test_message_id_alone_names_the_delivery(brt) -> None:
    _cid, sent = await send_campaign(brt)
    out = Processor(brt).process([Incoming(dsn(sent[2], envelope=False), "maildir")])
    assert out[0].disposition == "applied" and suppressed(brt) == {h(brt, sent[2].recipient): "bounce"}


async def test_auto_replies_unparseable_and_oversized_are_kept_never_acted_on(runtime_factory, tmp_path) -> None:
    rt = runtime_factory(None, **bounce_settings(max_message_bytes=8192))
    import_patients(rt, tmp_path)
    _cid, sent = await send_campaign(rt)
    vacation = f"To: bounces+{sent[0].token}@bounce.riverside-imaging.example\r\nAuto-Submitted: auto-replied\r\n" \
               "Subject: away\r\n\r\nback Monday\r\n".encode()
    junk = b"\x00\xff not an email at all"
    big = dsn(sent[1]) + b"x" * 10_000
    md = maildir_with(tmp_path / "Maildir", [vacation, junk, big])
    totals = fetch_maildir(Processor(rt), md)
    assert totals.by_disposition == {"review": 2, "rejected": 1}
    assert suppressed(rt) == {}
    assert len(list((md / ".mailer-review" / "cur").iterdir())) == 2
    assert len(list((md / ".mailer-rejected" / "cur").iterdir())) == 1
    with rt.engine.connect() as conn:
        held = {r.reason: r for r in conn.execute(select(BounceHeld.__table__))}
    assert held["oversized: over 8192 bytes"].body_enc is None  # not stored: it stays in the mailbox
    assert rt.keyring.decrypt(held["auto-reply (RFC 3834)"].body_enc,
                              b"bounceheld:" + held["auto-reply (RFC 3834)"].sha256.encode()) == vacation


async def test_a_crash_mid_batch_loses_nothing(brt, tmp_path, monkeypatch) -> None:
    _cid, sent = await send_campaign(brt)
    md = maildir_with(tmp_path / "Maildir", [dsn(m) for m in sent[:4]])
    proc = Processor(brt)
    real = brt.ledger.append_in
    calls = {"n": 0}

    def crash_once(conn, events):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("power cut")
        return real(conn, events)

    monkeypatch.setattr(brt.ledger, "append_in", crash_once)
    with pytest.raises(RuntimeError):
        fetch_maildir(proc, md)
    assert suppressed(brt) == {} and len(mailbox.Maildir(str(md), create=False)) == 4  # rolled back, all still there
    totals = fetch_maildir(proc, md)
    assert totals.by_class == {"hard": 4}
    assert set(suppressed(brt)) == {h(brt, m.recipient) for m in sent[:4]}
    assert len(mailbox.Maildir(str(md), create=False)) == 0


async def test_the_next_campaign_skips_bounced_addresses(brt) -> None:
    _cid, sent = await send_campaign(brt)
    Processor(brt).process([Incoming(dsn(sent[0]), "smtp")])
    _c2, sent2 = await send_campaign(brt, "again")
    assert sent[0].recipient not in {m.recipient for m in sent2} and len(sent2) == 5


async def test_the_worker_fetches_the_maildir_on_its_schedule(runtime_factory, tmp_path) -> None:
    from mailer.bounces import schedule
    from mailer.scheduler import Worker

    md = tmp_path / "Maildir"
    rt = runtime_factory(None, **bounce_settings(fetch_from="maildir", maildir=str(md), fetch_minutes=7))
    import_patients(rt, tmp_path)
    _cid, sent = await send_campaign(rt)
    maildir_with(md, [dsn(sent[0])])
    worker = Worker(rt, name="worker-test")
    worker.start()
    try:
        job = worker.scheduler.get_job(schedule.JOB_ID)
        assert job is not None and job.trigger.interval.total_seconds() == 7 * 60
        schedule.job()  # what the scheduler runs every 7 minutes
    finally:
        worker.stop()
    assert suppressed(rt) == {h(rt, sent[0].recipient): "bounce"}
    assert [e.actor for e in bounce_entries(rt)] == ["worker-test"]


async def test_random_and_mutated_reports_never_act(brt) -> None:
    """Property: bytes that are not a genuine report for a delivery change nothing (no event,
    no suppression); every one is kept aside with a reason, none raises."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _cid, sent = await send_campaign(brt)
    genuine = dsn(sent[0])
    proc = Processor(brt)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(st.binary(max_size=2048),
                     st.tuples(st.integers(0, len(genuine) - 1), st.binary(min_size=1, max_size=8)).map(
                         lambda p: genuine[:p[0]] + p[1] + genuine[p[0] + len(p[1]):])))
    def check(raw: bytes) -> None:
        [o] = proc.process([Incoming(raw, "smtp")])
        if o.disposition == "applied":  # only a mutation that left an identifier of the delivery intact
            text = raw.decode("latin-1")  # (its return-path token, or its Message-ID when the token is gone) may act
            assert (sent[0].token in text or sent[0].message_id in text) and o.reason == ""
        else:
            assert o.disposition in ("review", "rejected", "duplicate") and o.reason

    check()
    with brt.engine.connect() as conn:
        events = conn.execute(select(BounceEvent.__table__)).all()
    assert all(e.email_hash == h(brt, sent[0].recipient) for e in events)
    assert set(suppressed(brt)) <= {h(brt, sent[0].recipient)}
