"""Send-time rendered-output lint (PHI-2): a recipient's own clinical value in the message
blocks that message, unless the approved template itself states it (the campaign's topic)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from mailer import campaigns, sending
from mailer.store.auth_records import import_authorizations
from mailer.store.contacts import import_contacts
from tests.conftest import NO_GATES, ROOT


def _audience(rt, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    contacts = tmp_path / "c.csv"
    with contacts.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "first_name", "last_name", "language", "newsletter_opt_in", "conditions", "procedures", "last_exam_date"])
        w.writerow(["pat.one@example.com", "Pat", "One", "en", "true", "osteoporosis", "", "2022-01-05"])
        # a data-entry slip put a diagnosis in the first-name column
        w.writerow(["pat.two@example.com", "Asthma", "Two", "en", "true", "osteoporosis;asthma", "", "2022-01-05"])
    import_contacts(rt.engine, rt.keyring, rt.ledger, contacts, dict(rt.settings.fields.clinical))
    src = list(csv.DictReader((ROOT / "examples/authorizations.csv").open()))[0]
    auths = tmp_path / "a.csv"
    with auths.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(src))
        w.writeheader()
        for addr in ("pat.one@example.com", "pat.two@example.com"):
            w.writerow({**src, "email": addr})
    import_authorizations(rt.engine, rt.keyring, rt.ledger, auths)


async def test_topic_in_template_sends_but_another_own_value_is_blocked(rt, sink, tmp_path: Path) -> None:
    _audience(rt, tmp_path)
    tpl = tmp_path / "tpl"
    shutil.copytree(ROOT / "templates/condition-targeted", tpl)
    body = tpl / "body.html.j2"
    body.write_text(body.read_text().replace("</h1>", "</h1>\n<p>Bone density screening matters with osteoporosis.</p>", 1))
    c = campaigns.create(rt, name="DEXA", purpose="condition-targeted-marketing", template=tpl,
                         segment=ROOT / "segments/osteoporosis-followup.toml", author="marketer")
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.sent == 1  # the topic word is approved content, not a leak
    assert sum(summary.skipped.values()) == 1
    assert any("PHI-2" in rules for rules in summary.skipped)  # "Asthma" reached the greeting
    assert len(sink.messages) == 1
    assert b"Asthma" not in sink.messages[0].data
    skips = [r for r in rt.ledger.rows() if r.kind == "skip"]
    assert len(skips) == 1 and "PHI-2" in skips[0].rule_ids
    assert "asthma" not in str(tuple(skips[0])).lower()
