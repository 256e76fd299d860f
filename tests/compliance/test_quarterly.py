"""QRV-1: the quarterly review walks the checklist, renders to HTML and PDF, is signed off
in the ledger, and the quarter's evidence zip carries the sign-off."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from mailer.compliance import complaints, quarterly, training
from mailer.models import utcnow
from mailer.store.auth_records import import_authorizations
from mailer.store.contacts import import_contacts
from tests.conftest import ROOT


def _text(path: Path) -> str:
    return " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(io.BytesIO(path.read_bytes())).pages)


def test_report_pdf_signoff_and_evidence(crt: Any, who: Any, cli: Any, tmp_path: Path) -> None:
    import_contacts(crt.engine, crt.keyring, crt.ledger, ROOT / "examples/contacts.csv", dict(crt.settings.fields.clinical))
    import_authorizations(crt.engine, crt.keyring, crt.ledger, ROOT / "examples/authorizations.csv")
    training.record(crt, who.admin, "marketer", course="HIPAA marketing", completed=utcnow() - dt.timedelta(days=3))
    complaints.record(crt, who.marketer, received=utcnow() - dt.timedelta(days=1), channel="phone",
                      category="privacy", text="why do you know my diagnosis")
    quarter = f"{utcnow().year}Q{(utcnow().month - 1) // 3 + 1}"
    folder = tmp_path / "reviews"
    r = cli("review", "quarterly", quarter, "--out", str(folder))
    assert r.exit_code == 0, r.output
    pdf = folder / f"quarterly-review-{quarter}.pdf"
    text = _text(pdf)
    for heading in ("1. Active marketing campaigns", "2. Authorization records audited", "3. Vendors and business",
                    "4. Training status per account", "5. Complaints and privacy concerns", "8. Ledger verification",
                    "9. Security self-test", "Not signed yet"):
        assert heading in text, heading
    assert "marketer: current" in text and "compliance: missing" in text
    assert "open at end 1" in text and "diagnosis" not in text  # counts, never the complaint's words
    assert "key file mode 0600" in text
    # only a reviewer signs off (marketer: exit 3)
    assert cli("review", "sign", quarter, "--out", str(folder), as_="marketer").exit_code == 3
    s = cli("review", "sign", quarter, "--out", str(folder), "--note", "reviewed with the privacy officer")
    assert s.exit_code == 0, s.output
    signed = _text(pdf)
    assert "Signed off by compliance" in signed and "report data SHA-256" in signed
    assert "Signed off by compliance" in (folder / f"quarterly-review-{quarter}.html").read_text()
    data = json.loads((folder / f"quarterly-review-{quarter}.json").read_text())
    assert data["authorizations"]["total"] > 0 and data["ledger_verification"]["ok"]
    # the evidence zip holds the report and the sign-off entry from the ledger
    z = tmp_path / "q.zip"
    e = cli("review", "evidence", quarter, "--zip", str(z), "--out", str(folder))
    assert e.exit_code == 0, e.output
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        entries = json.loads(zf.read("signoff-entries.json"))
        manifest = json.loads(zf.read("manifest.json"))
    assert f"report/quarterly-review-{quarter}.pdf" in names and "ledger-report.json" in names
    assert len(entries) == 1 and entries[0]["outcome"] == quarterly.SIGNED and entries[0]["actor"] == "compliance"
    assert set(manifest) >= {f"report/quarterly-review-{quarter}.json", "signoff-entries.json"}


def test_findings_are_pure() -> None:
    data = {"authorizations": {"expired": 2, "revoked": 0, "incomplete": 1},
            "vendors": [{"name": "Relay", "baa_in_force": False, "expiring_90_days": False}],
            "training": [{"account": "m", "status": "expired"}], "complaints": {"open_at_end": [{}]},
            "assets": [], "ledger_verification": {"ok": True}, "security": {"checks": []}}
    assert quarterly.findings(data) == ["authorizations: 2 expired, 0 revoked, 1 incomplete or defective",
                                        "vendor Relay: BAA not in force", "training: m is expired", "complaints: 1 open"]
