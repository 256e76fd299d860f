"""TST-5/TST-1: patient assets are used only as {{ asset('key') }} with a consent covering email."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer import approvals, campaigns, preflight, sending
from mailer.compliance import assets
from mailer.compliance.models import Asset
from mailer.errors import ComplianceRefusal, TemplateError
from mailer.evidence import write_evidence
from mailer.models import utcnow
from mailer.store.auth_records import import_authorizations
from mailer.store.contacts import import_contacts
from tests.conftest import ROOT
from tests.helpers_workflow import create

QUOTE = "The new scanner was so quiet I almost fell asleep."
NOW = dt.datetime(2026, 12, 1)


def info(**over: Any) -> assets.AssetInfo:
    base: dict[str, Any] = dict(id=1, key="q", kind="quote", contact_id=1, media_type="text/plain", content_sha256="x",
                                channels=("email", "web"), consent_signed_at=dt.datetime(2026, 1, 1),
                                consent_expires_at=dt.datetime(2027, 1, 1), consent_document_sha256="d",
                                revoked_at=None, registered_by="marketer")
    base.update(over)
    return assets.AssetInfo(**base)


@pytest.mark.parametrize(("over", "status", "rule"), [
    ({}, "valid", None),
    ({"revoked_at": dt.datetime(2026, 6, 1)}, "revoked", "TST-1"),
    ({"consent_expires_at": dt.datetime(2026, 11, 30)}, "expired", "TST-5"),
    ({"channels": ("web", "social")}, "channel", "TST-5"),
    ({"consent_signed_at": dt.datetime(2026, 12, 2)}, "not-yet", "TST-5"),
])
def test_consent_status_pure(over: dict[str, Any], status: str, rule: str | None) -> None:
    a = info(**over)
    assert a.consent_status(NOW)[0] == status
    found = assets.refusals({"q": a}, ["q"], NOW)
    assert [r.rule for r in found] == ([rule] if rule else [])
    assert assets.refusals({}, ["missing"], NOW)[0].reason == "asset 'missing' is not registered, so no consent is on file"


@pytest.fixture
def art(crt: Any) -> Any:
    import_contacts(crt.engine, crt.keyring, crt.ledger, ROOT / "examples/contacts.csv", dict(crt.settings.fields.clinical))
    import_authorizations(crt.engine, crt.keyring, crt.ledger, ROOT / "examples/authorizations.csv")
    return crt


def _register(rt: Any, who: Any, tmp_path: Path, **over: Any) -> assets.AssetInfo:
    doc = tmp_path / "consent.pdf"
    doc.write_bytes(b"%PDF signed consent")
    kw: dict[str, Any] = dict(kind="quote", contact_id=1, channels=["email", "web"], signed=utcnow() - dt.timedelta(days=5),
                              expires=utcnow() + dt.timedelta(days=365), consent_document=doc,
                              uses="the quoted sentence, unedited, without name or photo", text=QUOTE)
    kw.update(over)
    return assets.register(rt, who.marketer, "mri-quiet-quote", **kw)


@pytest.mark.parametrize(("over", "revoke", "needle"), [
    (None, False, "is not registered"),
    ({"channels": ["web", "social"]}, False, "does not cover email"),
    ({"expires": utcnow() - dt.timedelta(days=1), "signed": utcnow() - dt.timedelta(days=400)}, False, "expired on"),
    ({}, True, "was revoked"),
], ids=["missing", "not-email", "expired", "revoked"])
def test_submission_refuses_an_asset_without_consent(art: Any, who: Any, tmp_path: Path, over: Any, revoke: bool,
                                                     needle: str) -> None:
    if over is not None:
        _register(art, who, tmp_path, **over)
    if revoke:
        assets.revoke(art, who.reviewer, "mri-quiet-quote")
    c = create(art, template="testimonial", author="marketer")
    art_settings_off(art)
    with pytest.raises(ComplianceRefusal, match=needle) as e:
        campaigns.submit(art, c.id, actor="marketer")
    assert e.value.exit_code == 3 and set(e.value.rules) <= {"TST-5", "TST-1"}


def test_submission_refused_then_passes_once_the_consent_is_registered(art: Any, who: Any, tmp_path: Path) -> None:
    art_settings_off(art)
    c = create(art, template="testimonial", author="marketer")
    with pytest.raises(ComplianceRefusal, match="is not registered"):
        campaigns.submit(art, c.id, actor="marketer")
    _register(art, who, tmp_path)
    assert campaigns.submit(art, c.id, actor="marketer").status == "submitted"


def test_the_asset_gates_read_the_submitted_snapshot(art: Any, who: Any, tmp_path: Path) -> None:
    """Issue 15 x 17: after submission the folder on disk may change (a new version, to be
    re-submitted); review, approval and preflight check the assets of what would be sent."""
    import shutil

    _register(art, who, tmp_path)
    art_settings_off(art)
    t = tmp_path / "testimonial"
    shutil.copytree(ROOT / "templates/testimonial", t)
    c = create(art, template=t, author="marketer")
    campaigns.submit(art, c.id, actor="marketer")
    body = t / "body.html.j2"
    body.write_text(body.read_text().replace("asset('mri-quiet-quote')", "asset('never-registered')"))
    _approval, packet = approvals.approve(art, c.id, reviewer="compliance")
    assert [a["key"] for a in packet.assets] == ["mri-quiet-quote"]
    gate = next(g for g in preflight.evaluate(art, campaigns.get(art, c.id)).gates if g.name == "assets")
    assert not gate.blocking


def art_settings_off(rt: Any) -> None:
    """These tests are about assets: take TRN-1 out of the way by recording training."""
    from mailer.accounts.permissions import Principal
    from mailer.compliance import training

    admin = Principal(1, "admin", frozenset({"admin"}), "service")
    for name in ("marketer", "compliance"):
        training.record(rt, admin, name, course="HIPAA marketing", completed=utcnow() - dt.timedelta(days=1))


async def test_consented_asset_flows_to_the_message_packet_and_evidence(art: Any, who: Any, tmp_path: Path,
                                                                        sink: Any) -> None:
    _register(art, who, tmp_path)
    art_settings_off(art)
    c = create(art, template="testimonial", author="marketer")
    campaigns.submit(art, c.id, actor="marketer")
    _approval, packet = approvals.approve(art, c.id, reviewer="compliance")
    [used] = packet.assets
    assert used["key"] == "mri-quiet-quote" and used["email_status"] == "valid" and "email" in used["channels"]
    assert preflight.check(art, c.id, count=False).ok
    summary = await sending.send(art, c.id)
    assert summary.sent == len(sink.messages) > 0
    body = sink.messages[0].data.decode("utf-8", "replace")
    assert "quiet I almost fell asleep" in body.replace("=\r\n", "").replace("=\n", "")
    z = write_evidence(art, c.id, tmp_path / "ev.zip")
    with zipfile.ZipFile(z.path) as zf:
        consents = json.loads(zf.read("template/assets.json"))
    assert consents[0]["consent_document_sha256"] and consents[0]["email_status"] == "valid"
    # the patient revokes: preflight now refuses the next run (TST-1)
    assets.revoke(art, who.reviewer, "mri-quiet-quote")
    report = preflight.evaluate(art, campaigns.get(art, c.id))
    gate = next(g for g in report.gates if g.name == "assets")
    assert gate.blocking and gate.rule == "TST-1"
    # and a render-time re-check refuses too
    from mailer.templates import compile_template

    t = compile_template(ROOT / "templates/testimonial")
    assets.bind(art, t)
    with pytest.raises(TemplateError, match="revoked"):
        t.render({"contact": {"first_name": "A", "preferred_name": "", "language": "en"},
                  "center": art.settings.center.context(), "campaign": {"name": "x"}, "unsubscribe_url": "https://x/u"})
    # content and consent terms are never in clear in the database
    with art.engine.connect() as conn:
        row = conn.execute(select(Asset)).one()
    assert b"asleep" not in row.content_enc and b"unedited" not in row.consent_enc


def test_cli_register_list_json_and_roles(cli: Any, art: Any, tmp_path: Path) -> None:
    doc = tmp_path / "consent.pdf"
    doc.write_bytes(b"%PDF consent")
    day = utcnow().date()
    args = ["assets", "register", "knee-story", "--kind", "story", "--contact", "2", "--signed", day.isoformat(),
            "--expires", (day + dt.timedelta(days=730)).isoformat(), "--consent-document", str(doc),
            "--uses", "story text as approved", "--channels", "email,web", "--text", "I walked again.", "--format", "json"]
    r = cli(*args, as_="marketer")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["email_status"] == "valid"
    rows = json.loads(cli("assets", "list", "--format", "json", as_="compliance").stdout)
    assert [x["key"] for x in rows] == ["knee-story"] and "I walked" not in json.dumps(rows)
    assert cli("assets", "register", *args[2:], as_="admin").exit_code == 3  # admin: no ASSETS_REGISTER
    bad = cli("assets", "register", "x1", "--kind", "poem", "--contact", "2", "--signed", day.isoformat(),
              "--expires", day.isoformat(), "--consent-document", str(doc), "--uses", "u", "--text", "t", as_="marketer")
    assert bad.exit_code == 2 and "--kind" in bad.stderr
    assert cli("assets", "revoke", "knee-story", as_="compliance").exit_code == 0


def test_patient_content_outside_asset_is_a_review_finding(tmp_path: Path) -> None:
    """TST-5 with the issue-13 lint: a quote or patient image written into the template is a
    `review` finding (acknowledged at approval); the same content through asset() is not."""
    from mailer.lint import lint_template_dir
    from mailer.lint.settings import LintSettings

    t = tmp_path / "t"
    t.mkdir()
    (t / "template.toml").write_text((ROOT / "templates/testimonial/template.toml").read_text())
    (t / "body.html.j2").write_text('<p>Hi</p>\n<blockquote>"Best care ever," said Maria</blockquote>\n'
                                    '<img src="https://x.example/knee-before-and-after.png" alt="before and after">\n'
                                    "<blockquote>{{ asset('ok-quote') }}</blockquote>\n")
    found = [(f.code, f.line, f.severity) for f in lint_template_dir(t, LintSettings()) if f.rule == "TST-1"]
    assert found == [("TST101", 2, "review"), ("TST102", 3, "review")]
    clean = lint_template_dir(ROOT / "templates/testimonial", LintSettings())
    assert [f.code for f in clean if f.rule == "TST-1"] == []


def test_a_preview_names_the_asset_but_never_shows_its_content() -> None:
    """`mailer preview` and the workspace preview have no consent check: a marker, no patient words."""
    from mailer.config import Settings
    from mailer.preview import render_preview

    p = render_preview(Settings(), ROOT / "templates/testimonial")
    assert "[patient asset &#x27;mri-quiet-quote&#x27;" in p.html
