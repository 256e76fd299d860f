"""Vendor registry and BAA-1 for the relay (rules §8 item 19)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import pytest
from typer.testing import CliRunner

from mailer import preflight, vendors
from mailer.cli.app import app
from mailer.lint import lint_template_dir
from mailer.models import utcnow
from mailer.sending import lint_settings
from tests.helpers_accounts import cli_env
from tests.helpers_workflow import approved, copy_template, write_config

DOC = "a" * 64
RELAY = {"host": "localhost", "operated_by_covered_entity": False}


def relay_gate(rt, c):  # type: ignore[no-untyped-def]
    return {g.name: g for g in preflight.evaluate(rt, c).gates}["relay"]


def test_esp_without_a_signed_baa_fails_baa_1(runtime_factory, sink) -> None:
    rt = runtime_factory(sink, smtp=RELAY)
    vendors.add(rt.engine, rt.ledger, name="Acme ESP", host="localhost", baa_signed_at=None)
    c = approved(rt)
    g = relay_gate(rt, c)
    assert g.blocking and g.rule == "BAA-1" and "no signed BAA" in g.detail


def test_relay_with_no_vendor_record_fails_baa_1(runtime_factory, sink) -> None:
    rt = runtime_factory(sink, smtp=RELAY)
    g = relay_gate(rt, approved(rt))
    assert g.blocking and "mailer vendors add" in g.fix


def test_baa_in_force_passes_until_it_expires(runtime_factory, sink) -> None:
    rt = runtime_factory(sink, smtp=RELAY)
    now = utcnow()
    vendors.add(rt.engine, rt.ledger, name="Acme Relay", host="LOCALHOST", baa_signed_at=now - timedelta(days=30),
                baa_expires_at=now + timedelta(days=335), document_sha256=DOC)
    c = approved(rt)
    assert relay_gate(rt, c).ok
    vendors.expire(rt.engine, rt.ledger, "Acme Relay")
    g = relay_gate(rt, c)
    assert g.blocking and "expired" in g.detail


@pytest.mark.parametrize(("signed", "expires", "ok"), [
    (datetime(2026, 1, 1), datetime(2027, 1, 1), True),
    (datetime(2026, 12, 1), None, False),  # not signed yet
    (datetime(2025, 1, 1), datetime(2026, 1, 1), False),  # lapsed
    (datetime(2025, 1, 1), None, True),  # evergreen
], ids=["in-force", "future", "lapsed", "evergreen"])
def test_baa_status_is_pure(signed, expires, ok) -> None:
    from mailer.models import Vendor

    v = Vendor(name="v", host="h", baa_signed_at=signed, baa_expires_at=expires, document_sha256=DOC)
    assert vendors.baa_status(v, datetime(2026, 11, 28)).in_force is ok


def test_covered_entity_relay_needs_no_vendor(runtime_factory, sink) -> None:
    rt = runtime_factory(sink)  # the test config declares the relay operated by the covered entity
    assert relay_gate(rt, approved(rt)).ok


def test_cli_add_list_expire(runtime_factory, sink, tmp_path) -> None:
    rt = runtime_factory(sink, smtp=RELAY)
    cfg = write_config(rt, tmp_path / "mailer.toml")
    doc = tmp_path / "baa.pdf"
    doc.write_bytes(b"%PDF signed BAA")
    runner = CliRunner(env=cli_env(cfg, "compliance", "admin"))  # vendors are an administrator's job
    base = ["--config", str(cfg), "vendors"]
    r = runner.invoke(app, [*base, "add", "Acme Relay", "--host", "localhost", "--baa-signed", "2026-01-15",
                            "--baa-expires", "2027-01-15", "--document", str(doc)])
    assert r.exit_code == 0 and "BAA in force" in r.output, r.output
    r = runner.invoke(app, [*base, "add", "No Paper", "--host", "x.example", "--baa-signed", "2026-01-15"])
    assert r.exit_code == 2 and "BAA-2" in r.output  # a signed BAA needs its document hash
    r = runner.invoke(app, [*base, "list", "--format", "json"])
    rows = json.loads(r.stdout)
    assert rows[0]["document_sha256"] == hashlib.sha256(b"%PDF signed BAA").hexdigest()
    assert rows[0]["in_force"] and rows[0]["relay"]
    r = runner.invoke(app, [*base, "expire", "Acme Relay"])
    assert r.exit_code == 0
    rows = json.loads(runner.invoke(app, [*base, "list", "--format", "json"]).stdout)
    assert rows[0]["in_force"] is False
    kinds = [(e.kind, e.outcome) for e in rt.ledger.rows()]
    assert ("system", "vendor-added") in kinds and ("system", "vendor-expired") in kinds


def test_ad_pixel_in_a_patient_email_is_phi_7(sample_rt, tmp_path) -> None:
    """Item 19's second half: a third-party pixel is a PHI-7 lint error, so preflight refuses."""
    tpl = copy_template(tmp_path)
    body = tpl / "body.html.j2"
    body.write_text(body.read_text().replace("</body>", '<img src="https://ads.tracker.example/px.gif?c=1" width="1" height="1"></body>'))
    assert "PHI-7" in {f.rule for f in lint_template_dir(tpl, lint_settings(sample_rt)) if f.blocking}
    from tests.helpers_workflow import create

    c = create(sample_rt, template=tpl)
    lint = {g.name: g for g in preflight.evaluate(sample_rt, c).gates}["lint"]
    assert lint.blocking and "PHI-7" in {r.rule for r in lint.refusals}
