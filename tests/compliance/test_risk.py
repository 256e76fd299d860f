"""RSK-1/RSK-2: a new initiative needs an approved risk assessment, by a reviewer other than its author."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from mailer import preflight
from mailer.compliance import risk
from mailer.compliance.models import RiskAssessment
from mailer.errors import ComplianceRefusal
from tests.helpers_workflow import approved, create


def test_pure_new_elements_and_coverage() -> None:
    cur = {"purpose:newsletter", "channel:email", "vendor:relay.example", "field:first_name"}
    used = [{"purpose:newsletter", "channel:email", "vendor:relay.example"}]
    assert risk.new_elements(cur, used) == {"field:first_name"}
    a = risk.Assessment(1, "t", ("field:first_name",), "low", "proceed", "approved", "m", "r", None, None)  # type: ignore[arg-type]
    assert risk.refusals({"field:first_name"}, [a]) == []
    draft = risk.Assessment(1, "t", ("field:first_name",), "low", "proceed", "draft", "m", None, None, None)  # type: ignore[arg-type]
    found = risk.refusals({"field:first_name", "vendor:x"}, [draft])
    assert found[0].rule == "RSK-1" and "field:first_name, vendor:x" in found[0].reason
    no = risk.Assessment(1, "t", ("vendor:x",), "high", "do-not-proceed", "approved", "m", "r", None, None)  # type: ignore[arg-type]
    assert risk.refusals({"vendor:x"}, [no])


@pytest.fixture
def rrt(runtime_factory: Any, sink: Any) -> Any:
    from mailer.store.auth_records import import_authorizations
    from mailer.store.contacts import import_contacts
    from tests.conftest import ROOT

    rt = runtime_factory(sink, compliance={"risk_assessment_required": True})
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    return rt


def test_first_campaign_refused_then_passes_with_an_approved_assessment(rrt: Any) -> None:
    from tests.compliance.helpers import people

    who = people(rrt)
    c = approved(rrt)
    gate = next(g for g in preflight.check(rrt, c.id).gates if g.name == "risk")
    assert gate.blocking and gate.rule == "RSK-1"
    assert "purpose:newsletter" in gate.detail and "vendor:localhost" in gate.detail and "field:first_name" in gate.detail
    new, _ = risk.campaign_refusals(rrt, c)
    a = risk.draft(rrt, who.marketer, title="Monthly newsletter", covers=new, phi="first name, email address",
                   recipients="our relay (covered entity)", safeguards="TLS, BAA, encryption at rest",
                   residual_risk="low", decision="proceed")
    with pytest.raises(ComplianceRefusal) as e:  # RSK-2: four eyes, even for a reviewer-author
        risk.decide(rrt, who.reviewer, (risk.draft(rrt, who.reviewer, title="x", covers=["channel:email"], phi="p",
                                                   recipients="r", safeguards="s", residual_risk="low",
                                                   decision="proceed")).id, approve=True)
    assert e.value.rules == ("RSK-2",)
    assert not preflight.check(rrt, c.id).ok  # a draft does not count
    risk.decide(rrt, who.reviewer, a.id, approve=True)
    assert preflight.check(rrt, c.id).ok
    # the next campaign of the same initiative is not new any more
    c2 = approved(rrt, name="December")
    gate2 = next(g for g in preflight.check(rrt, c2.id).gates if g.name == "risk")
    assert gate2.ok and "no new" in gate2.detail
    # a new data field (condition targeting) is a new initiative again, named
    c3 = create(rrt, template="condition-targeted", segment="osteoporosis-followup")
    new3, found = risk.campaign_refusals(rrt, c3)
    assert "field:conditions" in new3 and found and "field:conditions" in found[0].reason
    with rrt.engine.connect() as conn:
        row = conn.execute(select(RiskAssessment).where(RiskAssessment.id == a.id)).one()
    assert b"BAA" not in row.details_enc and json.loads(row.covers_json) == sorted(new)


def test_cli_draft_from_campaign_approve_list(cli: Any, crt: Any) -> None:
    from tests.helpers_workflow import create as make

    c = make(crt)
    r = cli("risk", "draft", "--campaign", str(c.id), "--title", "Newsletter", "--phi", "names", "--recipients", "relay",
            "--safeguards", "TLS", "--residual-risk", "low", "--format", "json", as_="marketer")
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert "purpose:newsletter" in made["covers"] and made["status"] == "draft"
    assert cli("risk", "approve", str(made["id"]), as_="marketer").exit_code == 3  # marketers never approve
    assert cli("risk", "approve", str(made["id"]), as_="compliance").exit_code == 0
    rows = json.loads(cli("risk", "list", "--format", "json").stdout)
    assert rows[0]["status"] == "approved" and rows[0]["reviewer"] == "compliance"
    assert json.loads(cli("risk", "show", str(made["id"])).stdout)["safeguards"] == "TLS"
    bad = cli("risk", "draft", "--covers", "colour:blue", "--title", "t", "--phi", "p", "--recipients", "r",
              "--safeguards", "s", "--residual-risk", "low", as_="marketer")
    assert bad.exit_code == 2
