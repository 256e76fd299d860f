"""One-click unsubscribe (STD-3, SPAM-4..SPAM-7, PHI-6): rules §8 items 12 to 15."""

from __future__ import annotations

import email
import hashlib
import threading
from datetime import timedelta
from email import policy

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from mailer import sending
from mailer.crypto import new_token, token_hash
from mailer.db import writing
from mailer.errors import ComplianceRefusal
from mailer.models import Contact, Suppression, UnsubscribeToken, utcnow
from mailer.store import suppressions
from mailer.unsubscribe import (
    dkim_refusals,
    list_unsubscribe_refusals,
    optout_page_refusals,
)
from mailer.web import create_app
from tests.conftest import NO_GATES
from tests.helpers_workflow import approved, create

BASE = "https://riverside-imaging.example"  # the host of unsubscribe.base_url in the test settings
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def token_for(rt, contact_id: int = 1, *, age: timedelta = timedelta(0)) -> str:  # type: ignore[no-untyped-def]
    """A token as claim_batch makes it: random, stored as its SHA-256 only."""
    tok = new_token()
    with rt.engine.connect() as conn:
        h = conn.execute(select(Contact.__table__.c.email_hash).where(Contact.__table__.c.id == contact_id)).scalar()
    with writing(rt.engine) as conn:
        conn.execute(UnsubscribeToken.__table__.insert().values(
            token_hash=token_hash(tok), email_hash=h, contact_id=contact_id, campaign_id=None,
            created_at=utcnow() - age))
    return tok


def suppressed(rt) -> set[str]:  # type: ignore[no-untyped-def]
    with rt.engine.connect() as conn:
        return {r[0] for r in conn.execute(select(Suppression.__table__.c.email_hash))}


def email_hash(rt, contact_id: int) -> str:  # type: ignore[no-untyped-def]
    with rt.engine.connect() as conn:
        return conn.execute(select(Contact.__table__.c.email_hash).where(Contact.__table__.c.id == contact_id)).scalar()


@pytest.fixture
def client(sample_rt):  # type: ignore[no-untyped-def]
    with TestClient(create_app(sample_rt), base_url=BASE, follow_redirects=False) as c:
        yield c


# ---------------------------------------------------------------- item 13


def test_scanner_get_leaves_the_recipient_subscribed(sample_rt, client) -> None:
    tok = token_for(sample_rt)
    for _ in range(3):  # link scanners, previews, prefetchers
        r = client.get(f"/u/{tok}")
        assert r.status_code == 200
    assert suppressed(sample_rt) == set()
    assert "<form method=\"post\">" in r.text and "<button" in r.text


def test_one_click_post_suppresses_immediately_without_cookie_or_redirect(sample_rt, client) -> None:
    tok = token_for(sample_rt, 1)
    r = client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200  # not a 3xx
    assert "set-cookie" not in r.headers and "location" not in r.headers
    assert email_hash(sample_rt, 1) in suppressed(sample_rt)
    entry = [e for e in sample_rt.ledger.rows() if e.kind == "unsubscribe"][-1]
    assert entry.contact_id == 1 and "SPAM-5" in entry.rule_ids and entry.recipient_hash == email_hash(sample_rt, 1)
    # again: idempotent, still 200, and no second ledger entry (a replay is a no-op)
    assert client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM).status_code == 200
    assert sum(1 for e in sample_rt.ledger.rows() if e.kind == "unsubscribe") == 1


def test_the_confirmation_button_posts_the_one_click_body(sample_rt, client) -> None:
    tok = token_for(sample_rt, 2)
    page = client.get(f"/u/{tok}").text
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    r = client.post(f"/u/{tok}", data={"List-Unsubscribe": "One-Click"})  # what the browser sends
    assert r.status_code == 200 and email_hash(sample_rt, 2) in suppressed(sample_rt)


def test_multipart_one_click_body_is_accepted(sample_rt, client) -> None:
    tok = token_for(sample_rt, 3)
    r = client.post(f"/u/{tok}", files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200 and email_hash(sample_rt, 3) in suppressed(sample_rt)


@pytest.mark.parametrize("body", ["", "List-Unsubscribe=Yes", f"{ONE_CLICK}&x=1"], ids=["empty", "other", "extra"])
def test_post_without_the_exact_body_does_nothing(sample_rt, client, body) -> None:
    tok = token_for(sample_rt)
    assert client.post(f"/u/{tok}", content=body, headers=FORM).status_code == 400
    assert suppressed(sample_rt) == set()


@pytest.mark.parametrize("token", ["nope", "A" * 22, "%00" * 8, "../../etc/passwd"], ids=["short", "unknown", "nul", "path"])
def test_unknown_token_is_404_without_detail(sample_rt, client, token) -> None:
    for r in (client.get(f"/u/{token}"), client.post(f"/u/{token}", content=ONE_CLICK, headers=FORM)):
        assert r.status_code == 404
        assert "token" not in r.text.lower()


def test_pages_never_show_the_address(sample_rt, client) -> None:
    tok = token_for(sample_rt, 1)
    pages = client.get(f"/u/{tok}").text + client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM).text
    assert "@" not in pages and "kenji" not in pages.lower()


# ---------------------------------------------------------------- item 14


def test_token_from_a_message_29_days_old_still_works(sample_rt, client) -> None:
    tok = token_for(sample_rt, 4, age=timedelta(days=29))
    assert client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM).status_code == 200
    assert email_hash(sample_rt, 4) in suppressed(sample_rt)


def test_token_keeps_working_for_token_days(sample_rt, client) -> None:
    days = sample_rt.settings.unsubscribe.token_days
    assert days >= 30  # SPAM-4
    ok = token_for(sample_rt, 5, age=timedelta(days=days) - timedelta(minutes=1))
    gone = token_for(sample_rt, 6, age=timedelta(days=days, minutes=1))
    assert client.get(f"/u/{ok}").status_code == 200
    assert client.get(f"/u/{gone}").status_code == 404


async def test_opt_out_then_later_sends_are_suppressed(sample_rt, sink) -> None:
    """Opt-out at T; the sends at T+1h and T+47h (two runs frozen before the opt-out) skip them."""
    first = create(sample_rt, name="run at T+1h")
    second = create(sample_rt, name="run at T+47h")
    for c in (first, second):
        sending.prepare(sample_rt, c)  # audiences frozen before the opt-out, with contact 1 in them
    tok = token_for(sample_rt, 1)
    with TestClient(create_app(sample_rt), base_url=BASE) as client:
        assert client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM).status_code == 200
    target = email_hash(sample_rt, 1)
    for c in (first, second):
        summary = await sending.send(sample_rt, c.id, preflight=NO_GATES)
        assert summary.skipped.get("SPAM-5") == 1
    skips = [e for e in sample_rt.ledger.rows() if e.kind == "skip" and e.recipient_hash == target]
    assert [e.rule_ids for e in skips] == ["SPAM-5", "SPAM-5"]
    assert "kenji.evans1@example.com" not in {m.rcpt_tos[0] for m in sink.messages}  # contact 1 (sample data)


async def test_unsubscribe_during_a_running_campaign_stops_further_messages(runtime_factory, sink) -> None:
    """The sender checks suppression per batch at send time: an opt-out mid-run wins."""
    from mailer.store.contacts import import_contacts
    from tests.conftest import ROOT

    rt = runtime_factory(sink, limits={"claim_batch": 1, "messages_per_second": 50.0})
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    c = approved(rt)
    sending.prepare(rt, c)
    with rt.engine.connect() as conn:
        from mailer.models import Delivery
        t = Delivery.__table__
        last = conn.execute(select(t.c.contact_id).where(t.c.campaign_id == c.id).order_by(t.c.id.desc())).first()[0]
    tok = token_for(rt, last)
    app = create_app(rt)
    done = threading.Event()

    def progress(s):  # type: ignore[no-untyped-def]
        if s.sent >= 1 and not done.is_set():  # the run is under way: the patient clicks
            done.set()
            with TestClient(app, base_url=BASE) as client:
                assert client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM).status_code == 200

    summary = await sending.send(rt, c.id, progress=progress)
    assert done.is_set() and summary.skipped.get("SPAM-5") == 1
    assert summary.sent == len(sink.messages)


# ---------------------------------------------------------------- item 15


def test_our_opt_out_page_asks_nothing_but_the_click(sample_rt, client) -> None:
    tok = token_for(sample_rt)
    assert optout_page_refusals(client.get(f"/u/{tok}").text) == []


@pytest.mark.parametrize("extra", [
    '<input type="tel" name="phone">', '<input type="password" name="pw">', '<p>Please log in to manage preferences</p>',
], ids=["phone", "password", "login"])
def test_a_page_asking_for_more_is_spam_6(extra) -> None:
    page = f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">{extra}<button>Go</button></form>'
    assert "SPAM-6" in {r.rule for r in optout_page_refusals(page)}


def test_exporting_suppressed_addresses_is_refused(sample_rt) -> None:
    suppressions.suppress(sample_rt.engine, sample_rt.ledger, email_hash(sample_rt, 1), "unsubscribe")
    with pytest.raises(ComplianceRefusal) as err:
        suppressions.export(sample_rt.engine, sample_rt.ledger, purpose="partner list", actor="marketer")
    assert set(err.value.rules) == {"SPAM-7", "MKT-7"}
    assert [e.rule_ids for e in sample_rt.ledger.rows() if e.kind == "refusal"][-1] == "SPAM-7,MKT-7"
    # for compliance, hashes only
    assert suppressions.export(sample_rt.engine, sample_rt.ledger, purpose="compliance") == [email_hash(sample_rt, 1)]


# ---------------------------------------------------------------- item 12 (headers) and PHI-6


@pytest.mark.parametrize(("headers", "rule"), [
    ([("List-Unsubscribe", "<http://x.example/u/abc>"), ("List-Unsubscribe-Post", ONE_CLICK)], "STD-3"),
    ([("List-Unsubscribe", "<https://x.example/u/a>, <https://y.example/u/b>"), ("List-Unsubscribe-Post", ONE_CLICK)], "STD-3"),
    ([("List-Unsubscribe", "<https://x.example/u/a>"), ("List-Unsubscribe-Post", ONE_CLICK + "&x=1")], "STD-3"),
    ([("List-Unsubscribe", "<https://x.example/u/a>")], "STD-3"),
    ([("List-Unsubscribe", "https://x.example/u/a"), ("List-Unsubscribe-Post", ONE_CLICK)], "STD-2"),
], ids=["http-only", "two-https", "post-extra", "no-post", "no-brackets"])
def test_bad_list_unsubscribe_headers_fail(headers, rule) -> None:
    assert rule in {r.rule for r in list_unsubscribe_refusals(headers)}


def test_https_plus_mailto_passes() -> None:
    assert list_unsubscribe_refusals([("List-Unsubscribe", "<mailto:u@x.example>, <https://x.example/u/a>"),
                                      ("List-Unsubscribe-Post", ONE_CLICK)]) == []


def test_dkim_h_must_cover_both_headers() -> None:
    good = "v=1; a=rsa-sha256; d=x.example; s=m; h=from:to:subject:list-unsubscribe:list-unsubscribe-post; bh=x; b=y"
    bad = "v=1; a=rsa-sha256; d=x.example; s=m; h=from:to:subject:list-unsubscribe; bh=x; b=y"
    assert dkim_refusals([("DKIM-Signature", good)]) == []
    assert [r.rule for r in dkim_refusals([("DKIM-Signature", bad)])] == ["STD-4"]
    assert [r.rule for r in dkim_refusals([])] == ["STD-4"]


async def test_sent_messages_carry_valid_one_click_headers_and_opaque_tokens(sample_rt, sink) -> None:
    c = create(sample_rt)
    await sending.send(sample_rt, c.id, preflight=NO_GATES)
    assert sink.messages
    base = sample_rt.settings.unsubscribe.base_url
    tokens = []
    for m in sink.messages:
        msg = email.message_from_bytes(m.data, policy=policy.default)
        headers = [(k, str(v)) for k, v in msg.items()]
        assert list_unsubscribe_refusals(headers) == []
        url = str(msg["List-Unsubscribe"]).strip("<>")
        assert url.startswith(base)
        tok = url[len(base):]
        tokens.append(tok)
        addr = m.rcpt_tos[0]
        # PHI-6: never derived from the address
        assert tok not in (hashlib.sha256(addr.encode()).hexdigest(), addr) and addr.split("@")[0] not in tok
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) >= 22 for t in tokens)  # 16 random bytes, URL-safe base64
    with TestClient(create_app(sample_rt), base_url=BASE) as client:  # every token in a sent message resolves
        assert client.get(f"/u/{tokens[0]}").status_code == 200


def test_real_uvicorn_server_on_port_0(sample_rt) -> None:
    import socket

    import uvicorn

    tok = token_for(sample_rt, 7)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(sample_rt), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False) as http:
            assert http.get(f"/u/{tok}").status_code == 200
            assert email_hash(sample_rt, 7) not in suppressed(sample_rt)
            r = http.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM)
            assert r.status_code == 200 and not r.cookies
        assert email_hash(sample_rt, 7) in suppressed(sample_rt)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
