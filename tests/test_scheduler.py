"""Scheduling: center-local times, the persistent job store, gates re-checked when a job
fires, the missed-run policy, and rules §8 item 2 (a revocation between two runs)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from mailer import campaigns, scheduler
from mailer.errors import ComplianceRefusal, InputError
from mailer.models import Delivery, utcnow
from mailer.store.auth_records import revoke
from tests.helpers_workflow import approved, copy_template, edit_one_character

CHICAGO = {"center": {"timezone": "America/Chicago"}}


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll for a state (never a timing assertion); fail loudly if it never comes."""
    ev = threading.Event()
    deadline = 0.0
    while deadline < timeout:
        if predicate():
            return
        ev.wait(0.05)
        deadline += 0.05
    raise AssertionError(f"timed out waiting for {what}")


def entries(rt, **where):  # type: ignore[no-untyped-def]
    return [e for e in rt.ledger.rows() if all(getattr(e, k) == v for k, v in where.items())]


def test_at_is_read_in_the_center_time_zone(runtime_factory, sink) -> None:
    rt = runtime_factory(sink, **CHICAGO)
    from mailer.store.contacts import import_contacts
    from tests.conftest import ROOT

    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    c = approved(rt)
    at = campaigns.local_time("2030-01-07 09:00", rt.settings.center.timezone)
    assert at == datetime(2030, 1, 7, 15, 0)  # 09:00 CST is 15:00 UTC, stored naive UTC
    scheduler.schedule(rt, c.id, at=at, actor="marketer")
    c = campaigns.get(rt, c.id)
    assert c.status == "scheduled" and c.schedule_at == at
    assert scheduler.next_run(rt, c.id) == at
    assert campaigns.display_time(at, "America/Chicago") == "2030-01-07 09:00 CST"


def test_cron_runs_in_the_center_time_zone_and_the_job_is_in_the_database(runtime_factory, sink) -> None:
    rt = runtime_factory(sink, **CHICAGO)
    from mailer.store.contacts import import_contacts
    from tests.conftest import ROOT

    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    c = approved(rt)
    scheduler.schedule(rt, c.id, cron="0 9 * * MON", actor="marketer")
    nxt = scheduler.next_run(rt, c.id)
    local = nxt.replace(tzinfo=UTC).astimezone(ZoneInfo("America/Chicago"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    with rt.engine.connect() as conn:  # the job store is a table of mailer's own database
        assert conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars().all() == [f"campaign-{c.id}"]
    scheduler.pause(rt, c.id, actor="marketer")
    assert scheduler.next_run(rt, c.id) is None
    scheduler.resume(rt, c.id, actor="marketer")
    assert scheduler.next_run(rt, c.id) == nxt and campaigns.get(rt, c.id).status == "scheduled"
    scheduler.cancel(rt, c.id, actor="marketer")
    assert scheduler.next_run(rt, c.id) is None and campaigns.get(rt, c.id).status == "cancelled"


@pytest.mark.parametrize(("kw", "exc"), [
    ({"cron": "61 9 * * MON"}, InputError), ({}, InputError), ({"at": datetime(2020, 1, 1)}, InputError),
], ids=["bad-cron", "neither", "past"])
def test_bad_schedules_are_input_errors(sample_rt, kw, exc) -> None:
    c = approved(sample_rt)
    with pytest.raises(exc):
        scheduler.schedule(sample_rt, c.id, actor="marketer", **kw)
    assert campaigns.get(sample_rt, c.id).status == "approved"


def test_scheduling_an_unapproved_campaign_is_a_state_error(sample_rt) -> None:
    from tests.helpers_workflow import create

    c = create(sample_rt)  # never approved
    campaigns.submit(sample_rt, c.id, actor="marketer")
    with pytest.raises(Exception) as err:  # submitted: the state allows no schedule
        scheduler.schedule(sample_rt, c.id, cron="0 9 * * MON", actor="marketer")
    assert getattr(err.value, "exit_code", None) == 2


def test_every_gate_is_checked_again_when_the_job_fires(sample_rt, sink, tmp_path) -> None:
    c = approved(sample_rt)
    scheduler.schedule(sample_rt, c.id, at=utcnow() + timedelta(hours=1), actor="marketer")
    sample_rt.settings.center.__dict__["postal_address"] = ""  # a gate fails after approval and scheduling
    scheduler.Worker(sample_rt, name="w").run_campaign(c.id)  # what the job runs when it fires
    assert sink.messages == []
    refused = entries(sample_rt, kind="refusal", campaign_id=c.id)
    assert refused and "SPAM-8" in refused[-1].rule_ids


def test_a_job_fired_from_another_folder_sends_the_approved_content(sample_rt, sink, tmp_path, monkeypatch) -> None:
    tpl = copy_template(tmp_path)
    c = approved(sample_rt, template=tpl)
    scheduler.schedule(sample_rt, c.id, at=utcnow() + timedelta(hours=1), actor="marketer")
    edit_one_character(tpl)  # after approval and scheduling: a new version, not this one
    monkeypatch.chdir("/")  # a worker started from /
    scheduler.Worker(sample_rt, name="w").run_campaign(c.id)
    assert sink.messages and all(b"Quieter" not in m.data for m in sink.messages)
    assert campaigns.get(sample_rt, c.id).status == "done"


def test_fired_one_off_sends_once_and_is_done(sample_rt, sink) -> None:
    c = approved(sample_rt)
    scheduler.schedule(sample_rt, c.id, at=utcnow() + timedelta(hours=1), actor="marketer")
    w = scheduler.Worker(sample_rt, name="w")
    w.run_campaign(c.id)
    n = len(sink.messages)
    assert n > 0 and campaigns.get(sample_rt, c.id).status == "done"
    w.run_campaign(c.id)  # a second firing finds it done: nothing more
    assert len(sink.messages) == n
    assert entries(sample_rt, kind="campaign", campaign_id=c.id, outcome="fire-skipped")


def _worker_thread(rt, **kw):  # type: ignore[no-untyped-def]
    w = scheduler.Worker(rt, poll=0.1, name="test-worker", **kw)
    stop = threading.Event()
    ready = threading.Event()
    t = threading.Thread(target=w.run_forever, args=(stop, ready.set), daemon=True)
    t.start()
    assert ready.wait(30)
    return w, stop, t


def test_missed_by_more_than_the_grace_is_skipped_and_recorded(sample_rt, sink) -> None:
    c = approved(sample_rt)
    campaigns.transition(sample_rt, c.id, "schedule", actor="marketer",
                         values={"schedule_at": utcnow() - timedelta(hours=2)})
    scheduler.put_job(sample_rt, c.id, at=utcnow() - timedelta(hours=2), cron=None)  # the worker was down
    w, stop, t = _worker_thread(sample_rt, misfire_grace=60)
    try:
        wait_for(lambda: entries(sample_rt, kind="campaign", campaign_id=c.id, outcome="missed"), "the missed entry")
        wait_for(lambda: campaigns.get(sample_rt, c.id).status == "paused", "the one-off to pause")
    finally:
        stop.set()
        t.join(30)
    assert sink.messages == []
    assert "grace" in campaigns.get(sample_rt, c.id).status_reason


def test_missed_within_the_grace_runs_once_late(sample_rt, sink) -> None:
    c = approved(sample_rt)
    at = utcnow() - timedelta(seconds=30)
    campaigns.transition(sample_rt, c.id, "schedule", actor="marketer", values={"schedule_at": at})
    scheduler.put_job(sample_rt, c.id, at=at, cron=None)
    w, stop, t = _worker_thread(sample_rt, misfire_grace=3600)
    try:
        wait_for(lambda: campaigns.get(sample_rt, c.id).status == "done", "the late run to finish")
    finally:
        stop.set()
        t.join(30)
    with sample_rt.engine.connect() as conn:
        d = Delivery.__table__
        sent = conn.execute(select(d.c.contact_id).where(d.c.campaign_id == c.id, d.c.status == "sent")).scalars().all()
    assert len(sent) == len(set(sent)) == len(sink.messages) > 0


def test_item_2_revocation_between_runs_blocks_the_later_run(sample_rt, sink) -> None:
    """Scheduled Monday; revocation received Tuesday 10:00; Tuesday 11:00 run -> AUTH-7.
    Monday's message stays a send (reliance), not an error."""
    c = approved(sample_rt, template="condition-targeted", segment="osteoporosis-followup")
    scheduler.schedule(sample_rt, c.id, cron="0 11 * * *", actor="marketer")
    w = scheduler.Worker(sample_rt, name="w")
    w.run_campaign(c.id)  # Monday's run
    monday = entries(sample_rt, kind="send", campaign_id=c.id, outcome="sent")
    assert monday and campaigns.get(sample_rt, c.id).status == "scheduled"
    target = monday[0].contact_id
    revoke(sample_rt.engine, sample_rt.ledger, contact_id=target, scope="condition-targeted-marketing",
           actor="compliance")  # Tuesday 10:00: the written revocation arrives
    w.run_campaign(c.id)  # Tuesday 11:00
    tuesday = [e for e in entries(sample_rt, campaign_id=c.id, contact_id=target) if e.seq > monday[-1].seq]
    assert [e.kind for e in tuesday] == ["skip"]
    assert "AUTH-7" in tuesday[0].rule_ids and "SEG-3" in tuesday[0].rule_ids
    # Monday's message: still a plain "sent" entry, no failure or error for it
    mine = entries(sample_rt, campaign_id=c.id, contact_id=target)
    assert [e.outcome for e in mine if e.kind == "send"] == ["sent"]
    assert sum(1 for m in sink.messages) == len(monday) + len(monday) - 1
    assert campaigns.get(sample_rt, c.id).run == 2


def test_two_workers_one_scheduler_lock(sample_rt) -> None:
    first = scheduler.SchedulerLock(sample_rt)
    second = scheduler.SchedulerLock(sample_rt)
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
    finally:
        first.release()
    assert second.try_acquire()
    second.release()


def test_a_refused_fire_pauses_a_one_off(runtime_factory, sink) -> None:
    from mailer.store.contacts import import_contacts
    from tests.conftest import ROOT

    rt = runtime_factory(sink)
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    c = approved(rt)
    scheduler.schedule(rt, c.id, at=utcnow() + timedelta(hours=1), actor="marketer")
    # the relay's BAA situation changes before the job fires
    rt2 = runtime_factory(sink, smtp={"operated_by_covered_entity": False})
    scheduler.Worker(rt2, name="w").run_campaign(c.id)
    after = campaigns.get(rt2, c.id)
    assert after.status == "paused" and "BAA-1" in after.status_reason
    assert sink.messages == []
    with pytest.raises(ComplianceRefusal):
        from mailer import preflight
        preflight.require(rt2, campaigns.get(rt2, c.id) .model_copy(update={"status": "approved"}))
