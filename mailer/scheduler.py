"""Scheduling campaigns: APScheduler 3 with its job store in mailer's own database.

One job per campaign (`campaign-<id>`): a date trigger for `--at`, a cron trigger for
`--cron` (both in the center's time zone). Jobs are written by whoever schedules (the
CLI) into the `apscheduler_jobs` table (APScheduler creates and owns it, in mailer's
database, the first time a job is written) and fired by `mailer worker`, which holds the
scheduler lock (a PostgreSQL advisory lock, or a lock file next to the SQLite database)
so that a job fires once however many workers run.

When a job fires, every gate is checked again (`preflight.require`: approval still valid
for the current hashes, lint, BAA, ...), and the sender re-checks suppression and each
recipient's authorization per message. A recurring campaign starts a new `run` each time,
with a freshly frozen audience; recipients of the previous run who are now suppressed or
no longer authorized get a `skip` ledger entry naming the rule (SPAM-5, SEG-3/AUTH-*).

Missed runs (the worker was down at the scheduled time), an explicit policy:
    * coalesce: however many runs were missed, at most one runs late;
    * misfire grace (default 1 hour, `mailer worker --misfire-grace SECONDS`): a run
      missed by less than that runs once, as soon as a worker is up;
    * missed by more: it is skipped, never sent late, and the ledger records a
      `campaign`/`missed` entry; a one-off campaign is then paused (reschedule it),
      a recurring one waits for its next run.
An interrupted run (the worker died while sending) is resumed when a worker starts:
pending recipients are sent, claimed-but-unrecorded ones are reported `uncertain` and
never resent automatically (see store/deliveries.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import column, select, table, text, update

from mailer import campaigns, preflight
from mailer.db import writing
from mailer.errors import ComplianceRefusal, InputError, MailerError, StateError
from mailer.ledger import CAMPAIGN, SKIP, Event
from mailer.models import Campaign, Delivery, utcnow
from mailer.runtime import Runtime

log = logging.getLogger(__name__)

JOBSTORE_TABLE = "apscheduler_jobs"
DEFAULT_MISFIRE_GRACE = 3600  # seconds; see the module docstring
_C = Campaign.__table__  # type: ignore[attr-defined]
_D = Delivery.__table__  # type: ignore[attr-defined]


ANCHOR_INTERVAL = 3600  # seconds between anchors of the ledger head written by the worker (SEC-5)


def job_id(campaign_id: int) -> str:
    return f"campaign-{campaign_id}"


def make_scheduler(rt: Runtime, *, misfire_grace: int = DEFAULT_MISFIRE_GRACE, threads: int = 4,
                   writer: bool = False) -> Any:
    """A BackgroundScheduler on mailer's database, in the center's time zone.

    `writer=True` gives a scheduler with no processing loop at all: it only writes jobs to
    the store (a started-but-paused BackgroundScheduler would still process due jobs once
    while shutting down, and could fire or drop another process's job)."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import BaseScheduler

    class StoreWriter(BaseScheduler):
        def wakeup(self) -> None:  # never processes jobs: the worker does
            pass

        def shutdown(self, wait: bool = True) -> None:
            super().shutdown(wait)

    return (StoreWriter if writer else BackgroundScheduler)(
        jobstores={"default": SQLAlchemyJobStore(engine=rt.engine, tablename=JOBSTORE_TABLE),
                   "memory": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": misfire_grace},
        timezone=ZoneInfo(rt.settings.center.timezone),
    )


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    t = token.strip().lower()
    if t[:3] in _DAYS and len(t) >= 3:
        return _DAYS.index(t[:3])
    n = int(t)  # ValueError: not a day
    if not 0 <= n <= 7:
        raise ValueError(f"day of week {n} is out of range 0-7")
    return n % 7


def crontab_dow(field: str) -> str:
    """A crontab(5) day-of-week field (0 or 7 = Sunday, 1 = Monday) as APScheduler day
    names: APScheduler's own numbers start at Monday = 0, so `0 9 * * 1` would otherwise
    fire on Tuesdays."""
    if field.strip() == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if step < 1:
            raise ValueError(f"step {step} must be 1 or more")
        if rng == "*":
            lo, hi = 0, 6
        elif "-" in rng:
            a, b = rng.split("-", 1)
            lo, hi = _day(a), _day(b)
            if b.strip() == "7":
                hi = 7
            if hi < lo:
                raise ValueError(f"day range {rng} runs backwards")
        else:
            lo = _day(rng)
            hi = 6 if step_s else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def crontab_to_apscheduler(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5")
    fields[4] = crontab_dow(fields[4])
    return " ".join(fields)


def trigger_for(*, at: datetime | None, cron: str | None, tz: str) -> Any:
    """`at` is naive UTC; `cron` a five-field crontab in the center's time zone."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger

    if cron:
        try:
            return CronTrigger.from_crontab(crontab_to_apscheduler(cron), timezone=ZoneInfo(tz))
        except ValueError as err:
            raise InputError(f"cron expression {cron!r} is not valid: {err}",
                             hint='five fields as in crontab(5), e.g. "0 9 * * 1" or "0 9 * * MON" '
                             "(Mondays at 09:00, center time zone)") from None
    assert at is not None
    return DateTrigger(run_date=at.replace(tzinfo=UTC), timezone=ZoneInfo(tz))


def _with_store(rt: Runtime, fn: Callable[[Any], Any]) -> Any:
    """Write to the job store without processing jobs (the worker does that)."""
    sched = make_scheduler(rt, writer=True)
    sched.start(paused=True)
    try:
        return fn(sched)
    finally:
        sched.shutdown(wait=False)


def put_job(rt: Runtime, campaign_id: int, *, at: datetime | None, cron: str | None) -> datetime | None:
    """Create or replace the campaign's job; returns its next run time (naive UTC)."""
    trig = trigger_for(at=at, cron=cron, tz=rt.settings.center.timezone)

    def add(sched: Any) -> datetime | None:
        job = sched.add_job("mailer.scheduler:fire", trig, args=[campaign_id], id=job_id(campaign_id),
                            name=f"campaign {campaign_id}", replace_existing=True)
        nrt = job.next_run_time
        return nrt.astimezone(UTC).replace(tzinfo=None) if nrt else None

    return _with_store(rt, add)


def remove_job(rt: Runtime, campaign_id: int) -> bool:
    from apscheduler.jobstores.base import JobLookupError

    def rm(sched: Any) -> bool:
        try:
            sched.remove_job(job_id(campaign_id), jobstore="default")
            return True
        except JobLookupError:
            return False

    return _with_store(rt, rm)


def run_now(rt: Runtime, campaign_id: int) -> None:
    """Bring the stored job's next run forward to now (a recurring job then keeps its cron);
    a running worker picks it up at its next look at the store."""
    from apscheduler.jobstores.base import JobLookupError

    def bump(sched: Any) -> None:
        try:
            sched.modify_job(job_id(campaign_id), jobstore="default", next_run_time=datetime.now(UTC))
        except JobLookupError:
            raise StateError(f"campaign {campaign_id} has no scheduled job", hint="schedule it first") from None

    _with_store(rt, bump)


def next_run(rt: Runtime, campaign_id: int) -> datetime | None:
    """The stored job's next run time (naive UTC), or None."""
    from sqlalchemy import inspect

    if not inspect(rt.engine).has_table(JOBSTORE_TABLE):
        return None  # APScheduler creates its table the first time a job is written
    jobs = table(JOBSTORE_TABLE, column("id"), column("next_run_time"))
    with rt.engine.connect() as conn:
        row = conn.execute(select(jobs.c.next_run_time).where(jobs.c.id == job_id(campaign_id))).first()
    if row is None or row[0] is None:
        return None
    return datetime.fromtimestamp(row[0], UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------- lifecycle


def schedule(rt: Runtime, campaign_id: int, *, at: datetime | None = None, cron: str | None = None,
             actor: str | None = None, now: datetime | None = None) -> Campaign:
    """approved -> scheduled, after every gate passes now (they are checked again when it fires)."""
    if (at is None) == (cron is None):
        raise InputError("give exactly one of --at TIME or --cron EXPR")
    now = now or utcnow()
    if at is not None and at < now - timedelta(seconds=1):
        raise InputError("the scheduled time is in the past", hint="give a future time in the center's time zone")
    c = campaigns.get(rt, campaign_id)
    allowed = campaigns.TRANSITIONS["schedule"][0]
    if c.status not in allowed:
        raise StateError(f"campaign {campaign_id} is {c.status}; schedule needs it to be {' or '.join(allowed)}",
                         hint=campaigns._HINTS.get(c.status, ""))
    preflight.require(rt, c, actor=actor)
    nxt = put_job(rt, campaign_id, at=at, cron=cron)
    try:
        return campaigns.transition(rt, campaign_id, "schedule", actor=actor,
                                    values={"schedule_at": at, "schedule_cron": cron},
                                    detail={"at": at.isoformat() if at else None, "cron": cron,
                                            "next_run": nxt.isoformat() if nxt else None,
                                            "timezone": rt.settings.center.timezone})
    except MailerError:
        remove_job(rt, campaign_id)
        raise


def pause(rt: Runtime, campaign_id: int, *, actor: str | None = None, reason: str = "") -> Campaign:
    c = campaigns.transition(rt, campaign_id, "pause", actor=actor, reason=reason or "paused by operator")
    remove_job(rt, campaign_id)
    return c


def resume(rt: Runtime, campaign_id: int, *, actor: str | None = None) -> Campaign:
    """paused -> scheduled (the job is put back; a past one-off time runs now) or approved."""
    c = campaigns.get(rt, campaign_id)
    if c.status != "paused":
        raise StateError(f"campaign {campaign_id} is {c.status}; resume needs it to be paused")
    if c.schedule_cron or c.schedule_at:
        at = max(c.schedule_at, utcnow() + timedelta(seconds=1)) if c.schedule_at and not c.schedule_cron else None
        put_job(rt, campaign_id, at=at, cron=c.schedule_cron)
        return campaigns.transition(rt, campaign_id, "resume", actor=actor, to="scheduled",
                                    values={"schedule_at": at} if at else None)
    return campaigns.transition(rt, campaign_id, "resume", actor=actor, to="approved")


def cancel(rt: Runtime, campaign_id: int, *, actor: str | None = None, reason: str = "") -> Campaign:
    c = campaigns.transition(rt, campaign_id, "cancel", actor=actor, reason=reason)
    remove_job(rt, campaign_id)
    return c


# --------------------------------------------------------------------------- firing

_worker: Worker | None = None  # the worker of this process; jobs find their runtime here


def fire(campaign_id: int) -> None:
    """The job function (referenced by name in the job store, so jobs survive restarts)."""
    if _worker is None:
        log.error("campaign job fired with no worker in this process")
        return
    _worker.run_campaign(campaign_id)


def resume_interrupted(campaign_id: int) -> None:
    if _worker is not None:
        _worker.run_campaign(campaign_id, resume=True)


def log_carry_over(rt: Runtime, campaign: Campaign, run: int, *, at: datetime | None = None) -> int:
    """Recipients of the previous run left out of this one because they opted out (SPAM-5) or lost
    their authorization (SEG-3, AUTH-*): one `skip` entry each, with the rule. Earlier messages
    to them stay what they were: sent in reliance (AUTH-7), not errors."""
    from mailer.authorizations import best_validity
    from mailer.segments import load_segment, plan_segment
    from mailer.store.auth_records import authorizations_for
    from mailer.store.contacts import contacts_by_id
    from mailer.store.suppressions import suppressed_among

    if run < 2:
        return 0
    at = at or utcnow()
    cid = campaign.id or 0
    with rt.engine.connect() as conn:
        before = {r[0] for r in conn.execute(select(_D.c.contact_id).where(
            _D.c.campaign_id == cid, _D.c.run == run - 1, _D.c.status == "sent"))}
        now_in = {r[0] for r in conn.execute(select(_D.c.contact_id).where(_D.c.campaign_id == cid, _D.c.run == run))}
    gone = sorted(before - now_in)
    if not gone:
        return 0
    rows = contacts_by_id(rt.engine, gone)
    suppressed = suppressed_among(rt.engine, (r.email_hash for r in rows.values()))
    from mailer.snapshots import source

    plan = plan_segment(load_segment(source(rt, campaign).segment, rt.settings.fields))
    scope = plan.segment.scope if plan.requires_authorization else None
    # Decrypted only for the scope, and not for those already explained by an opt-out.
    judged = [c for c in gone if c in rows and rows[c].email_hash not in suppressed]
    auths = authorizations_for(rt.engine, rt.keyring, judged, scope) if scope else {}
    events = []
    for contact_id in gone:
        row = rows.get(contact_id)
        if row is None:
            continue
        base = {"kind": SKIP, "campaign_id": cid, "contact_id": contact_id, "recipient_hash": row.email_hash,
                "template_hash": campaign.template_hash}
        if row.email_hash in suppressed:
            events.append(Event(**base, rule_ids=("SPAM-5",), detail={"run": run, "why": "suppressed"}))
        elif scope:
            validity, auth = best_validity(auths.get(contact_id, []), scope, at, plan.segment.third_party)
            if not validity.valid:
                events.append(Event(**base, authorization_id=getattr(auth, "id", None),
                                    rule_ids=("SEG-3", *validity.rules),
                                    detail={"run": run, "why": "authorization not valid at send time",
                                            "earlier_runs": "sent in reliance"}))
    rt.ledger.append(events)
    return len(events)


class Worker:
    """`mailer worker`: holds the scheduler lock, runs the scheduler, sends what fires."""

    def __init__(self, rt: Runtime, *, misfire_grace: int = DEFAULT_MISFIRE_GRACE, poll: float = 5.0,
                 name: str = "", transport_factory: Callable[[], Any] | None = None,
                 heartbeat: Path | None = None, processes: int = 1) -> None:
        self.rt = rt
        self.processes = processes  # sender processes per run; 0: the cores, one per 5,000 rows left
        self.heartbeat = heartbeat  # touched after start and every poll: the container health check
        self.misfire_grace = misfire_grace
        self.poll = poll
        self.name = name or f"worker-{os.getpid()}"
        self.transport_factory = transport_factory
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.scheduler: Any = None

    # -- firing ---------------------------------------------------------------------------
    def _campaign_lock(self, campaign_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(campaign_id, threading.Lock())

    def run_campaign(self, campaign_id: int, *, resume: bool = False) -> None:
        lock = self._campaign_lock(campaign_id)
        if not lock.acquire(blocking=False):
            self.rt.ledger.append([Event(kind=CAMPAIGN, outcome="fire-skipped", campaign_id=campaign_id,
                                         actor=self.name, detail={"why": "previous run still sending"})])
            return
        try:
            self._run(campaign_id, resume=resume)
        except Exception:  # noqa: BLE001 - a job must not kill the worker; no PHI in the log
            log.exception("campaign %s: run failed", campaign_id)
        finally:
            lock.release()

    def _run(self, campaign_id: int, *, resume: bool) -> None:
        from mailer import sending

        rt = self.rt
        c = campaigns.get(rt, campaign_id)
        wanted = "sending" if resume else "scheduled"
        if c.status != wanted:
            rt.ledger.append([Event(kind=CAMPAIGN, outcome="fire-skipped", campaign_id=campaign_id, actor=self.name,
                                    detail={"why": f"campaign is {c.status}"})])
            return
        recurring = bool(c.schedule_cron)
        try:
            preflight.require(rt, c, actor=self.name)
            if recurring and not resume:
                with writing(rt.engine) as conn:
                    conn.execute(update(_C).where(_C.c.id == campaign_id).values(run=_C.c.run + 1, updated_at=utcnow()))
                    rt.ledger.append_in(conn, [Event(kind=CAMPAIGN, outcome="run", campaign_id=campaign_id,
                                                     actor=self.name, detail={"run": c.run + 1})])
                c = campaigns.get(rt, campaign_id)
                sending.prepare(rt, c, actor=self.name)  # a fresh audience for this run
                log_carry_over(rt, c, c.run)
            transport = self.transport_factory() if self.transport_factory else None
            log.info("campaign %s run %s: starting%s", campaign_id, c.run, " (resuming)" if resume else "")
            summary = self._send(campaign_id, c.run, transport)
            state = campaigns.get(rt, campaign_id)
            log.info("campaign %s run %s: finished, %s sent, %s skipped, %s failed, %s uncertain; status %s%s",
                     campaign_id, summary.run, summary.sent, summary.skipped_total, summary.failed, summary.uncertain,
                     state.status, f" ({summary.paused})" if summary.paused else "")
            for reason, n in sorted(summary.failures.items(), key=lambda kv: -kv[1]):
                log.info("campaign %s run %s: %s x %s", campaign_id, summary.run, n, reason)
        except ComplianceRefusal as err:
            rules = err.rules
            log.warning("campaign %s refused at fire time: %s", campaign_id, ", ".join(rules))
            c = campaigns.get(rt, campaign_id)
            if not recurring and c.status in ("scheduled", "sending"):
                campaigns.transition(rt, campaign_id, "pause", actor=self.name, rules=rules,
                                     reason=f"refused when the job fired ({', '.join(rules)})")
            return
        except StateError as err:
            log.warning("campaign %s not sent: %s", campaign_id, err.message)
            return
        c = campaigns.get(rt, campaign_id)
        if recurring and c.status in ("done", "sending"):
            campaigns.transition(rt, campaign_id, "next-run", actor=self.name,
                                 detail={"run": c.run, "next_run": _iso(next_run(rt, campaign_id))})

    def _send(self, campaign_id: int, run: int, transport: Any) -> Any:
        """This process sends; with `processes` > 1, that many minus one more send beside it."""
        from mailer import send_fanout, sending

        n = self.processes or send_fanout.auto_processes(send_fanout.rows_left(self.rt.engine, campaign_id, run))

        def own() -> Any:
            return asyncio.run(sending.send(self.rt, campaign_id, actor=self.name, transport=transport))

        if n <= 1:
            return own()
        log.info("campaign %s run %s: %s sender processes", campaign_id, run, n)
        summary, errors = send_fanout.send_with_helpers(self.rt, campaign_id, run, self.name, n - 1, own)
        for e in errors:
            log.warning("campaign %s: a sender process stopped: %s", campaign_id, e)
        return summary

    def anchor_ledger(self) -> None:
        try:
            self.rt.ledger.anchor()
        except (MailerError, OSError) as err:  # the next hour tries again; the log says why
            log.warning("could not anchor the ledger head: %s", getattr(err, "message", None) or type(err).__name__)

    def on_missed(self, event: Any) -> None:
        """EVENT_JOB_MISSED: beyond the grace period. Skip it, record it, pause a one-off."""
        if not str(event.job_id).startswith("campaign-"):
            return
        campaign_id = int(str(event.job_id).split("-", 1)[1])
        when = event.scheduled_run_time.astimezone(UTC).replace(tzinfo=None)
        self.rt.ledger.append([Event(kind=CAMPAIGN, outcome="missed", campaign_id=campaign_id, actor=self.name,
                                     detail={"scheduled": when.isoformat(), "grace_seconds": self.misfire_grace,
                                             "policy": "skipped: missed by more than the grace period"})])
        c = campaigns.get(self.rt, campaign_id)
        if not c.schedule_cron and c.status == "scheduled":
            campaigns.transition(self.rt, campaign_id, "pause", actor=self.name,
                                 reason="missed its scheduled time by more than the grace period; "
                                        "resume or reschedule it")

    # -- the loop -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler (the caller holds the lock) and resume interrupted runs."""
        from apscheduler.events import EVENT_JOB_MISSED

        global _worker
        _worker = self
        self.scheduler = make_scheduler(self.rt, misfire_grace=self.misfire_grace)
        self.scheduler.add_listener(self.on_missed, EVENT_JOB_MISSED)
        self.scheduler.start()
        # SEC-5: the ledger head is anchored outside the database at least hourly
        self.scheduler.add_job(self.anchor_ledger, "interval", seconds=ANCHOR_INTERVAL, id="ledger-anchor",
                               jobstore="memory", replace_existing=True, next_run_time=datetime.now(UTC))
        if self.rt.settings.bounces.fetch_from:  # issue 19: fetch bounces on a schedule too
            from mailer.bounces.schedule import add_fetch_job

            add_fetch_job(self.scheduler, self.rt.settings.bounces)
        with self.rt.engine.connect() as conn:
            interrupted = [r[0] for r in conn.execute(select(_C.c.id).where(_C.c.status == "sending"))]
        for cid in interrupted:
            self.scheduler.add_job("mailer.scheduler:resume_interrupted", "date", args=[cid],
                                   id=f"resume-{cid}", jobstore="memory", replace_existing=True,
                                   misfire_grace_time=None)

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.touch()

    def tick(self) -> None:
        """Look at the job store again: jobs added by other processes are seen here."""
        if self.scheduler is not None:
            self.scheduler.wakeup()

    def stop(self) -> None:
        global _worker
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if _worker is self:
            _worker = None

    def run_forever(self, stop: threading.Event, ready: Callable[[], None] | None = None) -> None:
        with SchedulerLock(self.rt, poll=self.poll, stop=stop) as held:
            if not held:
                return
            self.start()
            self.beat()
            if ready:
                ready()
            try:
                while not stop.wait(self.poll):
                    self.tick()
                    self.beat()
            finally:
                self.stop()
                self.anchor_ledger()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


_LOCK_NAME = ":mailer-scheduler"  # one lock per schema: one scheduler per installation


class SchedulerLock:
    """One scheduler per database: a session advisory lock on PostgreSQL, a lock file on SQLite.

    Both are released by the operating system or the server when the process dies, so a
    killed worker never blocks its successor. Waits (polling) until held or `stop` is set."""

    def __init__(self, rt: Runtime, *, poll: float = 5.0, stop: threading.Event | None = None) -> None:
        self.rt = rt
        self.poll = poll
        self.stop = stop or threading.Event()
        self._conn: Any = None
        self._fh: Any = None

    def try_acquire(self) -> bool:
        engine = self.rt.engine
        if engine.dialect.name == "postgresql":
            conn = engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :k))"), {"k": _LOCK_NAME}).scalar()
            conn.commit()
            if got:
                self._conn = conn
                return True
            conn.close()
            return False
        import fcntl

        path = Path(engine.url.database or "mailer.db")
        fh = open(path.with_name(path.name + ".scheduler.lock"), "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def __enter__(self) -> bool:
        while not self.stop.is_set():
            if self.try_acquire():
                return True
            log.info("another worker holds the scheduler lock; waiting")
            self.stop.wait(self.poll)
        return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(hashtext(current_schema() || :k))"), {"k": _LOCK_NAME})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __exit__(self, *exc: object) -> None:
        self.release()
