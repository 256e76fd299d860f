"""Four-eyes approval bound to content (SEC-6), and the campaign lifecycle's transitions."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mailer import approvals, campaigns, preflight, sending
from mailer.errors import ComplianceRefusal, StateError
from mailer.models import Approval, LedgerEntry
from tests.helpers_workflow import (
    AUTHOR,
    REVIEWER,
    approve,
    copy_segment,
    copy_template,
    create,
    edit_one_character,
)


def ledger(rt, **where):  # type: ignore[no-untyped-def]
    t = LedgerEntry.__table__
    q = select(t).order_by(t.c.seq)
    for k, v in where.items():
        q = q.where(t.c[k] == v)
    with rt.engine.connect() as conn:
        return conn.execute(q).all()


def test_the_author_cannot_approve_their_own_campaign(sample_rt) -> None:
    c = create(sample_rt)
    campaigns.submit(sample_rt, c.id, actor=AUTHOR)
    with pytest.raises(ComplianceRefusal) as err:
        approvals.approve(sample_rt, c.id, reviewer=AUTHOR)
    assert err.value.rules == ("SEC-6",)
    assert campaigns.get(sample_rt, c.id).status == "submitted"
    refused = ledger(sample_rt, kind="refusal", campaign_id=c.id)
    assert refused and refused[-1].rule_ids == "SEC-6" and refused[-1].actor == AUTHOR


def test_approval_names_hashes_purpose_waivers_and_counts(sample_rt) -> None:
    c = create(sample_rt)
    a = approve(sample_rt, c.id)
    assert a.reviewer == REVIEWER and a.decision == "approved"
    assert (a.template_hash, a.segment_hash, a.purpose) == (c.template_hash, c.segment_hash, "newsletter")
    counts = json.loads(a.segment_counts_json)
    assert counts["matched"] > 0 and "considered" in counts
    assert json.loads(a.waivers_json) == []
    entry = ledger(sample_rt, kind="approval", campaign_id=c.id)[-1]
    assert entry.template_hash == c.template_hash and entry.actor == REVIEWER
    detail = json.loads(entry.detail)
    assert detail["segment_hash"] == c.segment_hash and detail["purpose"] == "newsletter"
    assert detail["segment_counts"]["matched"] == counts["matched"]
    assert campaigns.get(sample_rt, c.id).status == "approved"


def test_waivers_are_shown_and_recorded_with_the_approval(sample_rt, tmp_path) -> None:
    tpl = copy_template(tmp_path)
    # a toll-free number is a lint warning (PHI302) that a reviewer waived
    body = tpl / "body.html.j2"
    body.write_text(body.read_text().replace("at any time with one click.", "at any time with one click. Questions: 1-800-555-0199."))
    with (tpl / "template.toml").open("a") as fh:
        fh.write('\n[[waivers]]\ncode = "PHI302"\nreason = "the center\'s own toll-free line"\nreviewer = "privacy-officer"\n')
    c = create(sample_rt, template=tpl)
    packet = approvals.review(sample_rt, c)
    assert [w["code"] for w in packet.waivers] == ["PHI302"]
    a = approve(sample_rt, c.id)
    recorded = json.loads(a.waivers_json)
    assert recorded[0]["code"] == "PHI302" and recorded[0]["waived_by"] == "privacy-officer"
    detail = json.loads(ledger(sample_rt, kind="approval", campaign_id=c.id)[-1].detail)
    assert detail["waivers"][0]["code"] == "PHI302"


async def test_editing_one_character_after_approval_sends_the_approved_version_until_resubmitted(
        sample_rt, sink, tmp_path) -> None:
    """SEC-6 with content snapshots (issue 15): what was approved is what is sent; the edit
    on disk is a new version that goes out only after a new submission and approval."""
    tpl = copy_template(tmp_path)
    c = create(sample_rt, template=tpl)
    approve(sample_rt, c.id)
    edit_one_character(tpl)
    report = preflight.check(sample_rt, c.id)
    files = next(g for g in report.gates if g.name == "files")
    assert not files.ok and files.severity == "warning" and report.ok
    assert c.template_hash[:12] in files.detail and "submit" in files.fix
    assert campaigns.get(sample_rt, c.id).status == "approved"  # the approval is not revoked
    summary = await sending.send(sample_rt, c.id)
    assert summary.sent == len(sink.messages) > 0
    assert all(b"Quieter" not in m.data for m in sink.messages)  # the approved text, not the edit
    sends = ledger(sample_rt, kind="send", campaign_id=c.id)
    assert {r.template_hash for r in sends} == {c.template_hash}
    # the edit is a new version: submitting binds it, and it needs a new approval
    campaigns.transition(sample_rt, c.id, "invalidate", actor="marketer")  # done -> submitted for the test's brevity
    after = campaigns.submit(sample_rt, c.id, actor=AUTHOR)
    assert after.template_hash != c.template_hash
    with pytest.raises(ComplianceRefusal) as err:
        preflight.require(sample_rt, after)
    assert "SEC-6" in err.value.rules


def test_submitting_an_edited_segment_needs_a_new_approval(sample_rt, tmp_path) -> None:
    seg = copy_segment(tmp_path)
    c = create(sample_rt, segment=seg)
    approve(sample_rt, c.id)
    seg.write_text(seg.read_text() + "\n# edited\n")
    preflight.require(sample_rt, campaigns.get(sample_rt, c.id))  # the approved segment is still what counts
    campaigns.transition(sample_rt, c.id, "invalidate", actor=AUTHOR)
    after = campaigns.submit(sample_rt, c.id, actor=AUTHOR)
    assert after.segment_hash != c.segment_hash and after.status == "submitted"
    with pytest.raises(ComplianceRefusal) as err:
        preflight.require(sample_rt, after)
    assert "SEC-6" in err.value.rules


def test_approve_sees_what_was_submitted_not_a_later_edit(sample_rt, tmp_path) -> None:
    tpl = copy_template(tmp_path)
    c = create(sample_rt, template=tpl)
    campaigns.submit(sample_rt, c.id, actor=AUTHOR)
    edit_one_character(tpl)
    a, packet = approvals.approve(sample_rt, c.id, reviewer=REVIEWER)
    assert a.template_hash == packet.template_hash == c.template_hash  # the submitted content, not the edit
    campaigns.transition(sample_rt, c.id, "invalidate", actor=AUTHOR)
    campaigns.submit(sample_rt, c.id, actor=AUTHOR)  # re-submit binds the new content
    assert approvals.approve(sample_rt, c.id, reviewer=REVIEWER)[0].template_hash == campaigns.get(sample_rt, c.id).template_hash
    assert campaigns.get(sample_rt, c.id).template_hash != c.template_hash


def test_reject_sends_back_to_draft(sample_rt) -> None:
    c = create(sample_rt)
    campaigns.submit(sample_rt, c.id, actor=AUTHOR)
    approvals.reject(sample_rt, c.id, reviewer=REVIEWER, reason="subject too vague")
    assert campaigns.get(sample_rt, c.id).status == "draft"
    with sample_rt.engine.connect() as conn:
        t = Approval.__table__
        assert conn.execute(select(t.c.decision).where(t.c.campaign_id == c.id)).scalar() == "rejected"
    with pytest.raises(ComplianceRefusal):
        preflight.require(sample_rt, campaigns.get(sample_rt, c.id))


@pytest.mark.parametrize(("setup", "action"), [
    ((), "approve"), ((), "schedule"), (("submit",), "submit-then-resume"), (("submit", "cancel"), "submit"),
], ids=["approve-a-draft", "schedule-a-draft", "resume-a-submitted", "submit-a-cancelled"])
def test_invalid_transitions_are_state_errors(sample_rt, setup, action) -> None:
    c = create(sample_rt)
    for step in setup:
        if step == "submit":
            campaigns.submit(sample_rt, c.id, actor=AUTHOR)
        else:
            campaigns.transition(sample_rt, c.id, step, actor=AUTHOR)
    with pytest.raises(StateError) as err:
        if action == "approve":
            approvals.approve(sample_rt, c.id, reviewer=REVIEWER)
        elif action == "schedule":
            from mailer import scheduler
            scheduler.schedule(sample_rt, c.id, cron="0 9 * * MON", actor=AUTHOR)
        elif action == "submit-then-resume":
            from mailer import scheduler
            scheduler.resume(sample_rt, c.id, actor=AUTHOR)
        else:
            campaigns.submit(sample_rt, c.id, actor=AUTHOR)
    assert err.value.exit_code == 2


def test_cli_self_approval_exits_3_and_names_the_rule(sample_rt, tmp_path) -> None:
    from typer.testing import CliRunner

    from mailer.cli.app import app
    from tests.helpers_accounts import cli_env
    from tests.helpers_workflow import write_config

    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    runner = CliRunner()
    author = cli_env(cfg, AUTHOR, "marketer", "reviewer")  # even holding the reviewer role
    reviewer = cli_env(cfg, REVIEWER, "reviewer")
    c = create(sample_rt)
    r = runner.invoke(app, ["--config", str(cfg), "campaign", "submit", str(c.id)], env=author)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["--config", str(cfg), "campaign", "approve", str(c.id)], env=author)
    assert r.exit_code == 3 and "SEC-6" in r.output
    assert "--actor" not in r.output and "MAILER_USER" not in r.output
    r = runner.invoke(app, ["--config", str(cfg), "campaign", "approve", str(c.id)], env=reviewer)
    assert r.exit_code == 0, r.output
    assert f"approved by {REVIEWER}" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "campaign", "approve", str(c.id)], env=reviewer)
    assert r.exit_code == 2  # already approved: a state error
