"""TLS-1..TLS-3: TLS is required, verified and 1.2+; otherwise nothing is sent and the campaign pauses."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mailer import sending
from mailer.devcerts import make_dev_certs
from mailer.transport import TLSPolicy, tls_context
from tests.conftest import NO_GATES
from tests.test_send_support import (
    CountingHandler,
    as_sink,
    campaign_row,
    ledger_rows,
    newsletter,
    start_server,
    statuses,
    tls_server_context,
)


async def _send_expecting_pause(rt, handler, rule: str, words: str):  # type: ignore[no-untyped-def]
    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.sent == 0 and summary.paused
    assert rule in summary.paused_rules
    assert words.lower() in summary.paused.lower()
    # nothing crossed the wire in clear, nothing reached MAIL FROM at all
    assert handler.mail_commands == 0 and handler.mail_in_clear == 0 and not handler.messages
    # the campaign is paused with the reason and the rule ID; no recipient was consumed
    row = campaign_row(rt, c.id)
    assert row.status == "paused" and words.lower() in row.status_reason.lower()
    assert set(statuses(rt, c.id).values()) == {"pending"}
    paused = [r for r in ledger_rows(rt, kind="campaign", campaign_id=c.id) if r.outcome == "paused"]
    assert paused and rule in paused[-1].rule_ids.split(",")
    assert not ledger_rows(rt, kind="send", campaign_id=c.id)
    return c


async def test_server_without_starttls_aborts_before_mail_from(runtime_factory, certs) -> None:
    handler = CountingHandler()
    controller, port = start_server(handler, tls=None)  # plain SMTP, no STARTTLS offered
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller))
        from mailer.store.contacts import import_contacts
        from tests.conftest import ROOT

        import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
        await _send_expecting_pause(rt, handler, "TLS-1", "STARTTLS")
    finally:
        controller.stop()


async def test_stripped_starttls_is_not_a_reason_to_send_in_clear(runtime_factory, certs) -> None:
    handler = CountingHandler()
    handler.strip_starttls = True  # the server would accept MAIL FROM in clear
    controller, port = start_server(handler, tls=tls_server_context(certs), require_starttls=False)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller))
        _import_samples(rt)
        await _send_expecting_pause(rt, handler, "TLS-1", "STARTTLS")
    finally:
        controller.stop()


async def test_starttls_refused_with_454_is_a_tls_failure_not_a_retry(runtime_factory, certs) -> None:
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs), refuse_starttls=True)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller))
        _import_samples(rt)
        await _send_expecting_pause(rt, handler, "TLS-1", "STARTTLS")
    finally:
        controller.stop()


@pytest.mark.parametrize("problem", ["unknown-ca", "hostname-mismatch"])
async def test_bad_certificate_aborts(runtime_factory, certs, tmp_path: Path, problem: str) -> None:
    if problem == "unknown-ca":  # a valid chain, but from a CA the client does not trust
        server_certs, trusted = make_dev_certs(tmp_path / "other-ca"), certs
    else:  # a trusted CA, but the certificate names another host than "localhost", which we dial
        server_certs = make_dev_certs(tmp_path / "mismatch", hostname="relay.elsewhere.example", loopback=False)
        trusted = server_certs
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(server_certs), require_starttls=True)
    try:
        rt = runtime_factory(as_sink(handler, port, trusted, controller))
        assert rt.settings.smtp.host == "localhost"
        _import_samples(rt)
        await _send_expecting_pause(rt, handler, "TLS-3", "certificate")
    finally:
        controller.stop()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls_below_1_2_is_refused(runtime_factory, certs) -> None:
    handler = CountingHandler()
    try:
        ctx = tls_server_context(certs, max_version=ssl.TLSVersion.TLSv1_1)
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    controller, port = start_server(handler, tls=ctx, require_starttls=True)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller))
        _import_samples(rt)
        await _send_expecting_pause(rt, handler, "TLS-2", "TLS")
    finally:
        controller.stop()


async def test_negotiated_version_and_cipher_are_in_the_ledger(runtime_factory, certs) -> None:
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs, max_version=ssl.TLSVersion.TLSv1_2),
                                    require_starttls=True)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller))
        _import_samples(rt)
        c = newsletter(rt)
        summary = await sending.send(rt, c.id, preflight=NO_GATES)
        assert summary.sent == len(handler.messages) > 0
        sent = [r for r in ledger_rows(rt, kind="send", campaign_id=c.id) if r.outcome == "sent"]
        assert len(sent) == summary.sent
        # what was negotiated with this server (it stops at 1.2), not a constant
        assert {r.tls_version for r in sent} == {"TLSv1.2"} == {m.tls_version for m in handler.messages}
        assert all(r.tls_cipher for r in sent)
        assert handler.mail_in_clear == 0
    finally:
        controller.stop()


async def test_implicit_tls_on_its_own_port(runtime_factory, certs) -> None:
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs), implicit=True)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller), smtp={"tls": "implicit"})
        _import_samples(rt)
        c = newsletter(rt)
        summary = await sending.send(rt, c.id, preflight=NO_GATES)
        assert summary.sent == len(handler.messages) > 0 and handler.mail_in_clear == 0
        assert {r.tls_version for r in ledger_rows(rt, kind="send", campaign_id=c.id)} <= {"TLSv1.2", "TLSv1.3"}
    finally:
        controller.stop()


def test_the_client_context_is_strict() -> None:
    ctx = tls_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_only_starttls_or_implicit_tls_are_accepted() -> None:
    from mailer.errors import TLSPolicyError

    with pytest.raises(TLSPolicyError) as info:
        TLSPolicy("none")
    assert "TLS-1" in info.value.rules


def _import_samples(rt) -> None:  # type: ignore[no-untyped-def]
    from mailer.store.contacts import import_contacts
    from tests.conftest import ROOT

    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
