"""MKT-6 for every scope (issue 17 defect): an authorization that records remuneration but
lacks the statement that remuneration is involved is valid for nothing. Checked where it
matters: the segment gate (Evaluator), the send-time re-check (sending.auth_check) and the
registry's `authorizations list` status; the same record with the statement passes."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest

from mailer.authorizations import SCOPES
from mailer.segments import Evaluator, parse_segment, plan_segment
from mailer.sending import auth_check
from mailer.store.auth_records import authorizations_for, grant, list_authorizations
from mailer.store.contacts import import_contacts
from tests.conftest import ROOT

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}
AT = dt.datetime(2026, 11, 28, 12)
SPONSOR = "Acme Pharma"


def fields(scope: str, *, statement: bool) -> dict[str, Any]:
    return {
        "scope": scope, "information_description": "Diagnoses and exam dates", "discloser": "Riverside Imaging",
        "recipients": "Riverside Imaging and its email provider", "purpose": "Screening reminders",
        "expires_at": dt.datetime(2027, 12, 31), "signed_at": dt.datetime(2026, 3, 1, 10),
        "signature_present": True, "statement_revocation": True, "statement_conditioning": True,
        "statement_redisclosure": True, "plain_language": True, "copy_provided": True, "signer": "patient",
        "document_sha256": hashlib.sha256(f"form {scope} {statement}".encode()).hexdigest(),
        "remuneration": True, "remuneration_statement": statement, "third_party": SPONSOR,
    }


def segment_text(scope: str) -> str:
    third = f'third_party = "{SPONSOR}"\n' if scope == "third-party-marketing" else ""
    return (f'name = "s"\nauthorization_scope = "{scope}"\n{third}'
            '[match]\nall = [{ field = "conditions", op = "contains", value = "osteoporosis" }]\n')


@pytest.fixture
def reg(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    return rt


def _records(rt: Any, scope: str) -> tuple[Any, Any]:
    grant(rt.engine, rt.keyring, rt.ledger, contact_id=1, fields=fields(scope, statement=False))
    grant(rt.engine, rt.keyring, rt.ledger, contact_id=2, fields=fields(scope, statement=True))
    got = authorizations_for(rt.engine, rt.keyring, [1, 2])
    return got[1], got[2]


@pytest.mark.parametrize("scope", SCOPES)
def test_registry_list_status(reg: Any, scope: str) -> None:
    _records(reg, scope)
    listed = {r.contact_id: r for r in list_authorizations(reg.engine, reg.keyring, at=AT)}
    assert listed[1].status == "incomplete" and "MKT-6" in listed[1].rules
    assert listed[2].status == "valid"


@pytest.mark.parametrize("scope", [s for s in SCOPES if s != "testimonial"])
def test_segment_gate(reg: Any, scope: str) -> None:
    without, with_statement = _records(reg, scope)
    plan = plan_segment(parse_segment(segment_text(scope), path="s.toml", fields=reg.settings.fields))
    assert not plan.refusals
    ev = Evaluator(plan, AT)
    no = ev.decide({}, without, False, lambda: {"conditions": ["osteoporosis"]})
    yes = ev.decide({}, with_statement, False, lambda: {"conditions": ["osteoporosis"]})
    assert not no.included and "MKT-6" in no.rules
    assert yes.included
    assert sum(ev.counts.excluded_no_authorization.values()) == 1


@pytest.mark.parametrize("scope", [s for s in SCOPES if s != "testimonial"])
def test_send_time_recheck(reg: Any, scope: str) -> None:
    without, with_statement = _records(reg, scope)
    check = auth_check()
    third = SPONSOR if scope == "third-party-marketing" else None
    ok, rules, _id = check(without, scope, AT, third)
    assert not ok and "MKT-6" in rules
    ok, rules, _id = check(with_statement, scope, AT, third)
    assert ok and rules == ()
