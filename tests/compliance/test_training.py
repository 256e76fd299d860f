"""TRN-1: author and approver hold current HIPAA-marketing training; training records."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer import approvals, campaigns
from mailer.accounts.permissions import PermissionDenied
from mailer.compliance import training
from mailer.compliance.models import TrainingRecord
from mailer.errors import ComplianceRefusal
from mailer.models import LedgerEntry, utcnow
from tests.helpers_workflow import create

COURSE = "HIPAA marketing"
NOW = dt.datetime(2026, 12, 1, 12)


def rec(account: str, completed: dt.datetime, days: int = 365, course: str = COURSE) -> training.Training:
    return training.Training(1, account, course, completed, completed + dt.timedelta(days=days), None, "admin")


def test_pure_decision_names_who_and_what() -> None:
    recs = [rec("marketer", dt.datetime(2026, 1, 5)), rec("compliance", dt.datetime(2025, 6, 1)),
            rec("other", dt.datetime(2026, 1, 5), course="Fire safety")]
    found = training.refusals(recs, {"author": "marketer", "approver": "compliance"}, COURSE, NOW)
    assert [r.rule for r in found] == ["TRN-1"]
    assert "approver (compliance)" in found[0].reason and "expired on 2026-06-01" in found[0].reason
    assert "mailer training record compliance" in found[0].fix
    none = training.refusals(recs, {"author": "other"}, COURSE, NOW)
    assert "no HIPAA marketing training is on file" in none[0].reason
    assert training.refusals(recs, {"author": "MARKETER"}, COURSE, NOW) == []
    # the day it expires it is no longer current
    assert training.refusals(recs, {"author": "marketer"}, COURSE, dt.datetime(2027, 1, 5)) != []


def test_submission_refused_then_passes_once_recorded(crt: Any, who: Any) -> None:
    c = create(crt, author="marketer")
    with pytest.raises(ComplianceRefusal) as e:
        campaigns.submit(crt, c.id, actor="marketer")
    assert e.value.exit_code == 3 and e.value.rules == ("TRN-1",)
    assert "author (marketer)" in e.value.message
    training.record(crt, who.admin, "marketer", course=COURSE, completed=utcnow() - dt.timedelta(days=10))
    assert campaigns.submit(crt, c.id, actor="marketer").status == "submitted"
    # approval: the approver has no training yet
    with pytest.raises(ComplianceRefusal) as e:
        approvals.approve(crt, c.id, reviewer="compliance")
    assert "approver (compliance)" in e.value.message and "author" not in e.value.message.split(":")[0]
    training.record(crt, who.reviewer, "compliance", course=COURSE, completed=utcnow() - dt.timedelta(days=1))
    approval, _ = approvals.approve(crt, c.id, reviewer="compliance")
    assert approval.decision == "approved"
    with crt.engine.connect() as conn:
        refused = conn.execute(select(LedgerEntry).where(LedgerEntry.outcome == "training-missing")).all()
    assert len(refused) == 2 and all(r.rule_ids == '["TRN-1"]' or "TRN-1" in r.rule_ids for r in refused)


def test_expired_training_refuses(crt: Any, who: Any) -> None:
    training.record(crt, who.admin, "marketer", course=COURSE, completed=utcnow() - dt.timedelta(days=400))
    c = create(crt, author="marketer")
    with pytest.raises(ComplianceRefusal, match="expired on"):
        campaigns.submit(crt, c.id, actor="marketer")


def test_only_admin_or_reviewer_records(crt: Any, who: Any) -> None:
    with pytest.raises(PermissionDenied):
        training.record(crt, who.marketer, "marketer", course=COURSE, completed=NOW)
    with pytest.raises(PermissionDenied):
        training.record(crt, None, "marketer", course=COURSE, completed=NOW)


def test_cli_record_list_expiring_json_and_certificate_encrypted(cli: Any, crt: Any, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pdf"
    cert.write_bytes(b"%PDF certificate of completion for Jane Marketer")
    today = utcnow().date()
    r = cli("training", "record", "marketer", "--course", COURSE, "--completed", today.isoformat(),
            "--certificate", str(cert), "--format", "json")
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert made["status"] == "current" and made["expires"] == (today + dt.timedelta(days=365)).isoformat()
    old = (today - dt.timedelta(days=350)).isoformat()
    assert cli("training", "record", "compliance", "--course", COURSE, "--completed", old).exit_code == 0
    rows = json.loads(cli("training", "list", "--format", "json").stdout)
    assert {(x["account"], x["status"]) for x in rows} == {("marketer", "current"), ("compliance", "expiring")}
    soon = json.loads(cli("training", "list", "--expiring", "--format", "json").stdout)
    assert [x["account"] for x in soon] == ["compliance"]
    with crt.engine.connect() as conn:
        row = conn.execute(select(TrainingRecord).where(TrainingRecord.account == "marketer")).one()
    assert row.certificate_enc and b"Jane Marketer" not in row.certificate_enc
    assert row.certificate_sha256 == made["certificate_sha256"]
    # a marketer may not record training or read the records (SEC-10, exit 3)
    denied = cli("training", "record", "marketer", "--course", COURSE, "--completed", old, as_="marketer")
    assert denied.exit_code == 3 and "SEC-10" in denied.stderr
    assert cli("training", "list", as_="marketer").exit_code == 3
    # nobody signed in: refused (SEC-1)
    anon = cli("training", "list", as_=None)
    assert anon.exit_code == 3 and "SEC-1" in anon.stderr
    # bad input: a clear line, exit 2
    bad = cli("training", "record", "marketer", "--course", COURSE, "--completed", "31/12/2026")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.stderr
    unknown = cli("training", "record", "nobody", "--course", COURSE, "--completed", old)
    assert unknown.exit_code == 2
