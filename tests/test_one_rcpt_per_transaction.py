"""SEND-1 across 1,000 messages: one RCPT TO per transaction, one address in To, no Cc/Bcc, reused connections."""

from __future__ import annotations

from pathlib import Path

from mailer import sending
from tests.conftest import NO_GATES
from tests.test_send_support import (
    CountingHandler,
    as_sink,
    bulk_contacts,
    newsletter,
    parsed,
    start_server,
    tls_server_context,
)


async def test_exactly_one_rcpt_per_transaction_across_1000_messages(runtime_factory, certs, tmp_path: Path) -> None:
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs), require_starttls=True)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller), smtp={"connections": 3})
        addresses = bulk_contacts(rt, 1000, tmp_path, domains=("example.com", "example.org", "example.net"))
        c = newsletter(rt)
        summary = await sending.send(rt, c.id, preflight=NO_GATES)
    finally:
        controller.stop()
    got = handler.messages
    assert summary.sent == len(got) == 1000
    assert all(m.rcpt_commands == 1 and len(m.rcpt_tos) == 1 for m in got)
    assert sorted(m.rcpt_tos[0] for m in got) == sorted(addresses)
    ids = set()
    for m in got:
        msg = parsed(m.data)
        assert msg.get_all("To") == [m.rcpt_tos[0]]
        assert msg["Cc"] is None and msg["Bcc"] is None
        ids.add(msg["Message-ID"])
    assert len(ids) == 1000
    # the pool reuses its K connections (RSET between messages) instead of one per message
    assert handler.mail_commands == 1000 and len(set(handler.peers)) <= 3
