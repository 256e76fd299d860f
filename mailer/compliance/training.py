"""Staff training records and the TRN-1 gate.

TRN-1: the author of a campaign at submission, and its approver (and author) at approval,
hold a current record of the configured HIPAA-marketing course. A record is current from
its completion date until `training_valid_days` later (annual refreshers, per the seed).
The decision is pure (`refusals`); the store functions read and write the records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailer.accounts.permissions import Action, Principal
from mailer.compliance.common import acting, iso, record_event, retained_until
from mailer.compliance.models import TrainingRecord
from mailer.crypto import key_id_of, sha256_hex
from mailer.db import writing
from mailer.errors import ComplianceRefusal, InputError
from mailer.ledger import REFUSAL, Event
from mailer.models import utcnow
from mailer.refusal import Refusal
from mailer.runtime import Runtime

RULE = "TRN-1"
_T = TrainingRecord.__table__  # type: ignore[attr-defined]
MAX_CERTIFICATE = 10 * 1024 * 1024


@dataclass(frozen=True)
class Training:
    id: int
    account: str
    course: str
    completed_at: dt.datetime
    expires_at: dt.datetime
    certificate_sha256: str | None
    recorded_by: str

    def status(self, at: dt.datetime, soon: dt.timedelta = dt.timedelta(days=30)) -> str:
        if self.completed_at > at:
            return "not-yet"
        if self.expires_at <= at:
            return "expired"
        return "expiring" if self.expires_at <= at + soon else "current"

    def as_dict(self, at: dt.datetime, soon: dt.timedelta = dt.timedelta(days=30)) -> dict[str, Any]:
        return {"id": self.id, "account": self.account, "course": self.course,
                "completed": self.completed_at.date().isoformat(), "expires": self.expires_at.date().isoformat(),
                "status": self.status(at, soon), "certificate_sha256": self.certificate_sha256,
                "recorded_by": self.recorded_by,
                "retained_until": iso(retained_until(self.completed_at, self.expires_at))}


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def current(records: Iterable[Training], account: str, course: str, at: dt.datetime) -> Training | None:
    """Pure: the account's current record of `course` at `at` (the one lasting longest), if any."""
    ok = [r for r in records if _norm(r.account) == _norm(account) and _norm(r.course) == _norm(course)
          and r.completed_at <= at < r.expires_at]
    return max(ok, key=lambda r: r.expires_at) if ok else None


def refusals(records: Iterable[Training], who: Mapping[str, str], course: str, at: dt.datetime) -> list[Refusal]:
    """Pure TRN-1 decision: one refusal per role whose account lacks current training.

    `who` maps a role in the campaign ("author", "approver") to an account name."""
    recs = list(records)
    out: list[Refusal] = []
    for role, account in who.items():
        if current(recs, account, course, at) is not None:
            continue
        mine = [r for r in recs if _norm(r.account) == _norm(account) and _norm(r.course) == _norm(course)]
        if mine:
            last = max(mine, key=lambda r: r.expires_at)
            what = f"their {course} training expired on {last.expires_at.date().isoformat()}"
        else:
            what = f"no {course} training is on file"
        out.append(Refusal(RULE, f"the {role} ({account}) does not hold current training: {what}",
                           f"a reviewer or admin records the completed course: mailer training record "
                           f"{account} --course \"{course}\" --completed YYYY-MM-DD"))
    return out


def _row(r: Any) -> Training:
    return Training(r.id, r.account, r.course, r.completed_at, r.expires_at, r.certificate_sha256, r.recorded_by)


def records_for(rt: Runtime, accounts: Iterable[str] | None = None) -> list[Training]:
    q = select(_T).order_by(_T.c.id)
    if accounts is not None:
        q = q.where(_T.c.account.in_([a.strip().lower() for a in accounts]))
    with rt.engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def record(rt: Runtime, by: Principal | None, account: str, *, course: str, completed: dt.datetime,
           certificate: Path | None = None, now: dt.datetime | None = None) -> Training:
    """Record a completed course for an existing account; the certificate is kept by its
    SHA-256 and its bytes encrypted (it names the person)."""
    from mailer.accounts.service import account_info

    by = acting(by, Action.TRAINING_RECORD)
    now = now or utcnow()
    info = account_info(rt, account)  # AccountError (exit 2) if there is no such account
    course = " ".join(course.split())
    if not course:
        raise InputError("--course is empty", hint=f"name the course, e.g. --course \"{rt.settings.compliance.training_course}\"")
    if completed > now:
        raise InputError(f"--completed {completed.date()} is in the future", hint="give the date the course was completed")
    blob = sha = kid = None
    if certificate is not None:
        try:
            data = certificate.read_bytes()
        except OSError as e:
            raise InputError(f"--certificate {certificate}: cannot read it ({e.strerror})") from None
        if not data or len(data) > MAX_CERTIFICATE:
            raise InputError(f"--certificate {certificate}: must be a non-empty file under 10 MB")
        sha = sha256_hex(data)
        blob = rt.keyring.encrypt(data, f"training-certificate:{sha}".encode())
        kid = key_id_of(blob)
    expires = completed + dt.timedelta(days=rt.settings.compliance.training_valid_days)
    with writing(rt.engine) as conn:
        tid = conn.execute(_T.insert().values(
            account=info.name, course=course, completed_at=completed, expires_at=expires, certificate_sha256=sha,
            certificate_enc=blob, key_id=kid, recorded_by=by.name, created_at=now)).inserted_primary_key[0]  # type: ignore[index]
        record_event(rt, conn, by, "training-added", rules=(RULE,), detail={
            "training_id": tid, "account": info.name, "course": course, "completed": completed.date().isoformat(),
            "expires": expires.date().isoformat(), "certificate_sha256": sha})
    return Training(tid, info.name, course, completed, expires, sha, by.name)


def list_training(rt: Runtime, by: Principal | None, *, account: str | None = None,
                  expiring_within: dt.timedelta | None = None, at: dt.datetime | None = None) -> list[Training]:
    """Every record (newest last); with `expiring_within`, only each account's latest record
    of a course that has lapsed or lapses within that time. Viewing is itself recorded."""
    by = acting(by, Action.COMPLIANCE_READ)
    at = at or utcnow()
    recs = records_for(rt, [account] if account else None)
    if expiring_within is not None:
        latest: dict[tuple[str, str], Training] = {}
        for r in recs:
            k = (_norm(r.account), _norm(r.course))
            if k not in latest or r.expires_at > latest[k].expires_at:
                latest[k] = r
        recs = sorted((r for r in latest.values() if r.expires_at <= at + expiring_within),
                      key=lambda r: r.expires_at)
    with writing(rt.engine) as conn:
        record_event(rt, conn, by, "training-viewed", detail={"count": len(recs), "account": account})
    return recs


def check(rt: Runtime, who: Mapping[str, str], *, campaign_id: int | None = None, gate: str,
          at: dt.datetime | None = None) -> None:
    """The TRN-1 gate at submission or approval: refuse (exit 3, a ledger refusal) when an
    account named in `who` lacks current training. Off only when the settings say so."""
    s = rt.settings.compliance
    if not s.training_required:
        return
    at = at or utcnow()
    found = refusals(records_for(rt, who.values()), who, s.training_course, at)
    if not found:
        return
    rt.ledger.append([Event(kind=REFUSAL, outcome="training-missing", campaign_id=campaign_id,
                            actor=next(iter(who.values()), None), rule_ids=(RULE,),
                            detail={"gate": gate, "missing": {role: acct for role, acct in who.items()
                                                              if any(acct in r.reason for r in found)},
                                    "course": s.training_course})])
    raise ComplianceRefusal(found)


def status_by_account(rt: Runtime, at: dt.datetime) -> list[dict[str, Any]]:
    """Every enabled person account with its current training status (quarterly review)."""
    from mailer.accounts.service import list_accounts

    course = rt.settings.compliance.training_course
    recs = records_for(rt)
    soon = dt.timedelta(days=rt.settings.compliance.expiring_days)
    out = []
    for a in list_accounts(rt, now=at):
        if getattr(a, "disabled", False) or tuple(getattr(a, "roles", ())) == ("service",):
            continue
        cur = current(recs, a.name, course, at)
        out.append({"account": a.name, "course": course, "status": cur.status(at, soon) if cur else "missing",
                    "expires": cur.expires_at.date().isoformat() if cur else None})
    return out
