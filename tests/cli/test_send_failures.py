"""Failures speak and stop early (issue 15): a send that did not deliver everything exits 1
with its reasons grouped and counted; an unreachable relay or a refused login pauses the
campaign before anyone is claimed; the status never says `done` over failed or uncertain rows."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from aiosmtpd.smtp import AuthResult

from mailer import approvals, campaigns, sending
from mailer.errors import AuthenticationError
from mailer.ledger_report import build_report, render_text
from mailer.store import deliveries as dq
from mailer.transport import MemoryTransport, _by_code
from tests.conftest import NO_GATES, ROOT
from tests.test_send_support import (
    CountingHandler,
    as_sink,
    ledger_rows,
    newsletter,
    start_server,
    statuses,
    tls_server_context,
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _approved_newsletter(mailer) -> int:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    made = mailer("campaign", "create", "--name", "Evening hours", "--template", str(ROOT / "templates/newsletter"),
                  "--segment", str(ROOT / "segments/newsletter.toml"), actor="marketer")
    assert made.exit_code == 0, made.output
    cid = int(made.output.split()[1])
    assert mailer("campaign", "submit", str(cid), actor="marketer").exit_code == 0
    ok = mailer("campaign", "approve", str(cid), actor="reviewer")
    assert ok.exit_code == 0, ok.output
    return cid


def _point_config_at(config_file: Path, port: int) -> None:
    text = config_file.read_text()
    import re

    config_file.write_text(re.sub(r"port = \d+", f"port = {port}", text))


def test_unreachable_relay_pauses_before_anyone_is_claimed_exit_1(mailer, config_file: Path) -> None:
    cid = _approved_newsletter(mailer)
    port = _closed_port()
    _point_config_at(config_file, port)
    res = mailer("campaign", "send", str(cid))
    assert res.exit_code == 1, res.output
    assert f"cannot connect to localhost:{port}" in res.output
    assert "connection refused" in res.output
    assert "SEC-8" in res.output
    st = mailer("campaign", "status", str(cid), "--format", "json")
    data = json.loads(st.stdout)[0]
    assert data["status"].startswith("paused") and "cannot connect" in data["reason"]
    # nothing was claimed: every recipient is still pending
    assert set(data["recipients"]) == {"pending"}


def test_check_connect_runs_the_same_probe_as_a_gate(mailer, config_file: Path, sink) -> None:  # type: ignore[no-untyped-def]
    cid = _approved_newsletter(mailer)
    good = mailer("campaign", "check", str(cid), "--connect")
    assert good.exit_code == 0, good.output
    assert "connection" in good.output and "TLSv1" in good.output
    _point_config_at(config_file, _closed_port())
    bad = mailer("campaign", "check", str(cid), "--connect")
    assert bad.exit_code == 3, bad.output
    assert "cannot connect" in bad.output
    without = mailer("campaign", "check", str(cid))  # the probe runs only when asked for
    assert "cannot connect" not in without.output


def test_username_with_an_empty_password_variable_fails_preflight_by_name(mailer, config_file: Path,
                                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cid = _approved_newsletter(mailer)
    config_file.write_text(config_file.read_text().replace(
        "[smtp]\n", '[smtp]\nusername = "mailer"\npassword_env = "RELAY_PASSWORD_FOR_TEST"\n'))
    monkeypatch.setenv("RELAY_PASSWORD_FOR_TEST", "")
    res = mailer("campaign", "check", str(cid))
    assert res.exit_code == 3
    assert "RELAY_PASSWORD_FOR_TEST" in res.output and "empty" in res.output
    sent = mailer("campaign", "send", str(cid))
    assert sent.exit_code == 3 and "RELAY_PASSWORD_FOR_TEST" in sent.output


def test_partial_failure_exits_1_with_grouped_reasons_and_done_with_failures(mailer, sink) -> None:  # type: ignore[no-untyped-def]
    cid = _approved_newsletter(mailer)
    rejected = [line.split(",")[0] for line in (ROOT / "examples/contacts.csv").read_text().splitlines()[1:3]]
    for addr in rejected:
        sink.handler.reply[addr] = "554 5.7.1 Message rejected by policy"
    res = mailer("campaign", "send", str(cid))
    assert res.exit_code == 1, res.output
    assert "x 554 5.7.1 Message rejected by policy" in res.output
    st = mailer("campaign", "status", str(cid))
    assert "done with failures" in st.output
    shown = mailer("ledger", "show", "--campaign", str(cid), "--outcome", "failed")
    assert "reason" in shown.output and "Message rejected by policy" in shown.output
    data = json.loads(mailer("ledger", "show", "--campaign", str(cid), "--outcome", "failed", "--format", "json").stdout)
    assert data and all("rejected by policy" in d["reason"] for d in data)


def _auth_server(certs, password: str):  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    handler = CountingHandler()
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        logins.append(mechanism)
        ok = auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    class _C(Controller):
        def factory(self) -> SMTP:
            return SMTP(self.handler, **self.SMTP_kwargs)

    port = _closed_port()
    c = _C(handler, hostname="127.0.0.1", port=port, ready_timeout=10, server_hostname="localhost",
           tls_context=tls_server_context(certs), require_starttls=True, authenticator=authenticator,
           auth_required=True, auth_require_tls=True, auth_exclude_mechanism=["LOGIN"])
    c.start()
    return handler, c, port, logins


async def test_refused_login_pauses_with_the_reason_and_claims_nobody(runtime_factory, certs, monkeypatch) -> None:
    handler, controller, port, logins = _auth_server(certs, "right")
    try:
        monkeypatch.setenv("MAILER_SMTP_PASSWORD", "wrong")
        rt = runtime_factory(as_sink(handler, port, certs, controller), smtp={"username": "mailer"})
        from mailer.store.contacts import import_contacts

        import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
        c = newsletter(rt)
        summary = await sending.send(rt, c.id, preflight=NO_GATES)
    finally:
        controller.stop()
    assert summary.paused and "refused the login" in summary.paused and "535" in summary.paused
    assert "SEC-8" in summary.paused_rules
    assert len(logins) == 1  # one try, not one per recipient: accounts get locked that way
    assert set(statuses(rt, c.id).values()) == {"pending"}
    assert campaigns.get(rt, c.id).status == "paused"


def test_a_535_reply_is_an_authentication_error() -> None:
    assert isinstance(_by_code(535, "5.7.8 Authentication credentials invalid"), AuthenticationError)


async def test_a_535_during_a_run_pauses_on_the_first_occurrence(sample_rt) -> None:
    rt = sample_rt
    c = newsletter(rt)
    transport = MemoryTransport()
    first = [line.split(",")[0] for line in (ROOT / "examples/contacts.csv").read_text().splitlines()[1:]]
    for addr in first:
        transport.fail[addr] = AuthenticationError("the relay refused the login (535 5.7.8)", code=535, rules=("SEC-8",))
    summary = await sending.send(rt, c.id, preflight=NO_GATES, transport=transport)
    assert summary.paused and "SEC-8" in summary.paused_rules
    assert summary.failed == 0
    left = dq.counts(rt.engine, c.id)
    assert not left.get(dq.FAILED) and left.get(dq.PENDING)
    assert not [r for r in ledger_rows(rt, kind="send", campaign_id=c.id) if r.outcome == "failed"]


async def test_tls_refusal_is_counted_by_rule_with_the_relay_in_the_quarterly_report(runtime_factory, certs) -> None:
    handler = CountingHandler()
    controller, port = start_server(handler, tls=None)  # no STARTTLS offered
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller))
        c = newsletter(rt)
        summary = await sending.send(rt, c.id, preflight=NO_GATES)
    finally:
        controller.stop()
    assert summary.paused and "TLS-1" in summary.paused_rules
    from mailer.models import utcnow

    now = utcnow()
    rep = build_report(rt.ledger, f"{now.year}Q{(now.month - 1) // 3 + 1}")
    assert rep.refusals_by_rule.get(f"TLS-1 relay localhost:{port}") == 1
    assert f"TLS-1 relay localhost:{port}" in render_text(rep)


async def test_uncertain_rows_are_never_shown_as_done_and_totals_span_runs(sample_rt) -> None:
    rt = sample_rt
    c = newsletter(rt)
    approvals  # noqa: B018 - the gates are not under test here
    prepared = sending.prepare(rt, c)
    assert prepared.frozen > 1
    # a crashed run: one row claimed and never recorded
    page = dq.send_page(rt.engine, c.id, c.run, after=0, n=1, statuses=(dq.PENDING,))
    sender = sending.make_sender(rt, c.id)
    ahead, _known = sender._ahead(page)
    dq.commit_cycle(rt.engine, rt.ledger, outcomes=[], claims=ahead, skips=[], campaign_id=c.id,
                    statuses=(dq.PENDING,))
    summary = await sending.send(rt, c.id, preflight=NO_GATES, transport=MemoryTransport())
    assert summary.uncertain == 1
    counts = dq.counts(rt.engine, c.id)
    c2 = campaigns.get(rt, c.id)
    shown = campaigns.display_status(c2.status, c2.status_reason, counts)
    assert not shown.startswith("done") and "1 uncertain" in shown
