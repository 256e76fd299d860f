"""Issue 19 acceptance: a real Postfix generates the DSNs, `bounces receive` takes them,
exactly the recipients that do not exist are suppressed, the next campaign skips them,
and the ledger verifies.

The Postfix instance is a scratch one (its own config, queue and data directories under
a temporary folder, 127.0.0.1 on a free port, STARTTLS required on both sides), started
with `postfix -c DIR` and stopped at the end; the system's Postfix is never touched.
Without Postfix the test skips with the reason, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import campaigns, sending
from mailer.bounces.process import Processor
from mailer.bounces.receiver import start_receiver
from mailer.contacts import normalize_email
from mailer.devcerts import make_dev_certs
from mailer.models import Delivery, LedgerEntry, Suppression
from mailer.store.contacts import import_contacts
from tests.bounces.postfix_instance import PostfixInstance, available, free_port
from tests.conftest import IN_CI, ROOT
from tests.helpers_workflow import approve

EXISTING = ("ann.lee@patients.example.com", "bo.diaz@patients.example.com", "cy.park@patients.example.com")
MISSING = ("no.such.one@patients.example.com", "gone.away@patients.example.com")


@pytest.fixture
def scratch() -> object:
    why = available()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true: the Postfix test must run ({why}); .ci/run installs postfix")
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="mailer-postfix-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _contacts(path: Path) -> Path:
    rows = ["email,first_name,last_name,preferred_name,language,newsletter_opt_in,conditions,procedures,last_exam_date"]
    for i, addr in enumerate(EXISTING + MISSING):
        rows.append(f"{addr},Pat{i},Tester,,en,true,,,")
    path.write_text("\n".join(rows) + "\n")
    return path


def _newsletter(rt, name: str):  # type: ignore[no-untyped-def]
    c = campaigns.create(rt, name=name, purpose="newsletter", template=ROOT / "templates/newsletter",
                         segment=ROOT / "segments/newsletter.toml", author="marketer")
    approve(rt, c.id)
    return c


async def test_postfix_dsns_suppress_exactly_the_missing_recipients(runtime_factory, scratch) -> None:
    certs = make_dev_certs(scratch / "certs")
    pf = PostfixInstance(scratch / "postfix", free_port(), 0, EXISTING, certs.cert_file, certs.key_file,
                         patient_domain="patients.example.com")
    rt = runtime_factory(None, smtp={"host": "localhost", "port": pf.port, "ca_file": str(certs.ca_file)},
                         bounces={"domain": "bounce.test", "tls_cert_file": str(certs.cert_file),
                                  "tls_key_file": str(certs.key_file)})
    import_contacts(rt.engine, rt.keyring, rt.ledger, _contacts(scratch / "contacts.csv"),
                    dict(rt.settings.fields.clinical))
    controller, port, handler = start_receiver(Processor(rt, actor="bounce-receiver"), host="127.0.0.1", port=0,
                                               cert_file=certs.cert_file, key_file=certs.key_file)
    pf.bounce_port = port
    try:
        pf.start()
        first = _newsletter(rt, "Evening hours")
        summary = await sending.send(rt, first.id)
        assert summary.sent == 5 and summary.failed == 0  # Postfix accepts every recipient at RCPT time
        deadline = time.monotonic() + 90
        while handler.totals.by_class.get("hard", 0) < len(MISSING) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        log = pf.log_text()
        assert handler.totals.by_class.get("hard", 0) == len(MISSING), log[-4000:]
        assert "sender non-delivery notification" in log  # Postfix made the DSNs itself

        # exactly the recipients that do not exist are suppressed, as bounces
        want = {rt.keyring.lookup_hash(normalize_email(a)) for a in MISSING}
        with rt.engine.connect() as conn:
            sup = {r.email_hash: r.reason for r in conn.execute(select(Suppression.__table__))}
            led = conn.execute(select(LedgerEntry.__table__).where(LedgerEntry.__table__.c.kind == "bounce")).all()
            dels = {r.id: r for r in conn.execute(select(Delivery.__table__))}
        assert sup == {h: "bounce" for h in want}
        assert sorted(e.outcome for e in led) == ["hard", "hard"]
        assert {e.recipient_hash for e in led} == want
        for e in led:  # delivery id, class and status code; never an address
            assert '"status":"5.1.1"' in e.detail and "@" not in e.detail
            assert dels[int(e.detail.split('"delivery":')[1].split(",")[0])].contact_id == e.contact_id
        assert "BNC-1" in led[0].rule_ids

        # the next campaign skips them (suppressed contacts never enter an audience) and sends to the others
        second = _newsletter(rt, "Evening hours, part two")
        s2 = await sending.send(rt, second.id)
        assert s2.sent == len(EXISTING) and s2.failed == 0
        bounced_contacts = {e.contact_id for e in led}
        with rt.engine.connect() as conn:
            d = Delivery.__table__
            audience = {r[0] for r in conn.execute(select(d.c.contact_id).where(d.c.campaign_id == second.id))}
        assert len(audience) == len(EXISTING) and not audience & bounced_contacts
        assert rt.ledger.verify().ok
    finally:
        pf.stop()
        controller.stop()
