"""Issue 7 acceptance: a 1,000-message campaign leaves exactly one outcome entry per recipient,
the counts match the campaign summary and the send queue, and neither the database's ledger
nor the exports nor the evidence package holds a clear-text address or clinical value."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from test_ledger_support import cli, write_config

from mailer import campaigns, sending
from mailer.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailer.ledger_query import Filters, export
from mailer.models import Contact
from mailer.store import deliveries as dq
from mailer.store.contacts import import_contacts
from mailer.store.suppressions import suppress
from mailer.transport import MemoryTransport
from tests.conftest import NO_GATES, ROOT

N = 1000
CONDITIONS = ["osteopenia", "hypertension", "asthma", ""]
PROCEDURES = ["mammogram", "MRI knee", "ultrasound abdomen", ""]


def _contacts_csv(path: Path) -> list[str]:
    addresses = []
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "first_name", "last_name", "preferred_name", "language", "newsletter_opt_in",
                    "conditions", "procedures", "last_exam_date"])
        for i in range(N):
            a = f"patient.{i:04d}@example.net"
            addresses.append(a)
            w.writerow([a, f"Given{i}", f"Family{i}", "", "en", "true", CONDITIONS[i % 4], PROCEDURES[i % 4],
                        f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}"])
    return addresses


async def test_a_1000_message_campaign_has_one_outcome_entry_per_recipient(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    addresses = _contacts_csv(tmp_path / "contacts.csv")
    import_contacts(rt.engine, rt.keyring, rt.ledger, tmp_path / "contacts.csv", dict(rt.settings.fields.clinical))
    c = campaigns.create(rt, name="Evening hours", purpose="newsletter", template=ROOT / "templates/newsletter",
                         segment=ROOT / "segments/newsletter.toml", author="marketer")
    sending.prepare(rt, c, actor="marketer")  # freeze the audience: 1,000 pending rows
    # five opt out after the freeze: skipped at send time (SPAM-5), one entry each
    with rt.engine.connect() as conn:
        hashes = conn.execute(select(Contact.id, Contact.email_hash).order_by(Contact.id).limit(5)).all()
    for cid, h in hashes:
        suppress(rt.engine, rt.ledger, h, "unsubscribe", contact_id=cid)
    transport = MemoryTransport(fail={
        **{addresses[i]: PermanentDeliveryError("5.1.1 mailbox unavailable", code=550) for i in range(100, 110)},
        **{addresses[i]: TemporaryDeliveryError("4.2.2 mailbox full", code=452) for i in range(200, 203)},
    })
    summary = await sending.send(rt, c.id, transport=transport, preflight=NO_GATES, actor="marketer")

    with rt.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT contact_id, kind, outcome, rule_ids FROM ledger WHERE campaign_id = :c AND kind IN ('send', 'skip')"),
            {"c": c.id}).all()
    outcomes = [r for r in rows if r.kind == "skip" or r.outcome in ("sent", "failed", "uncertain")]
    per_recipient = Counter(r.contact_id for r in outcomes)
    assert len(per_recipient) == N and set(per_recipient.values()) == {1}
    by = Counter(r.outcome if r.kind == "send" else "skipped" for r in outcomes)
    assert by == {"sent": N - 18, "failed": 13, "skipped": 5}
    assert (summary.sent, summary.failed, summary.skipped_total) == (by["sent"], by["failed"], by["skipped"])
    assert summary.deferred == sum(1 for r in rows if r.outcome == "deferred") > 0
    assert dict(summary.skipped) == {"SPAM-5": 5}
    assert len(transport.sent) == summary.sent
    queue = dq.counts(rt.engine, c.id)
    assert queue == {"sent": by["sent"], "failed": by["failed"], "skipped": by["skipped"]}
    assert rt.ledger.verify().ok

    # the evidence package reconciles the same way
    res = cli(write_config(rt, tmp_path), "ledger", "evidence", "--campaign", str(c.id), "--out", str(tmp_path / "ev.zip"))
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(tmp_path / "ev.zip") as z:
        s = json.loads(z.read("summary.json"))
    assert s["recipients_with_an_outcome"] == N and s["recipients_with_more_than_one_outcome"] == []
    assert s["recipient_outcomes"] == {"send:sent": by["sent"], "send:failed": by["failed"], "skip": 5}

    # addresses and clinical values are nowhere in the ledger or its exports
    buf = io.StringIO()
    export(rt.ledger, Filters(), "csv", buf)
    clinical = {v for v in CONDITIONS + PROCEDURES if v}
    with rt.engine.connect() as conn:
        dump = "\n".join(repr(tuple(r)) for r in conn.execute(text("SELECT * FROM ledger")))
    for blob in (dump, buf.getvalue()):
        assert not any(a in blob for a in addresses)
        assert not any(v in blob for v in clinical)
        assert "Given1" not in blob and "Family1" not in blob


def _sample_phi() -> tuple[set[str], set[str]]:
    addresses, values = set(), set()
    for r in csv.DictReader((ROOT / "examples/contacts.csv").open()):
        addresses.add(r["email"])
        for k in ("conditions", "procedures"):
            values.update(v for v in r[k].split(";") if v)
        if r["last_exam_date"]:
            values.add(r["last_exam_date"])
        for k in ("first_name", "last_name"):
            values.add(r[k])
    return addresses, values


# The campaign's own definitions name the condition it targets (that is SEG-1's point) and
# the sample is rendered for "Sample Patient": neither is a patient's value.
_DEFINITIONS = ("template/source/", "sample/", "segment/source.toml", "campaign.json", "README.txt")


async def test_no_clear_text_address_or_clinical_value_in_the_database_exports_or_evidence(
        sample_rt: Any, tmp_path: Path) -> None:
    rt = sample_rt
    news = campaigns.create(rt, name="Evening hours", purpose="newsletter", template=ROOT / "templates/newsletter",
                            segment=ROOT / "segments/newsletter.toml", author="marketer")
    await sending.send(rt, news.id, preflight=NO_GATES, actor="marketer")
    bone = campaigns.create(rt, name="Bone density follow-up", purpose="condition-targeted-marketing",
                            template=ROOT / "templates/condition-targeted",
                            segment=ROOT / "segments/osteoporosis-followup.toml", author="marketer")
    bone_summary = await sending.send(rt, bone.id, preflight=NO_GATES, actor="marketer")
    assert bone_summary.sent > 0  # clinical values were decrypted and matched for these recipients
    config = write_config(rt, tmp_path)
    outputs = {}
    for fmt in ("csv", "jsonl"):
        res = cli(config, "ledger", "export", "--format", fmt, "--out", str(tmp_path / f"all.{fmt}"))
        assert res.exit_code == 0, res.output
        outputs[fmt] = (tmp_path / f"all.{fmt}").read_text()
    assert outputs["csv"].count("\n") > 60
    shown = cli(config, "ledger", "show", "--limit", "0")
    assert shown.exit_code == 0
    outputs["show"] = shown.output
    with rt.engine.connect() as conn:
        outputs["db"] = "\n".join(repr(tuple(r)) for table in ("ledger", "ledger_checkpoint")
                                  for r in conn.execute(text(f"SELECT * FROM {table}")))
    for cid in (news.id, bone.id):
        res = cli(config, "ledger", "evidence", "--campaign", str(cid), "--out", str(tmp_path / f"ev{cid}.zip"))
        assert res.exit_code == 0, res.output
        with zipfile.ZipFile(tmp_path / f"ev{cid}.zip") as z:
            for name in z.namelist():
                body = z.read(name).decode("utf-8", "replace")
                outputs[f"ev{cid}:{name}"] = body
    addresses, values = _sample_phi()
    for where, blob in outputs.items():
        leaked = [a for a in addresses if a in blob]
        assert not leaked, f"{where}: an address leaked"
        if where.split(":", 1)[-1].startswith(_DEFINITIONS) and where.startswith("ev"):
            continue
        found = [v for v in values if re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", blob)]
        assert not found, f"{where}: clinical or identity value(s) {found}"
