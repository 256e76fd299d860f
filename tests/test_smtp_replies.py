"""What each SMTP reply does: 4xx and drops are retried (on a new connection), 5xx fail, no PHI in the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailer import sending
from mailer.store.suppressions import suppressed_among
from tests.conftest import NO_GATES, ROOT
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

VICTIM = "ben.quinn2@example.com"  # the second sample contact


@pytest.fixture
def server(certs) -> Iterator[tuple[CountingHandler, Any]]:  # type: ignore[no-untyped-def]
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs), require_starttls=True)
    try:
        yield handler, as_sink(handler, port, certs, controller)
    finally:
        controller.stop()


def _rt(runtime_factory, sink, **limits):  # type: ignore[no-untyped-def]
    from mailer.store.contacts import import_contacts

    rt = runtime_factory(sink, limits={"retry_base_seconds": 0.01, **limits})
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    return rt


def _victim_id(rt) -> int:  # type: ignore[no-untyped-def]
    from mailer.store.contacts import contact_id_for

    cid = contact_id_for(rt.engine, rt.keyring, VICTIM)
    assert cid is not None
    return cid


@pytest.mark.parametrize(("stage", "reply"), [
    ("data", "421 4.3.2 Service shutting down"),
    ("data", "451 4.3.0 Temporary local problem, try again"),
    ("rcpt", "452 4.2.2 Mailbox full"),
], ids=["421", "451", "452"])
async def test_temporary_replies_are_retried_and_then_delivered_once(runtime_factory, server, stage: str, reply: str) -> None:
    handler, sink = server
    (handler.rcpt_once if stage == "rcpt" else handler.data_once)[VICTIM] = reply
    rt = _rt(runtime_factory, sink)
    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    victim = _victim_id(rt)
    assert summary.failed == 0 and summary.deferred == 1 and not summary.paused
    assert [m.rcpt_tos for m in handler.messages].count([VICTIM]) == 1
    assert statuses(rt, c.id)[victim] == "sent"
    attempts = ledger_rows(rt, kind="send", campaign_id=c.id, contact_id=victim)
    assert [(r.outcome, r.smtp_code) for r in attempts] == [("deferred", int(reply[:3])), ("sent", 250)]
    assert attempts[0].message_id == attempts[1].message_id  # the same message, tried twice


@pytest.mark.parametrize(("stage", "reply", "bounce"), [
    ("rcpt", "550 5.1.1 <ben.quinn2@example.com>: Recipient address rejected: User unknown", True),
    ("data", "554 5.7.1 Message rejected as spam", False),
], ids=["550-user-unknown", "554-rejected"])
async def test_permanent_replies_fail_without_retry(runtime_factory, server, stage: str, reply: str, bounce: bool) -> None:
    handler, sink = server
    (handler.rcpt_once if stage == "rcpt" else handler.data_once)[VICTIM] = reply
    rt = _rt(runtime_factory, sink)
    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    victim = _victim_id(rt)
    assert summary.failed == 1 and summary.deferred == 0 and summary.bounced == int(bounce)
    assert statuses(rt, c.id)[victim] == "failed"
    assert VICTIM not in {m.rcpt_tos[0] for m in handler.messages}
    rows = ledger_rows(rt, kind="send", campaign_id=c.id, contact_id=victim)
    assert [(r.outcome, r.smtp_code) for r in rows] == [("failed", int(reply[:3]))]
    # the reply text is kept for the operator, scrubbed of the address (style rule 5)
    text = rows[0].smtp_text or ""
    assert VICTIM not in text and reply.split()[1] in text
    if "@" in reply:
        assert "<address>" in text
    # BNC-1: "no such user" suppresses the address; a content rejection does not
    h = rt.keyring.lookup_hash(VICTIM)
    assert (h in suppressed_among(rt.engine, [h])) is bounce
    assert bool(ledger_rows(rt, kind="bounce", contact_id=victim)) is bounce
    if bounce:
        assert "BNC-1" in rows[0].rule_ids
    # the other recipients went out
    assert summary.sent == len(handler.messages) == len(statuses(rt, c.id)) - 1


async def test_a_failed_then_suppressed_address_is_not_retried_by_retry_failed(runtime_factory, server) -> None:
    handler, sink = server
    handler.rcpt_once[VICTIM] = "550 5.1.1 User unknown"
    rt = _rt(runtime_factory, sink)
    c = newsletter(rt)
    await sending.send(rt, c.id, preflight=NO_GATES)
    again = await sending.send(rt, c.id, preflight=NO_GATES, statuses=("failed",))
    assert again.sent == 0 and again.skipped == {"SPAM-5": 1}
    assert VICTIM not in {m.rcpt_tos[0] for m in handler.messages}


async def test_disconnect_mid_data_is_retried_on_a_new_connection(runtime_factory, server) -> None:
    handler, sink = server
    handler.data_once[VICTIM] = "DISCONNECT"
    rt = _rt(runtime_factory, sink)
    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.deferred == 1 and summary.failed == 0
    assert len(handler.dropped_peers) == 1
    delivered = [p for m, p in zip(handler.messages, handler.peers, strict=True) if m.rcpt_tos == [VICTIM]]
    assert len(delivered) == 1
    assert delivered[0] != handler.dropped_peers[0]  # another client port: another connection
    assert statuses(rt, c.id)[_victim_id(rt)] == "sent"


async def test_attempts_are_capped_then_the_row_fails(runtime_factory, server) -> None:
    handler, sink = server
    handler.reply[VICTIM] = "451 4.3.0 Try again later"  # every time
    rt = _rt(runtime_factory, sink, max_attempts=3)
    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    rows = ledger_rows(rt, kind="send", campaign_id=c.id, contact_id=_victim_id(rt))
    assert [r.outcome for r in rows] == ["deferred", "deferred", "failed"]
    assert summary.failed == 1 and not summary.paused


async def test_consecutive_transport_failures_pause_the_campaign(runtime_factory, server) -> None:
    handler, sink = server
    for line in (ROOT / "examples/contacts.csv").read_text().splitlines()[1:]:
        handler.reply[line.split(",")[0]] = "451 4.3.0 Try again later"
    rt = _rt(runtime_factory, sink, pause_after_failures=5, max_attempts=10)
    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.sent == 0 and summary.paused and "consecutive" in summary.paused
    row = campaign_row(rt, c.id)
    assert row.status == "paused"
    left = statuses(rt, c.id).values()
    # no row stays claimed; what was never attempted is back in the queue for a resume
    assert "claimed" not in left and "pending" in left
