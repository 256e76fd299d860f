"""Helpers for the bounce tests: a campaign sent with return-path tokens, DSNs and ARF reports for it."""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailer import campaigns, sending
from mailer.transport import MemoryTransport
from tests.conftest import ROOT
from tests.helpers_workflow import approve

DOMAIN = "bounce.riverside-imaging.example"
PATIENTS = tuple(f"pat{i}@patients.example.com" for i in range(6))


@dataclass(frozen=True)
class SentMessage:
    recipient: str
    token: str
    message_id: str


def bounce_settings(**extra: Any) -> dict[str, Any]:
    return {"bounces": {"domain": DOMAIN, **extra}}


def import_patients(rt: Any, folder: Path, addresses: tuple[str, ...] = PATIENTS) -> None:
    from mailer.store.contacts import import_contacts

    rows = ["email,first_name,last_name,preferred_name,language,newsletter_opt_in,conditions,procedures,last_exam_date"]
    rows += [f"{a},Pat{i},Tester,,en,true,,," for i, a in enumerate(addresses)]
    path = folder / "patients.csv"
    path.write_text("\n".join(rows) + "\n")
    import_contacts(rt.engine, rt.keyring, rt.ledger, path, dict(rt.settings.fields.clinical))


async def send_campaign(rt: Any, name: str = "Evening hours", *, cron: str | None = None) -> tuple[int, list[SentMessage]]:
    """Create, approve and send a newsletter through a memory transport; what left, with its tokens."""
    c = campaigns.create(rt, name=name, purpose="newsletter", template=ROOT / "templates/newsletter",
                         segment=ROOT / "segments/newsletter.toml", author="marketer")
    approve(rt, c.id)
    transport = MemoryTransport()
    summary = await sending.send(rt, c.id, transport=transport)
    assert summary.sent == len(transport.sent)
    out = []
    for m in transport.sent:
        local, _, domain = m.envelope_from.partition("@")
        assert domain == DOMAIN and local.startswith("bounces+")
        out.append(SentMessage(m.recipient, local.split("+", 1)[1], m.message_id))
    if cron:
        from mailer.db import writing
        from mailer.models import Campaign

        t = Campaign.__table__
        with writing(rt.engine) as conn:  # as the worker leaves a recurring campaign between runs
            conn.execute(t.update().where(t.c.id == c.id).values(status="scheduled", schedule_cron=cron))
    return c.id or 0, out


def dsn(msg: SentMessage, *, action: str = "failed", status: str = "5.1.1", recipient: str | None = None,
        envelope: bool = True, note: str = "") -> bytes:
    to = f"bounces+{msg.token}@{DOMAIN}" if envelope else "postmaster@riverside-imaging.example"
    rcpt = recipient or msg.recipient
    return f"""Return-Path: <>
From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender {note}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Could not deliver.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; {rcpt}
Action: {action}
Status: {status}

--B
Content-Type: text/rfc822-headers

To: {rcpt}
Message-ID: {msg.message_id}

--B--
""".replace("\n", "\r\n").encode()


def arf(msg: SentMessage, *, feedback_type: str = "abuse", rcpt: str | None = None) -> bytes:
    rcpt_line = f"Original-Rcpt-To: <{rcpt}>\n" if rcpt else ""
    return f"""From: fbl@provider.example
To: fbl@riverside-imaging.example
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

An abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
{rcpt_line}
--F
Content-Type: message/rfc822

Return-Path: <bounces+{msg.token}@{DOMAIN}>
To: {msg.recipient}
Message-ID: {msg.message_id}
Subject: Evening hours

(body)
--F--
""".encode()


def maildir_with(folder: Path, messages: list[bytes]) -> Path:
    md = mailbox.Maildir(str(folder), create=True)
    for raw in messages:
        md.add(raw)
    return folder
