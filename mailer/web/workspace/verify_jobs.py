"""Ledger verification from the workspace, with progress and without script (issue 16).

A POST starts one verification in a background thread (one at a time per server: a second
request joins the running one) and redirects to its page, which shows the entries checked
so far and reloads itself with a `<meta http-equiv="refresh">` until the result is in: the
strict CSP (no script at all) stays as it is. The check is the CLI's (`mailer ledger
verify`: chain, signatures, head, anchor outside the database, delivery rows); the result
is kept for the dashboard and recorded as an `access` ledger entry naming the account.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from mailer.accounts.permissions import Principal
from mailer.db import writing
from mailer.ledger import ACCESS, Event, Verification
from mailer.models import utcnow
from mailer.runtime import Runtime
from mailer.web.workspace.models import LedgerVerification

log = logging.getLogger(__name__)
_V = LedgerVerification.__table__  # type: ignore[attr-defined]
KEEP = 20  # finished jobs remembered (their pages stay readable for a while)


@dataclass
class Job:
    id: str
    actor: str
    total: int  # entries in the ledger when it started (the head's sequence number)
    checked: int = 0
    done: bool = False
    result: Verification | None = None
    mismatches: int = 0
    error: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def percent(self) -> int:
        if self.done:
            return 100
        return min(99, int(100 * self.checked / self.total)) if self.total else 0


def record(rt: Runtime, principal: Principal, v: Verification, mismatches: int) -> None:
    """Keep the result for the dashboard and write it to the ledger (kind `access`)."""
    with writing(rt.engine) as conn:
        conn.execute(_V.insert().values(ok=v.ok and not mismatches, entries=v.entries, head_seq=v.last_seq,
                                        actor=principal.name, at=utcnow(),
                                        problem=(v.problem or (f"{mismatches} delivery row(s) disagree with "
                                                               "the ledger" if mismatches else ""))[:500]))
        rt.ledger.append_in(conn, [Event(kind=ACCESS, outcome="ledger-verified", actor=principal.name,
                                         rule_ids=("SEC-5",), detail={
                                             "channel": "web", "ok": v.ok, "entries": v.entries,
                                             "reason": v.reason, "first_bad_seq": v.first_bad_seq,
                                             "head_seq": v.last_seq, "delivery_mismatches": mismatches})])


class VerifyJobs:
    """The verifications this server runs or ran recently, by random id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.page = 20000  # entries per read (and per progress step)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, rt: Runtime, principal: Principal) -> Job:
        with self._lock:
            running = next((j for j in self._jobs.values() if not j.done), None)
            if running is not None:
                return running
            job = Job(secrets.token_urlsafe(12), principal.name, rt.ledger.last_seq())
            self._jobs[job.id] = job
            for old in [j.id for j in self._jobs.values() if j.done][:-KEEP]:
                del self._jobs[old]
        threading.Thread(target=self._run, args=(rt, principal, job), name="ledger-verify", daemon=True).start()
        return job

    def _run(self, rt: Runtime, principal: Principal, job: Job) -> None:
        from mailer.ledger_crosscheck import cross_check

        def step(n: int) -> None:
            job.checked = n

        try:
            v = rt.ledger.verify(page=self.page, progress=step)
            mismatches = len(cross_check(rt.engine, rt.ledger)) if v.ok else 0
            job.checked = v.entries
            record(rt, principal, v, mismatches)
            job.result, job.mismatches = v, mismatches
        except Exception as e:  # the page says it failed; the log has the type only (never a value)
            ref = secrets.token_hex(4)
            log.error("ledger verification %s failed: %s", ref, type(e).__name__)
            job.error = f"the verification could not finish (reference {ref})"
        finally:
            job.done = True
