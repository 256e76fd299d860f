"""The workspace in a real browser (Chromium via Playwright) against the real app under
uvicorn and a real database: what a marketer, a reviewer and an administrator would check.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from typing import Any

from sqlalchemy import select

from mailer import campaigns, rules
from mailer.models import Approval, LedgerEntry
from tests.web.conftest import Server, csrf_of, shot, sign_in

_L = LedgerEntry.__table__  # type: ignore[attr-defined]
_A = Approval.__table__  # type: ignore[attr-defined]
FAILED = "Sign-in failed: the name, password or code is wrong, or the account cannot sign in now."


def access(server: Server, outcome: str) -> list[dict[str, Any]]:
    with server.rt.engine.connect() as conn:
        rows = conn.execute(select(_L.c.actor, _L.c.detail).where(_L.c.kind == "access", _L.c.outcome == outcome)
                            .order_by(_L.c.seq)).all()
    return [{"actor": r.actor, **json.loads(r.detail)} for r in rows]


def create_and_submit(page: Any, server: Server, name: str = "Evening hours") -> int:
    page.goto(server.url + "/campaigns/new")
    page.fill("input[name=name]", name)
    page.select_option("select[name=template]", "newsletter")
    page.select_option("select[name=segment]", "newsletter.toml")
    page.click("button:has-text('Create draft')")
    assert "/campaigns/" in page.url and "done=created" in page.url
    cid = int(page.url.split("/campaigns/")[1].split("?")[0])
    page.click("button:has-text('Submit for review')")
    assert page.inner_text("#status") == "submitted"
    return cid


def buttons(page: Any) -> set[str]:
    return {b.strip() for b in page.locator("#actions button").all_inner_texts()}


def test_sign_in_with_totp_and_a_wrong_code_says_nothing_more(server: Server, new_page: Any) -> None:
    page = new_page()
    sign_in(page, server, "rita", code="000000")
    assert FAILED in page.inner_text(".error")
    assert page.url.endswith("/login")
    sign_in(page, server, "rita")
    assert page.url == server.url + "/"
    assert page.inner_text(".who .account") == "rita"
    shot(page, "dashboard-reviewer")
    signed = [e for e in access(server, "signed-in") if e["actor"] == "rita"]
    assert signed and signed[-1]["second_factor"] is True
    assert any(e.get("reason") == "bad-totp" for e in access(server, "sign-in-failed"))
    opened = access(server, "session-opened")
    assert opened[-1]["actor"] == "rita" and opened[-1]["channel"] == "web"
    # cookies: HttpOnly and SameSite=Strict, the session id is not the stored value
    cookie = next(c for c in page.context.cookies() if c["name"] == "mailer_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click("button:has-text('Sign out')")
    assert "You are signed out." in page.inner_text(".notice")
    assert access(server, "signed-out")[-1]["actor"] == "rita"


def test_forced_password_change_at_first_sign_in(server: Server, new_page: Any) -> None:
    from mailer.accounts import service as accounts
    from mailer.accounts.permissions import Principal

    admin = Principal(1, "admin", frozenset({"admin"}), "service")
    _info, otp, _ = accounts.create_account(server.rt, admin, "nina", ["marketer"])
    page = new_page()
    page.goto(server.url + "/login")
    page.fill("input[name=name]", "nina")
    page.fill("input[name=password]", otp or "")
    page.click("button[type=submit]")
    assert page.url.endswith("/password")
    page.goto(server.url + "/campaigns")  # nothing else opens before the change
    assert page.url.endswith("/password")
    page.fill("input[name=current]", otp or "")
    page.fill("input[name=new]", "password")
    page.fill("input[name=again]", "password")
    page.click("button:has-text('Change password')")
    assert "commonly used" in page.inner_text(".field-error") or "at least" in page.inner_text(".field-error")
    page.fill("input[name=current]", otp or "")
    page.fill("input[name=new]", "violet umbrella tangent river")
    page.fill("input[name=again]", "violet umbrella tangent river")
    page.click("button:has-text('Change password')")
    assert page.url.startswith(server.url + "/?changed=1")
    assert "Your password was changed." in page.inner_text(".notice")
    page.goto(server.url + "/campaigns")  # the rotated session works; the pre-change id does not
    assert page.url.endswith("/campaigns")
    assert access(server, "session-rotated")[-1]["actor"] == "nina"
    # an administrator's reset ends the live session at its next request
    accounts.reset_password(server.rt, admin, "nina")
    page.goto(server.url + "/campaigns")
    assert page.url.endswith("/login?ended=password-changed")
    assert "changed or reset" in page.inner_text(".notice")


def test_marketer_creates_and_submits_and_cannot_approve(server: Server, new_page: Any) -> None:
    page = new_page()
    sign_in(page, server, "mara")
    cid = create_and_submit(page, server)
    shot(page, "campaign-submitted-marketer")
    assert "Approve" not in buttons(page) and "Reject" not in buttons(page)
    assert "Waiting for a reviewer other than you" in page.inner_text("#actions")
    # a forged approve POST with a valid CSRF token still gets 403 (the permission table says no)
    resp = page.request.post(f"{server.url}/campaigns/{cid}/approve", form={"csrf_token": csrf_of(page)})
    assert resp.status == 403
    assert "may not campaign.approve" in resp.text() and "an administrator can give" not in resp.text()
    assert campaigns.get(server.rt, cid).status == "submitted"
    denied = access(server, "denied")
    assert denied[-1]["actor"] == "mara" and denied[-1]["action"] == "campaign.approve"


def test_reviewer_approves_bound_to_the_hashes_and_an_edit_on_disk_is_a_new_version(server: Server, new_page: Any) -> None:
    author = new_page()
    sign_in(author, server, "mara")
    cid = create_and_submit(author, server)
    page = new_page()
    sign_in(page, server, "rita")
    assert f"#{cid} Evening hours" in page.inner_text("#waiting")
    shot(page, "dashboard")
    page.click(f"#waiting a:has-text('#{cid}')")
    assert {"Approve", "Reject"} <= buttons(page)
    assert page.locator("#lint").count() == 1
    counts = page.inner_text("#counts")
    assert "Considered" in counts and "Matched (will receive)" in counts
    assert page.locator("iframe.preview").get_attribute("sandbox") == ""
    frame = page.frame_locator("iframe.preview")
    assert "Sample" in frame.locator("body").inner_text()
    shot(page, "campaign-review")
    page.fill("input[name=comment]", "checked wording and counts")
    page.click("button:has-text('Approve')")
    assert page.inner_text("#status") == "approved"
    c = campaigns.get(server.rt, cid)
    with server.rt.engine.connect() as conn:
        a = conn.execute(select(_A).where(_A.c.campaign_id == cid)).one()
    assert (a.reviewer, a.decision) == ("rita", "approved")
    assert (a.template_hash, a.segment_hash) == campaigns.current_hashes(c) == (c.template_hash, c.segment_hash)
    row = page.locator("#approvals tbody tr").first.inner_text()
    assert a.template_hash in row and a.segment_hash in row and "checked wording and counts" in row
    # the author edits the template on disk after approval (issue 15): what was approved is the
    # submitted snapshot, and that is what would be sent; the edit is a new version that
    # needs a new submission, so the approval stays bound to the approved hashes
    body = server.templates / "newsletter" / "body.html.j2"
    body.write_text(body.read_text().replace("quieter", "Quieter", 1))
    author.goto(f"{server.url}/campaigns/{cid}")
    assert author.inner_text("#status") == "approved"
    after = campaigns.get(server.rt, cid)
    assert (after.template_hash, after.segment_hash) == (a.template_hash, a.segment_hash)
    assert campaigns.current_hashes(after, server.rt) == (a.template_hash, a.segment_hash)


def test_reviewer_rejects_with_a_comment_at_the_field(server: Server, new_page: Any) -> None:
    author = new_page()
    sign_in(author, server, "mara")
    cid = create_and_submit(author, server)
    page = new_page()
    sign_in(page, server, "rita")
    page.goto(f"{server.url}/campaigns/{cid}")
    page.click("button:has-text('Reject')")
    assert "say why it is rejected" in page.inner_text(".field-error")
    page.fill("input[name=comment]", "the subject line overpromises")
    page.click("button:has-text('Reject')")
    assert page.inner_text("#status") == "draft"


def test_idle_timeout_signs_out(server_factory: Any, new_page: Any) -> None:
    server = server_factory(idle_timeout=2)
    page = new_page()
    sign_in(page, server, "mara")
    assert page.url == server.url + "/"
    time.sleep(2.5)
    page.goto(server.url + "/campaigns")
    assert page.url.endswith("/login?ended=idle")
    assert "signed out after a period of inactivity" in page.inner_text(".notice")
    ended = access(server, "logged-off")
    assert ended[-1]["actor"] == "mara" and ended[-1]["reason"] == "idle"
    page.goto(server.url + "/")  # the old cookie is gone, the session stays ended
    assert "/login" in page.url


def test_post_without_csrf_token_is_refused(server: Server, new_page: Any) -> None:
    page = new_page()
    sign_in(page, server, "mara")
    resp = page.request.post(f"{server.url}/campaigns/new", form={"name": "x", "template": "newsletter",
                                                                 "segment": "newsletter.toml"})
    assert resp.status == 403 and "security token" in resp.text()
    resp = page.request.post(f"{server.url}/campaigns/new", form={"csrf_token": "forged", "name": "x"})
    assert resp.status == 403
    page.goto(server.url + "/campaigns")
    assert "No campaigns match." in page.inner_text("table")
    resp = page.request.post(f"{server.url}/logout", form={})
    assert resp.status == 403


def test_lockout_after_five_failures_without_revealing_the_account(server: Server, new_page: Any) -> None:
    page = new_page()
    for _ in range(5):
        sign_in(page, server, "mara", password="wrong password here")
        assert FAILED in page.inner_text(".error")
    sign_in(page, server, "mara")  # the right password, but the account is now locked
    locked_text = page.inner_text(".error")
    assert FAILED in locked_text and page.url.endswith("/login")
    sign_in(page, server, "mara", password="x")  # noqa
    page.goto(server.url + "/login")
    page.fill("input[name=name]", "nobody-here")
    page.fill("input[name=password]", "whatever it is")
    page.click("button[type=submit]")
    assert page.inner_text(".error") == locked_text  # same words: nothing tells the two apart
    assert access(server, "locked-out")[-1]["actor"] == "mara"
    shot(page, "sign-in-refused")


def test_evidence_zip_downloads_and_its_manifest_verifies(server: Server, new_page: Any) -> None:
    author = new_page()
    sign_in(author, server, "mara")
    cid = create_and_submit(author, server)
    page = new_page()
    sign_in(page, server, "rita")
    page.goto(f"{server.url}/campaigns/{cid}")
    page.click("button:has-text('Approve')")
    with page.expect_download() as info:
        page.click("a:has-text('Download evidence package')")
    data = open(info.value.path(), "rb").read()  # noqa: SIM115
    zf = zipfile.ZipFile(io.BytesIO(data))
    manifest = zf.read("MANIFEST.sha256").decode().splitlines()
    assert len(manifest) >= 8
    for line in manifest:
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256(zf.read(name.lstrip("*"))).hexdigest() == digest, name
    assert json.loads(zf.read("verification.json"))["ok"] is True
    views = access(server, "viewed")
    assert any(v["page"] == "evidence-download" and v["campaign"] == cid for v in views)


def test_pages_never_show_an_action_the_roles_do_not_allow(server: Server, new_page: Any) -> None:
    from mailer.accounts.permissions import Principal
    from mailer.web.workspace.campaign_pages import ACTIONS, available_actions

    labels = {"submit": "Submit for review", "approve": "Approve", "reject": "Reject", "schedule": "Schedule",
              "send": "Send now", "pause": "Pause", "resume": "Resume", "cancel": "Cancel campaign"}
    author = new_page()
    sign_in(author, server, "mara")
    cid = create_and_submit(author, server)
    pages = {who: new_page() for who in ("stan", "rita", "admin")}
    for who, p in pages.items():
        sign_in(p, server, who)
    pages["mara"] = author
    for who, p in pages.items():
        p.goto(f"{server.url}/campaigns/{cid}")
        c = campaigns.get(server.rt, cid)
        roles = frozenset(server.rt.engine.connect().execute(
            select(__import__("mailer.accounts.models", fromlist=["Account"]).Account.__table__.c.roles)
            .where(__import__("mailer.accounts.models", fromlist=["Account"]).Account.__table__.c.name == who))
            .scalar().split(","))
        allowed = set(available_actions(Principal(0, who, roles, "session"), c))
        shown = {a for a, label in labels.items() if label in buttons(p)}
        assert shown == allowed, (who, shown, allowed)
        for a in set(ACTIONS) - allowed:
            assert labels[a] not in buttons(p)
        nav = p.inner_text("header nav")
        assert ("Ledger" in nav) == (who in ("rita", "admin"))
        assert ("Users" in nav) == (who == "admin")
    assert "Approve" in buttons(pages["rita"]) and "Approve" not in buttons(pages["stan"])
    assert buttons(pages["admin"]) == set()
    shot(pages["admin"], "campaign-admin-view")
    # a marketer cannot open the ledger, the access log or the users page
    for path in ("/ledger", "/access", "/users", "/ledger/export.csv"):
        assert author.request.get(server.url + path).status == 403


def test_disabled_account_session_ends_at_its_next_request(server: Server, new_page: Any) -> None:
    page = new_page()
    sign_in(page, server, "mara")
    assert page.url == server.url + "/"
    admin = new_page()
    sign_in(admin, server, "admin")
    admin.goto(server.url + "/users")
    shot(admin, "users")
    admin.locator("tr:has(td:text-is('mara')) button:has-text('Disable')").click()
    assert "Done: disable." in admin.inner_text(".notice")
    page.goto(server.url + "/campaigns")
    assert "/login" in page.url
    assert any(e["reason"] == "disabled" for e in access(server, "logged-off"))


def test_ledger_pages_paginate_and_views_are_recorded(server: Server, new_page: Any) -> None:
    from mailer.ledger import Event

    server.rt.ledger.append([Event(kind="system", outcome=f"filler-{i}") for i in range(120)])
    page = new_page()
    sign_in(page, server, "rita")
    page.goto(server.url + "/ledger")
    first = page.locator("table.ledger tbody tr").count()
    assert first == 50
    seqs = [int(t) for t in page.locator("table.ledger tbody tr td:first-child").all_inner_texts()]
    assert seqs == sorted(seqs, reverse=True)
    shot(page, "ledger")
    page.click("#older")
    more = [int(t) for t in page.locator("table.ledger tbody tr td:first-child").all_inner_texts()]
    assert max(more) == min(seqs) - 1
    page.goto(server.url + "/ledger?kind=access")
    kinds = set(page.locator("table.ledger tbody tr td:nth-child(3)").all_inner_texts())
    assert kinds == {"access"}
    page.goto(server.url + "/ledger?since=yesterday")
    assert "is not a date" in page.inner_text(".field-error")
    page.click("button:has-text('Verify the chain')")
    page.wait_for_selector("#verify-result")
    assert "Ledger intact" in page.inner_text("#verify-result")
    page.goto(server.url + f"/ledger/{seqs[0]}")
    assert "hash and signature check out" in page.inner_text("main")
    shot(page, "ledger-entry")
    page.goto(server.url + "/")
    assert "intact" in page.inner_text("#verification")
    resp = page.request.get(server.url + "/ledger/export.csv?kind=access")
    assert resp.status == 200 and resp.text().splitlines()[0].startswith("seq,")
    assert any(v["page"] == "ledger-export" for v in access(server, "viewed"))
    page.goto(server.url + "/ledger/report?quarter=2026Q9")
    assert page.locator(".field-error").count() == 1
    pages = {v["page"] for v in access(server, "viewed")}
    assert {"ledger", "ledger-entry"} <= pages
    page.goto(server.url + "/authorizations")
    shot(page, "authorizations")
    page.goto(server.url + "/rules")
    assert page.locator("tr#SEC-6").count() == 1
    sec6 = rules.get("SEC-6")
    assert sec6 is not None and sec6.title in page.inner_text("tr#SEC-6")  # the reference `mailer rules` prints
    assert sec6.satisfy in page.inner_text("tr#SEC-6")
    shot(page, "rules")
    assert "authorizations" in {v["page"] for v in access(server, "viewed")}


def test_security_headers_and_error_pages(server: Server, new_page: Any) -> None:
    page = new_page()
    resp = page.goto(server.url + "/login")
    h = resp.headers
    assert "script-src 'none'" in h["content-security-policy"] and "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-store"
    shot(page, "sign-in")
    sign_in(page, server, "mara")
    for path, status in (("/campaigns/99999", 404), ("/no/such/page", 404), ("/ledger/abc", 404)):
        r = page.goto(server.url + path)
        assert r.status == status
        assert "Traceback" not in page.content()
    page.goto(server.url + "/campaigns")
    shot(page, "campaigns")
    # the unsubscribe endpoint is served beside the workspace, login-free and cookie-free
    r = page.request.get(server.url + "/u/not-a-token")
    assert r.status == 404 and "set-cookie" not in r.headers


def test_schedule_with_cron_shows_the_next_three_runs(server: Server, new_page: Any) -> None:
    author = new_page()
    sign_in(author, server, "mara")
    cid = create_and_submit(author, server)
    reviewer = new_page()
    sign_in(reviewer, server, "rita")
    reviewer.goto(f"{server.url}/campaigns/{cid}")
    reviewer.click("button:has-text('Approve')")
    author.goto(f"{server.url}/campaigns/{cid}")
    assert {"Schedule", "Send now", "Pause", "Cancel campaign"} <= buttons(author)
    author.fill("form.inline input[name=cron]", "not a cron")
    author.click("button:has-text('Show next runs')")
    assert "is not valid" in author.inner_text("#next-runs")
    author.fill("form.schedule input[name=cron]", "0 9 * * MON")
    author.fill("form.schedule input[name=at]", "2030-01-01T09:00")
    author.click("button:has-text('Schedule')")
    assert "not both" in author.inner_text(".field-error")
    author.fill("form.schedule input[name=cron]", "0 9 * * MON")
    author.click("form.schedule button:has-text('Schedule')")
    assert author.inner_text("#status") == "scheduled"
    runs = author.locator("#next-runs li").all_inner_texts()
    assert len(runs) == 3 and all(r.startswith("Mon ") and " 09:00 " in r for r in runs)
    shot(author, "campaign-scheduled")
    author.click("button:has-text('Pause')")
    assert author.inner_text("#status") == "paused"
    author.click("button:has-text('Resume')")
    assert author.inner_text("#status") == "scheduled"
