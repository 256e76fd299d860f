"""The workspace's record-keeping actions in a real browser (issue 16): authorizations granted
and revoked by a reviewer, roles changed by an administrator, one recipient's details shown
for a reason, and the ledger verified with progress (intact, then tampered with).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, text

from mailer.ledger import Event
from mailer.ledger_report import build_report, render_text
from mailer.models import Authorization, LedgerEntry
from tests.web.conftest import Server, csrf_of, shot, sign_in

_L = LedgerEntry.__table__  # type: ignore[attr-defined]
_AU = Authorization.__table__  # type: ignore[attr-defined]
SCOPE = "condition-targeted-marketing"
CLINICAL = "Mammography results and screening history"  # typed into the form, never shown back


def entries(server: Server, kind: str, outcome: str) -> list[Any]:
    with server.rt.engine.connect() as conn:
        return conn.execute(select(_L).where(_L.c.kind == kind, _L.c.outcome == outcome).order_by(_L.c.seq)).all()


def quarter_text(server: Server) -> str:
    from mailer.models import utcnow

    now = utcnow()
    return render_text(build_report(server.rt.ledger, f"{now.year}Q{(now.month - 1) // 3 + 1}", verify=False))


def test_reviewer_grants_and_revokes_an_authorization(server: Server, new_page: Any) -> None:
    page = new_page()
    sign_in(page, server, "rita")
    page.goto(server.url + "/authorizations")
    form = page.locator("#grant form")
    form.locator("input[name=contact]").fill("5")
    form.locator("select[name=scope]").select_option(SCOPE)
    form.locator("input[name=information_description]").fill(CLINICAL)
    form.locator("input[name=discloser]").fill("Riverside Imaging Center")
    form.locator("input[name=recipients]").fill("Riverside Imaging Center")
    form.locator("input[name=purpose]").fill("Screening reminders")
    form.locator("input[name=expires]").fill("2030-01-31")
    form.locator("input[name=signed_at]").fill("2026-03-01")
    for flag in ("signature_present", "statement_revocation", "statement_conditioning", "statement_redisclosure",
                 "copy_provided"):
        form.locator(f"input[name={flag}]").check()
    form.locator("input[name=document_sha256]").fill("ab" * 32)
    form.locator("button:has-text('Record authorization')").click()
    assert "Recorded authorization" in page.inner_text("#granted") and "valid" in page.inner_text("#granted")
    assert CLINICAL not in page.content() and "Screening reminders" not in page.content()
    shot(page, "authorization-granted")
    granted = entries(server, "authorization", "granted")[-1]
    assert granted.actor == "rita" and granted.contact_id == 5
    new_id = granted.authorization_id
    # the field is validated on the server, at the field, and the descriptions are not shown again
    form = page.locator("#grant form")
    form.locator("input[name=contact]").fill("abc")
    form.locator("select[name=scope]").select_option(SCOPE)
    form.locator("input[name=information_description]").fill(CLINICAL)
    form.locator("input[name=document_sha256]").fill("not-a-hash")
    form.locator("button:has-text('Record authorization')").click()
    errors = page.locator("#grant .field-error").all_inner_texts()
    assert any("contact's id" in e for e in errors) and any("SHA-256" in e for e in errors)
    assert CLINICAL not in page.content()
    # an unknown scope is refused with the known ones; nothing revoked
    form = page.locator("#revoke form")
    form.locator("input[name=contact]").fill("5")
    form.locator("input[name=scope]").fill("everything")
    form.locator("button:has-text('Record revocation')").click()
    assert "is unknown; nothing was revoked" in page.inner_text("#revoke .field-error")
    form = page.locator("#revoke form")
    form.locator("input[name=contact]").fill("99999")
    form.locator("input[name=scope]").fill(SCOPE)
    form.locator("button:has-text('Record revocation')").click()
    assert "no contact with id 99999" in page.inner_text("#revoke .field-error")
    assert entries(server, "authorization", "revoke-unmatched") == []
    form = page.locator("#revoke form")
    form.locator("input[name=contact]").fill("5")
    form.locator("input[name=scope]").fill(SCOPE)
    form.locator("button:has-text('Record revocation')").click()
    assert "1 authorization(s) revoked" in page.inner_text("#revoked")
    with server.rt.engine.connect() as conn:
        assert conn.execute(select(_AU.c.revoked_at).where(_AU.c.id == new_id)).scalar() is not None
    revoked = entries(server, "authorization", "revoked")[-1]
    assert revoked.actor == "rita" and "AUTH-7" in revoked.rule_ids and revoked.authorization_id == new_id


def test_marketer_sees_no_grant_form_and_a_forged_grant_is_403(server: Server, new_page: Any) -> None:
    page = new_page()
    sign_in(page, server, "mara")
    page.goto(server.url + "/authorizations")
    assert page.locator("#grant").count() == 0 and page.locator("#revoke").count() == 1
    before = len(entries(server, "authorization", "granted"))
    resp = page.request.post(server.url + "/authorizations/grant",
                             form={"csrf_token": csrf_of(page), "contact": "5", "scope": SCOPE})
    assert resp.status == 403
    assert "may not authorizations.grant" in resp.text() and "SEC-10" in resp.text()
    assert "an administrator can give this account one of these roles: staff, reviewer" in resp.text()
    assert len(entries(server, "authorization", "granted")) == before
    denied = json.loads(entries(server, "access", "denied")[-1].detail)
    assert denied["action"] == "authorizations.grant"
    # without the CSRF token even an allowed account is refused
    rita = new_page()
    sign_in(rita, server, "rita")
    rita.goto(server.url + "/authorizations")
    assert rita.request.post(server.url + "/authorizations/grant", form={"contact": "5", "scope": SCOPE}).status == 403


def test_admin_changes_roles_and_the_page_follows(server: Server, new_page: Any) -> None:
    mara = new_page()
    sign_in(mara, server, "mara")
    assert "Ledger" not in mara.inner_text("header nav")
    admin = new_page()
    sign_in(admin, server, "admin")
    admin.goto(server.url + "/users")
    row = admin.locator("#roles-mara")
    row.locator("input[name=role_staff]").check()
    row.locator("input[name=role_marketer]").uncheck()
    row.locator("button:has-text('Set roles')").click()
    assert "Done: roles." in admin.inner_text(".notice")
    shot(admin, "users-roles")
    changed = entries(server, "access", "roles-changed")[-1]
    assert changed.actor == "admin"
    assert json.loads(changed.detail)["after"] == ["staff"]
    # the marketer's live session has the new roles at its next request
    mara.goto(server.url + "/authorizations")
    assert mara.locator("#grant").count() == 1
    # no role at all is refused at the field; the last administrator keeps the admin role
    admin.goto(server.url + "/users")
    row = admin.locator("#roles-mara")
    row.locator("input[name=role_staff]").uncheck()
    row.locator("button:has-text('Set roles')").click()
    assert "pick at least one role" in admin.inner_text(".field-error")
    row = admin.locator("#roles-admin")
    row.locator("input[name=role_admin]").uncheck()
    row.locator("input[name=role_reviewer]").check()
    row.locator("button:has-text('Set roles')").click()
    assert "last enabled administrator" in admin.inner_text("main")
    assert "give another account the admin role first" in admin.inner_text("main")
    # an unknown account or action is a 404
    assert admin.request.post(server.url + "/users/nobody/roles", form={"csrf_token": csrf_of(admin)}).status == 404
    assert admin.request.post(server.url + "/users/mara/promote", form={"csrf_token": csrf_of(admin)}).status == 404
    # a reviewer cannot change roles
    rita = new_page()
    sign_in(rita, server, "rita")
    rita.goto(server.url + "/")
    assert rita.request.post(server.url + "/users/mara/roles",
                             form={"csrf_token": csrf_of(rita), "role_admin": "1"}).status == 403


def test_recipient_details_need_a_reason_and_are_recorded(server: Server, new_page: Any) -> None:
    from mailer.store.contacts import contacts_by_id, decrypt_identity

    who = decrypt_identity(server.rt.keyring, contacts_by_id(server.rt.engine, [1])[1])
    page = new_page()
    sign_in(page, server, "rita")
    page.goto(server.url + "/authorizations")
    page.locator("header nav a:has-text('Recipients')").click()
    page.fill("input[name=contact]", "1")
    page.click("button:has-text('Show details')")
    assert "say why you need this recipient's details" in page.inner_text("#reason-error")
    assert "SEC-5" in page.inner_text("#reason-error")
    assert who.email not in page.content()
    assert entries(server, "access", "recipient-viewed") == []
    page.fill("input[name=reason]", f"patient called about the newsletter from {who.email}, ticket 4411")
    page.click("button:has-text('Show details')")
    assert page.inner_text("#recipient-email") == who.email
    assert who.email not in page.url and who.email not in page.title() and "?" not in page.url
    assert "osteoporosis" not in page.content()  # clinical values are not shown
    shot(page, "recipient")
    got = entries(server, "access", "recipient-viewed")
    assert len(got) == 1
    e = got[0]
    assert e.actor == "rita" and e.contact_id == 1 and e.recipient_hash == who.email_hash
    detail = json.loads(e.detail)
    assert detail["reason"] == "patient called about the newsletter from <address>, ticket 4411"
    with server.rt.engine.connect() as conn:
        raw = " ".join(str(v) for v in conn.execute(select(_L)).all())
    assert who.email not in raw and who.identity.get("last_name", "@") not in raw
    assert "recipient-viewed" in quarter_text(server)
    # a marketer has no such page, and a forged POST is refused and recorded
    mara = new_page()
    sign_in(mara, server, "mara")
    assert "Recipients" not in mara.inner_text("header nav")
    resp = mara.request.post(server.url + "/recipients", form={"csrf_token": csrf_of(mara), "contact": "1",
                                                                "reason": "just curious about this one"})
    assert resp.status == 403 and who.email not in resp.text()
    assert json.loads(entries(server, "access", "denied")[-1].detail)["action"] == "contacts.view"


@pytest.fixture
def slow_verify(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Verification pauses after its first page until the test lets it go: the page is seen
    while the check runs, whatever the machine's speed (no timing in the test)."""
    from mailer.ledger import Ledger

    gate = threading.Event()
    real = Ledger.verify

    def verify(self: Ledger, *, page: int = 20000, progress: Any = None, **kw: Any) -> Any:
        def step(n: int) -> None:
            if progress is not None:
                progress(n)
            gate.wait(30)

        return real(self, page=25, progress=step, **kw)

    monkeypatch.setattr(Ledger, "verify", verify)
    return gate


def test_verify_shows_progress_then_the_result_and_a_tampered_entry(server: Server, new_page: Any,
                                                                   slow_verify: threading.Event) -> None:
    from tests.test_ledger_support import drop_triggers, sql

    server.rt.ledger.append([Event(kind="system", outcome=f"filler-{i}") for i in range(100)])
    page = new_page()
    sign_in(page, server, "rita")
    page.goto(server.url + "/ledger")
    page.click("button:has-text('Verify the chain')")
    assert "/ledger/verify/" in page.url
    assert page.locator("meta[http-equiv=refresh]").count() == 1  # reloads itself: no script
    expect(page.locator("#checked")).to_have_text("25")  # the page reloads itself until it shows progress
    assert page.locator("#verify-result").count() == 0
    shot(page, "ledger-verify-progress")
    slow_verify.set()
    page.wait_for_selector("#verify-result", timeout=30000)
    assert "Ledger intact" in page.inner_text("#verify-result")
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    shot(page, "ledger-verify-intact")
    verified = entries(server, "access", "ledger-verified")
    assert verified[-1].actor == "rita" and json.loads(verified[-1].detail)["ok"] is True
    page.goto(server.url + "/")
    assert "intact" in page.inner_text("#verification")
    # tamper with one entry straight in the database: the result names it and links to it
    drop_triggers(server.rt.engine)
    bad = entries(server, "system", "filler-40")[0].seq
    sql(server.rt.engine, "UPDATE ledger SET outcome = 'filler-x' WHERE seq = :s", {"s": bad})
    page.goto(server.url + "/ledger")
    page.click("button:has-text('Verify the chain')")
    page.wait_for_selector("#verify-result", timeout=30000)
    assert f"BROKEN at entry {bad}" in page.inner_text("#verify-result")
    shot(page, "ledger-verify-broken")
    page.click("#first-bad")
    assert "does NOT match its hash or signature" in page.inner_text("main")
    last = json.loads(entries(server, "access", "ledger-verified")[-1].detail)
    assert last["ok"] is False and last["first_bad_seq"] == bad
    page.goto(server.url + "/")
    assert "BROKEN" in page.inner_text("#verification")
    # an unknown job is a 404 without a stack trace
    assert page.goto(server.url + "/ledger/verify/nope").status == 404
    with server.rt.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger_verification")).scalar() == 2
