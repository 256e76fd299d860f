"""FRM-1: the authorization form carries every 164.508(c) element, in English and Spanish,
as HTML and as PDF (read back with pypdf); imported authorizations keep the form version."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from mailer.compliance import forms
from mailer.config import settings_from_mapping
from mailer.models import Authorization
from mailer.store.auth_records import import_authorizations
from mailer.store.contacts import import_contacts
from tests.conftest import ROOT

SETTINGS = settings_from_mapping({"center": {"name": "Riverside Imaging Center", "phone": "(217) 555-0100",
                                             "postal_address": "100 Main Street, Springfield, IL 62701"}})

# What a reader must find for each element (a phrase of its statement), per language.
EXPECT: dict[str, dict[str, str]] = {
    "en": {"information": "health conditions", "discloser": "2. Who will use and share it",
           "recipients": "email service provider", "purpose": "Acme Pharma, who pays us",
           "expiration": "This authorization ends on", "revocation": "You may revoke this authorization",
           "conditioning": "We will not condition your treatment", "redisclosure": "no longer be protected",
           "remuneration": "receives payment from Acme Pharma", "signature": "Signature of patient or representative",
           "representative": "describe your authority", "version": "third-party-marketing v2026-12 (en)"},
    "es": {"information": "condiciones de salud", "discloser": "2. Quien la usara y compartira",
           "recipients": "proveedor de correo electronico", "purpose": "Acme Pharma, que nos paga",
           "expiration": "Esta autorizacion termina el", "revocation": "Puede revocar esta autorizacion",
           "conditioning": "No condicionaremos su tratamiento", "redisclosure": "dejar de estar protegida",
           "remuneration": "recibe un pago de Acme Pharma", "signature": "Firma del paciente o representante",
           "representative": "describa su autoridad", "version": "third-party-marketing v2026-12 (es)"},
}
CASES = [(lang, el) for lang in forms.LANGUAGES for el in (*forms.ELEMENTS, "version")]


def _pdf_text(data: bytes) -> str:
    return " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(io.BytesIO(data)).pages)


@pytest.fixture(scope="module")
def rendered() -> dict[str, tuple[str, str]]:
    out = {}
    for lang in forms.LANGUAGES:
        f = forms.build(SETTINGS, "third-party-marketing", lang, third_party="Acme Pharma")
        out[lang] = (" ".join(forms.to_html(f).split()), _pdf_text(forms.to_pdf(f)))
    return out


@pytest.mark.parametrize(("lang", "element"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_each_element_in_html_and_pdf(rendered: dict[str, tuple[str, str]], lang: str, element: str) -> None:
    html_text, pdf_text = rendered[lang]
    phrase = EXPECT[lang][element]
    assert phrase in html_text
    assert phrase in pdf_text
    assert "Riverside Imaging Center" in pdf_text and "100 Main Street" in pdf_text  # filled from config


def test_unpaid_scope_says_no_payment_and_bad_input() -> None:
    f = forms.build(SETTINGS, "condition-targeted-marketing", "en")
    assert "receives no payment from anyone else" in f.text()
    with pytest.raises(Exception, match="third party"):
        forms.build(SETTINGS, "third-party-marketing", "en")
    with pytest.raises(Exception, match="--language"):
        forms.build(SETTINGS, "marketing", "fr")


def test_cli_writes_pdf_and_html(cli: Any, tmp_path: Path) -> None:
    r = cli("authorizations", "form", "--scope", "condition-targeted-marketing", "--language", "es",
            "--out", str(tmp_path / "f.pdf"), as_="marketer")
    assert r.exit_code == 0, r.output
    assert "Puede revocar esta autorizacion" in _pdf_text((tmp_path / "f.pdf").read_bytes())
    assert cli("authorizations", "form", "--scope", "marketing", "--out", str(tmp_path / "f.html"),
               as_="marketer").exit_code == 0
    assert "<h2>6. Your right to take it back (revoke)</h2>" in (tmp_path / "f.html").read_text()
    assert cli("authorizations", "form", "--scope", "marketing", "--out", str(tmp_path / "f.doc"),
               as_="marketer").exit_code == 2


def test_import_records_the_form_version(runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    lines = (ROOT / "examples/authorizations.csv").read_text().splitlines()
    src = tmp_path / "a.csv"
    src.write_text("\n".join([lines[0] + ",form_version", lines[1] + ",2026-12", lines[2] + ","]) + "\n")
    import_authorizations(rt.engine, rt.keyring, rt.ledger, src)
    with rt.engine.connect() as conn:
        got = [r.form_version for r in conn.execute(select(Authorization).order_by(Authorization.id))]
    assert got == ["2026-12", None]
