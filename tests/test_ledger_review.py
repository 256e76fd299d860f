"""What a compliance reviewer runs: show, export, the quarterly report and the evidence package."""

from __future__ import annotations

import csv
import email
import hashlib
import io
import json
import zipfile
from datetime import datetime
from email import policy
from pathlib import Path
from typing import Any

import pytest
from test_ledger_support import cli, send_event, write_config

from mailer import sending
from mailer.ledger import APPROVAL, AUTHORIZATION, REFUSAL, SKIP, UNSUBSCRIBE, Event
from mailer.ledger_query import COLUMNS, Filters, entries, parse_when
from mailer.ledger_report import build_report, parse_quarter
from mailer.transport import MemoryTransport
from tests.conftest import NO_GATES

Q3 = datetime(2026, 8, 3, 10, 0)


def _quarter_history(rt: Any) -> None:
    at = Q3
    rt.ledger.append([Event(kind="campaign", outcome="created", campaign_id=1, actor="marketer", at=at)])
    rt.ledger.append([send_event(i, at=at) for i in range(1, 6)])
    rt.ledger.append([send_event(6, outcome="failed", smtp_code=550, at=at),
                      send_event(7, outcome="deferred", smtp_code=451, at=at),
                      send_event(7, outcome="sent", at=at)])
    rt.ledger.append([Event(kind=SKIP, campaign_id=1, contact_id=8, rule_ids=("SEG-3", "AUTH-5"), at=at),
                      Event(kind=SKIP, campaign_id=1, contact_id=9, rule_ids=("SPAM-5",), at=at),
                      Event(kind=REFUSAL, campaign_id=2, rule_ids=("SEG-4",), detail={"gate": "segment"}, at=at),
                      Event(kind=UNSUBSCRIBE, outcome="unsubscribe", contact_id=3, rule_ids=("SPAM-5",), at=at),
                      Event(kind=AUTHORIZATION, outcome="imported", contact_id=4, authorization_id=1, at=at),
                      Event(kind=AUTHORIZATION, outcome="revoked", contact_id=4, authorization_id=1,
                            rule_ids=("AUTH-7",), at=at),
                      Event(kind=APPROVAL, outcome="approved", campaign_id=1, actor="compliance", at=at),
                      Event(kind=APPROVAL, outcome="rejected", campaign_id=2, actor="compliance", at=at)])
    # outside the quarter
    rt.ledger.append([send_event(50, at=datetime(2026, 10, 1, 0, 0)), send_event(51, at=datetime(2026, 6, 30, 23, 59))])


def test_quarters_and_dates_parse() -> None:
    assert parse_quarter("2026Q3")[1:] == (datetime(2026, 7, 1), datetime(2026, 10, 1))
    assert parse_quarter("2026-q4")[1:] == (datetime(2026, 10, 1), datetime(2027, 1, 1))
    assert parse_when("2026-09-30", end=True) == datetime(2026, 10, 1)
    assert parse_when("2026-09-30T12:00:00+02:00") == datetime(2026, 9, 30, 10, 0)


def test_the_quarterly_report_counts_what_happened_in_the_quarter(runtime_factory: Any) -> None:
    rt = runtime_factory()
    _quarter_history(rt)
    rep = build_report(rt.ledger, "2026Q3")
    assert rep.sends_by_outcome == {"deferred": 1, "failed": 1, "sent": 6}
    assert rep.skips_by_rule == {"AUTH-5": 1, "SEG-3": 1, "SPAM-5": 1}
    assert rep.refusals_by_rule == {"SEG-4": 1}
    assert rep.unsubscribes == {"unsubscribe": 1}
    assert rep.authorization_events == {"imported": 1, "revoked": 1}
    assert rep.approvals == {"approved": 1, "rejected": 1} and rep.approvers == {"compliance": 2}
    assert rep.verification is not None and rep.verification.ok
    assert {c.id: c.sends for c in rep.campaigns}[1] == {"sent": 6, "failed": 1, "deferred": 1}


def test_the_report_cli_in_text_and_json(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    _quarter_history(rt)
    config = write_config(rt, tmp_path)
    res = cli(config, "ledger", "report", "--quarter", "2026Q3")
    assert res.exit_code == 0, res.output
    assert "Ledger review 2026Q3: 2026-07-01 to 2026-09-30" in res.output
    assert "SEG-3" in res.output and "Chain: intact" in res.output
    res = cli(config, "ledger", "report", "--quarter", "2026Q3", "--format", "json")
    data = json.loads(res.output)
    assert data["sends_by_outcome"]["sent"] == 6 and data["verification"]["ok"] is True
    assert cli(config, "ledger", "report", "--quarter", "2026Q5").exit_code == 2


def test_show_filters_and_prints_a_table(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    _quarter_history(rt)
    config = write_config(rt, tmp_path)
    res = cli(config, "ledger", "show", "--kind", "skip")
    assert res.exit_code == 0, res.output
    assert "SEG-3,AUTH-5" in res.output and "2 entries shown" in res.output
    res = cli(config, "ledger", "show", "--campaign", "1", "--outcome", "failed,deferred")
    assert "2 entries shown" in res.output
    res = cli(config, "ledger", "show", "--since", "2026-09-01", "--until", "2026-10-01")
    assert "1 entry shown" in res.output
    res = cli(config, "ledger", "show", "--limit", "3")
    assert "3 entries shown; more match" in res.output
    assert cli(config, "ledger", "show", "--kind", "nonsense").exit_code == 2
    assert cli(config, "ledger", "show", "--since", "yesterday").exit_code == 2


def test_export_streams_filters_and_is_itself_recorded(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    _quarter_history(rt)
    config = write_config(rt, tmp_path)
    out = tmp_path / "sends.csv"
    res = cli(config, "ledger", "export", "--format", "csv", "--kind", "send", "--since", "2026-07-01",
              "--until", "2026-09-30", "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 8 and {r["kind"] for r in rows} == {"send"}
    last = list(rt.ledger.rows())[-1]
    assert (last.kind, last.outcome, last.actor) == ("data-export", "ledger-export", "auditor")
    detail = json.loads(last.detail)
    assert detail["entries"] == 8 and detail["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert detail["filters"] == {"kind": ["send"], "since": "2026-07-01T00:00:00", "until": "2026-10-01T00:00:00"}
    res = cli(config, "ledger", "export", "--format", "jsonl", "--campaign", "2")
    lines = [json.loads(x) for x in res.output.splitlines()]
    assert [x["kind"] for x in lines] == ["refusal", "approval"]
    assert cli(config, "ledger", "export", "--format", "xml").exit_code == 2
    assert rt.ledger.verify().ok


def test_exported_entries_can_be_checked_offline_against_their_hashes(runtime_factory: Any) -> None:
    from mailer.ledger import entry_hash
    from mailer.ledger_query import write_rows

    rt = runtime_factory()
    _quarter_history(rt)
    buf = io.StringIO()
    write_rows(entries(rt.ledger, Filters()), "jsonl", buf)
    for line in buf.getvalue().splitlines():
        rec = json.loads(line)
        rec["at"] = datetime.fromisoformat(rec["at"])
        assert entry_hash(rec) == rec["entry_hash"]


def test_entries_are_read_a_page_at_a_time(runtime_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = runtime_factory()
    rt.ledger.append([send_event(i) for i in range(1, 26)])
    pages: list[int] = []
    original = rt.ledger.rows

    def counting(*, batch: int = 5000, where: Any = ()) -> Any:
        for i, r in enumerate(original(batch=batch, where=where)):
            if i % batch == 0:
                pages.append(i)
            yield r

    monkeypatch.setattr(rt.ledger, "rows", counting)
    assert sum(1 for _ in entries(rt.ledger, Filters(), batch=10)) == 25 and pages == [0, 10, 20]


async def test_the_evidence_package_holds_what_an_auditor_needs(sample_rt: Any, tmp_path: Path) -> None:
    from tests.helpers_workflow import approved

    rt = sample_rt
    c = approved(rt)
    summary = await sending.send(rt, c.id, transport=MemoryTransport(), preflight=NO_GATES, actor="marketer")
    out = tmp_path / "evidence.zip"
    res = cli(write_config(rt, tmp_path), "ledger", "evidence", "--campaign", str(c.id), "--out", str(out))
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        for required in ("campaign.json", "approvals.jsonl", "approval_records.json", "template/hash.json",
                         "sample/sample.eml", "sample/sample.html", "segment/snapshot.json", "entries.jsonl",
                         "summary.json", "verification.json", "MANIFEST.sha256", "README.txt"):
            assert required in names, required
        manifest = dict(reversed(line.split("  ", 1)) for line in z.read("MANIFEST.sha256").decode().splitlines())
        assert set(manifest) == names - {"MANIFEST.sha256"}
        for name, digest in manifest.items():
            assert hashlib.sha256(z.read(name)).hexdigest() == digest, name
        approvals_ = [json.loads(x) for x in z.read("approvals.jsonl").splitlines()]
        assert [a["outcome"] for a in approvals_] == ["approved"] and approvals_[0]["actor"] == "compliance"
        th = json.loads(z.read("template/hash.json"))
        assert th["current_files_match"] and th["all_sends_used_the_approved_hash"]
        assert th["approval_record_hashes"] == [c.template_hash]
        msg = email.message_from_bytes(z.read("sample/sample.eml"), policy=policy.default)
        assert msg["To"] == "sample.patient@example.invalid" and msg["List-Unsubscribe-Post"]
        seg = json.loads(z.read("segment/snapshot.json"))
        assert seg["segment_hash"] == c.segment_hash and seg["audience_entries"][0]["kind"] == "audience"
        assert json.loads(seg["audience_entries"][0]["detail"])["audience_sha256"] == seg["audience_hash"]
        lines = [json.loads(x) for x in z.read("entries.jsonl").splitlines()]
        assert sum(1 for x in lines if x["kind"] == "send" and x["outcome"] == "sent") == summary.sent
        assert json.loads(z.read("verification.json"))["ok"] is True
    last = list(rt.ledger.rows())[-1]
    assert (last.kind, last.outcome, last.campaign_id) == ("data-export", "evidence", c.id)
    assert json.loads(last.detail)["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert rt.ledger.verify().ok


def test_evidence_for_a_missing_campaign_is_exit_2(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    res = cli(write_config(rt, tmp_path), "ledger", "evidence", "--campaign", "99", "--out", str(tmp_path / "x.zip"))
    assert res.exit_code == 2
    assert not (tmp_path / "x.zip").exists()
