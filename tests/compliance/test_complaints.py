"""CMP-1: complaints and privacy concerns, encrypted, with status, in the quarterly report."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from mailer.accounts.permissions import PermissionDenied
from mailer.compliance import complaints
from mailer.compliance.models import Complaint
from mailer.errors import InputError
from mailer.store.contacts import import_contacts
from tests.conftest import ROOT

SAID = "I got a bone-density flyer and never told you about my osteoporosis"


@pytest.fixture
def ctr(crt: Any) -> Any:
    import_contacts(crt.engine, crt.keyring, crt.ledger, ROOT / "examples/contacts.csv", dict(crt.settings.fields.clinical))
    return crt


def test_intake_status_resolution_and_no_clear_text(ctr: Any, who: Any) -> None:
    c = complaints.record(ctr, who.marketer, received=dt.datetime(2026, 11, 3), channel="phone", category="privacy",
                          text=SAID, contact_id=1, campaign_id=2)
    first = (ROOT / "examples/contacts.csv").read_text().splitlines()[1].split(",")[0]
    by_mail = complaints.record(ctr, who.reviewer, received=dt.datetime(2026, 11, 4), channel="email",
                                category="unsubscribe", text="still getting mail", email=first.upper())
    assert c.contact_hash == by_mail.contact_hash and c.contact_hash  # the same patient, by lookup hash
    with pytest.raises(PermissionDenied):
        complaints.set_status(ctr, who.marketer, c.id, "resolved", resolution="x")
    with pytest.raises(InputError, match="resolution"):
        complaints.set_status(ctr, who.reviewer, c.id, "resolved")
    complaints.set_status(ctr, who.reviewer, c.id, "investigating")
    done = complaints.set_status(ctr, who.reviewer, c.id, "resolved", resolution="removed from the segment; apologised")
    assert done.status == "resolved" and done.resolved_at is not None
    shown = complaints.show(ctr, who.reviewer, c.id)
    assert shown["text"] == SAID and shown["resolution"].startswith("removed")
    with ctr.engine.connect() as conn:
        rows = conn.execute(select(Complaint)).all()
    for r in rows:
        assert b"osteoporosis" not in r.text_enc and b"apologised" not in (r.resolution_enc or b"")
    opened = [x.id for x in complaints.list_complaints(ctr, who.reviewer, open_only=True)]
    assert opened == [by_mail.id]


def test_quarter_report_counts_and_open_items(ctr: Any, who: Any, cli: Any) -> None:
    a = complaints.record(ctr, who.marketer, received=dt.datetime(2026, 10, 2), channel="phone", category="privacy",
                          text="x")
    complaints.record(ctr, who.marketer, received=dt.datetime(2026, 11, 2), channel="web", category="content", text="y")
    complaints.record(ctr, who.marketer, received=dt.datetime(2026, 7, 2), channel="web", category="content", text="z")
    complaints.set_status(ctr, who.reviewer, a.id, "resolved", resolution="done")
    r = cli("ledger", "report", "--quarter", "2026Q4", "--format", "json")
    assert r.exit_code == 0, r.output
    cp = json.loads(r.stdout)["complaints"]
    assert cp["received"] == 2 and cp["by_category"] == {"content": 1, "privacy": 1}
    assert cp["resolved_in_quarter"] == 1 and len(cp["open_at_end"]) == 2  # Q4's open one and Q3's still open
    text = cli("ledger", "report", "--quarter", "2026Q4").stdout
    assert "Complaints and privacy concerns received: 2" in text and "open at its end: 2" in text


def test_cli_record_and_list_json(cli: Any, ctr: Any) -> None:
    r = cli("complaints", "record", "--received", "2026-11-20", "--channel", "mail", "--category", "unwanted-marketing",
            "--text", "please stop", "--contact", "3", "--format", "json", as_="marketer")
    assert r.exit_code == 0, r.output
    rows = json.loads(cli("complaints", "list", "--format", "json").stdout)
    assert rows[0]["category"] == "unwanted-marketing" and "please stop" not in json.dumps(rows)
    assert cli("complaints", "list", as_="marketer").exit_code == 3
    assert cli("complaints", "record", "--received", "2026-11-20", "--channel", "fax", "--category", "privacy",
               "--text", "t", as_="marketer").exit_code == 2
    assert cli("complaints", "status", str(rows[0]["id"]), "resolved", "--resolution", "unsubscribed").exit_code == 0


def test_show_writes_the_text_to_a_private_file_never_to_the_terminal(ctr: Any, who: Any, cli: Any,
                                                                       tmp_path: Any) -> None:
    import stat

    c = complaints.record(ctr, who.marketer, received=dt.datetime(2026, 11, 3), channel="phone", category="privacy",
                          text=SAID)
    target = tmp_path / "out" / "complaint.json"
    r = cli("complaints", "show", str(c.id), "--out", str(target))  # as the reviewer "compliance"
    assert r.exit_code == 0, r.output
    assert "osteoporosis" not in r.output and str(target) in r.output
    assert json.loads(target.read_text())["text"] == SAID
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert cli("complaints", "show", str(c.id)).exit_code == 2  # --out is required
    assert any(e.outcome == "complaint-viewed" for e in ctr.ledger.rows())
