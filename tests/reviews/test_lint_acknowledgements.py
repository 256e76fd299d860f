"""Issue 13: `review` lint findings are acknowledged one by one, with a reason, before approval.

A real SQLite runtime, the shipped sample contacts and segment, and a copy of the sample
newsletter with a patient story added (a TST-1 `review` finding).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mailer import approvals, campaigns
from mailer.errors import ComplianceRefusal, InputError
from mailer.evidence import write_evidence
from mailer.models import LedgerEntry
from mailer.reviews import acknowledge
from tests.helpers_workflow import AUTHOR, REVIEWER, copy_segment, copy_template, create

STORY = "<p>Dorothy K. from Berwyn tells us the staff made her first MRI easy.</p>\n"


def with_story(tmp_path):  # type: ignore[no-untyped-def]
    template = copy_template(tmp_path)
    body = template / "body.html.j2"
    text = body.read_text()
    i = text.index('  <p><a class="btn"')
    body.write_text(text[:i] + STORY + text[i:])
    return template


def submitted(rt, tmp_path):  # type: ignore[no-untyped-def]
    template = with_story(tmp_path)
    c = create(rt, template=template, segment=copy_segment(tmp_path))
    campaigns.submit(rt, c.id, actor=AUTHOR)
    return c, template


def test_review_packet_lists_the_finding_and_approval_refuses_until_acknowledged(sample_rt, tmp_path) -> None:
    c, _template = submitted(sample_rt, tmp_path)
    packet = approvals.review(sample_rt, campaigns.get(sample_rt, c.id), count=False)
    assert [r["code"] for r in packet.lint_reviews] == ["TST101"]
    key = packet.lint_reviews[0]["key"]
    assert key.startswith("body.html.j2:") and key.endswith(":TST101") and not packet.lint_reviews[0]["acknowledged"]
    with pytest.raises(ComplianceRefusal) as err:
        approvals.approve(sample_rt, c.id, reviewer=REVIEWER)
    assert "TST-1" in err.value.rules
    assert campaigns.get(sample_rt, c.id).status == "submitted"

    item = acknowledge(sample_rt, c.id, key, actor=REVIEWER, reason="signed authorization TST-2026-7 on file")
    assert item.acknowledged_by == REVIEWER and item.seq
    approval, packet = approvals.approve(sample_rt, c.id, reviewer=REVIEWER)
    assert approval.decision == "approved"
    assert packet.lint_reviews[0]["acknowledged_by"] == REVIEWER
    t = LedgerEntry.__table__
    with sample_rt.engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.campaign_id == c.id, t.c.kind == "approval").order_by(t.c.seq)).all()
    ack_row, approved_row = rows[-2], rows[-1]
    assert (ack_row.outcome, ack_row.actor, ack_row.rule_ids) == ("acknowledged", REVIEWER, "TST-1")
    assert json.loads(ack_row.detail)["finding"] == key
    assert json.loads(approved_row.detail)["acknowledged"] == [{"finding": key, "by": REVIEWER, "ledger_seq": ack_row.seq}]


def test_the_author_cannot_acknowledge_and_a_reason_is_required(sample_rt, tmp_path) -> None:
    c, _template = submitted(sample_rt, tmp_path)
    key = approvals.review(sample_rt, campaigns.get(sample_rt, c.id), count=False).lint_reviews[0]["key"]
    with pytest.raises(ComplianceRefusal) as err:
        acknowledge(sample_rt, c.id, key, actor=AUTHOR, reason="it is fine")
    assert err.value.rules == ("SEC-6",)
    with pytest.raises(InputError):
        acknowledge(sample_rt, c.id, key, actor=REVIEWER, reason="   ")
    with pytest.raises(InputError) as unknown:
        acknowledge(sample_rt, c.id, "body.html.j2:1:TST999", actor=REVIEWER, reason="x")
    assert key in (unknown.value.hint or "")


def test_a_content_edit_reopens_acknowledged_findings(sample_rt, tmp_path) -> None:
    c, template = submitted(sample_rt, tmp_path)
    key = approvals.review(sample_rt, campaigns.get(sample_rt, c.id), count=False).lint_reviews[0]["key"]
    acknowledge(sample_rt, c.id, key, actor=REVIEWER, reason="authorization on file")
    body = template / "body.html.j2"
    body.write_text(body.read_text().replace("quieter", "Quieter"))
    campaigns.submit(sample_rt, c.id, actor=AUTHOR)  # the edit reaches review only when re-submitted (snapshot)
    packet = approvals.review(sample_rt, campaigns.get(sample_rt, c.id), count=False)
    assert packet.lint_reviews and not packet.lint_reviews[0]["acknowledged"]
    assert any("not acknowledged" in r.reason for r in packet.refusals)


def test_acknowledgements_are_in_the_evidence_package(sample_rt, tmp_path) -> None:
    import zipfile

    c, _template = submitted(sample_rt, tmp_path)
    key = approvals.review(sample_rt, campaigns.get(sample_rt, c.id), count=False).lint_reviews[0]["key"]
    acknowledge(sample_rt, c.id, key, actor=REVIEWER, reason="authorization on file")
    approvals.approve(sample_rt, c.id, reviewer=REVIEWER)
    out = tmp_path / "evidence.zip"
    write_evidence(sample_rt, c.id, out, actor=REVIEWER)
    with zipfile.ZipFile(out) as zf:
        lines = [json.loads(x) for x in zf.read("approvals.jsonl").decode().splitlines() if x.strip()]
    acks = [x for x in lines if x["outcome"] == "acknowledged"]
    assert len(acks) == 1 and json.loads(acks[0]["detail"])["finding"] == key
