"""Issue 2 acceptance: a whole campaign over real STARTTLS to a real sink, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer import campaigns, sending
from mailer.models import Delivery, LedgerEntry
from tests.conftest import ROOT
from tests.helpers_workflow import approve


def _newsletter(rt, name: str = "Evening hours"):  # type: ignore[no-untyped-def]
    """Created by the marketer, approved by compliance: the path every real send takes."""
    c = campaigns.create(rt, name=name, purpose="newsletter", template=ROOT / "templates/newsletter",
                         segment=ROOT / "segments/newsletter.toml", author="marketer")
    approve(rt, c.id)
    return c


async def test_one_rcpt_per_transaction_tls_first_and_a_ledger_row_each(sample_rt, sink) -> None:
    c = _newsletter(sample_rt)
    summary = await sending.send(sample_rt, c.id)
    received = sink.messages
    assert summary.sent == len(received) > 0
    # SEND-1: exactly one RCPT TO per transaction, one address in To, no Cc/Bcc
    assert all(m.rcpt_commands == 1 and len(m.rcpt_tos) == 1 for m in received)
    # TLS-1: TLS was up before MAIL FROM, on every transaction
    assert all(m.tls_at_mail_from and m.tls_version in ("TLSv1.2", "TLSv1.3") for m in received)
    for m in received:
        msg = email.message_from_bytes(m.data, policy=policy.default)
        assert msg["To"] == m.rcpt_tos[0]
        assert msg["Cc"] is None and msg["Bcc"] is None
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # SEND-2: a ledger row per recipient, and it records the TLS version
    with sample_rt.engine.connect() as conn:
        t = LedgerEntry.__table__
        rows = conn.execute(select(t.c.contact_id, t.c.tls_version).where(t.c.kind == "send", t.c.outcome == "sent")).all()
    assert len(rows) == len(received) == len({r.contact_id for r in rows})
    assert all(r.tls_version for r in rows)
    assert sample_rt.ledger.verify().ok


async def test_distinct_message_ids_and_no_address_in_the_ledger(sample_rt, sink) -> None:
    c = _newsletter(sample_rt)
    await sending.send(sample_rt, c.id)
    ids = [email.message_from_bytes(m.data, policy=policy.default)["Message-ID"] for m in sink.messages]
    assert len(ids) == len(set(ids))
    addresses = {m.rcpt_tos[0] for m in sink.messages}
    dump = " ".join(str(tuple(r)) for r in sample_rt.ledger.rows())
    assert not any(a in dump for a in addresses)
    assert not any(a.split("@")[0] in mid for a in addresses for mid in ids)  # PHI-6


async def test_resending_a_finished_campaign_sends_nothing_twice(sample_rt, sink) -> None:
    c = _newsletter(sample_rt)
    first = await sending.send(sample_rt, c.id)
    from mailer.errors import StateError

    with pytest.raises(StateError):
        await sending.send(sample_rt, c.id)
    assert len(sink.messages) == first.sent
    with sample_rt.engine.connect() as conn:
        t = Delivery.__table__
        assert conn.execute(select(func.count()).where(t.c.status == "sent")).scalar() == first.sent


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    from mailer.crypto import Keyring
    from mailer.errors import KeyFileError

    path = tmp_path / "keys.json"
    Keyring.generate().save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyFileError):
        Keyring.generate().save(path)
