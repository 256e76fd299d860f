"""Plain-language HIPAA authorization forms (FRM-1): every 45 CFR 164.508(c) element, in
English or Spanish, filled from the center's settings and the scope, as HTML or PDF.

The form carries its version (`[compliance] form_version`); an authorization signed on it
is imported with that version (`form_version` column), so the registry knows which words
the patient saw. Text is kept within Latin-1 so the PDF needs no external font.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from mailer.authorizations import SCOPES
from mailer.config import Settings
from mailer.errors import InputError

LANGUAGES = ("en", "es")
#: The 164.508(c) elements, in the order the form prints them; each has a heading per language.
ELEMENTS = ("information", "discloser", "recipients", "purpose", "expiration", "revocation", "conditioning",
            "redisclosure", "remuneration", "signature", "representative")

_HEAD = {
    "en": {"title": "Authorization to use my health information for marketing",
           "information": "1. What information will be used", "discloser": "2. Who will use and share it",
           "recipients": "3. Who will receive it", "purpose": "4. Why (the purpose)",
           "expiration": "5. When this authorization ends", "revocation": "6. Your right to take it back (revoke)",
           "conditioning": "7. Your care does not depend on signing", "redisclosure": "8. Information shared again",
           "remuneration": "9. Payment to us", "signature": "10. Signature and date",
           "representative": "11. If someone signs for the patient", "version": "Form version"},
    "es": {"title": "Autorizacion para usar mi informacion de salud para mercadeo",
           "information": "1. Que informacion se usara", "discloser": "2. Quien la usara y compartira",
           "recipients": "3. Quien la recibira", "purpose": "4. Para que (el proposito)",
           "expiration": "5. Cuando termina esta autorizacion", "revocation": "6. Su derecho a retirarla (revocar)",
           "conditioning": "7. Su atencion no depende de firmar", "redisclosure": "8. Informacion compartida de nuevo",
           "remuneration": "9. Pago a nosotros", "signature": "10. Firma y fecha",
           "representative": "11. Si otra persona firma por el paciente", "version": "Version del formulario"},
}

_PURPOSE = {
    "condition-targeted-marketing": {
        "en": ("Your contact details and the health conditions, exams and procedures in our records",
               "To send you information by email about our services chosen for your health condition"),
        "es": ("Sus datos de contacto y las condiciones de salud, examenes y procedimientos en nuestros registros",
               "Para enviarle por correo electronico informacion sobre nuestros servicios elegida segun su condicion de salud")},
    "third-party-marketing": {
        "en": ("Your contact details and the health conditions in our records",
               "To send you information by email about products or services of {third_party}, who pays us to send it"),
        "es": ("Sus datos de contacto y las condiciones de salud en nuestros registros",
               "Para enviarle por correo electronico informacion sobre productos o servicios de {third_party}, que nos paga por enviarla")},
    "marketing": {
        "en": ("Your name and email address", "To send you marketing emails about our services"),
        "es": ("Su nombre y correo electronico", "Para enviarle correos de mercadeo sobre nuestros servicios")},
    "testimonial": {
        "en": ("The words, story or images you agree to share, as written on this form",
               "To publish your testimonial in our marketing, only where and as long as this form says"),
        "es": ("Las palabras, historia o imagenes que usted acepta compartir, como se escriben en este formulario",
               "Para publicar su testimonio en nuestro mercadeo, solo donde y mientras este formulario lo diga")},
}


@dataclass(frozen=True)
class Form:
    scope: str
    language: str
    version: str
    title: str
    sections: tuple[tuple[str, str, str], ...]  # (element, heading, text)

    def text(self) -> str:
        return "\n\n".join([self.title, *(f"{h}\n{t}" for _e, h, t in self.sections)]) + "\n"


def build(settings: Settings, scope: str, language: str = "en", *, third_party: str | None = None) -> Form:
    """Pure: the form for a scope and language, every element filled or given a blank to fill."""
    if scope not in SCOPES:
        raise InputError(f"--scope {scope!r} is unknown", hint=f"one of {', '.join(SCOPES)}")
    if language not in LANGUAGES:
        raise InputError(f"--language {language!r}", hint="en or es")
    paid = scope == "third-party-marketing"
    if paid and not (third_party or "").strip():
        raise InputError("a third-party-marketing form names the paying third party", hint="add --third-party NAME")
    c = settings.center
    h = _HEAD[language]
    who = c.name
    contact = ", ".join(p for p in (c.postal_address, c.phone) if p)
    info, purpose = _PURPOSE[scope][language]
    purpose = purpose.format(third_party=third_party or "")
    en = language == "en"
    recipients = (f"{who} and the email service provider it uses under a business associate agreement"
                  + (f"; {third_party} does not receive your information" if paid else "")) if en else (
                  f"{who} y el proveedor de correo electronico que usa bajo un acuerdo de socio comercial"
                  + (f"; {third_party} no recibe su informacion" if paid else ""))
    texts = {
        "information": info,
        "discloser": who if en else who,
        "recipients": recipients,
        "purpose": purpose,
        "expiration": ("This authorization ends on ____/____/______ (date), or two years after the date I sign it, "
                       "whichever comes first." if en else
                       "Esta autorizacion termina el ____/____/______ (fecha), o dos anos despues de la fecha en que "
                       "la firmo, lo que ocurra primero."),
        "revocation": (f"You may revoke this authorization at any time by writing to {who}, {contact}. It stops "
                       "as soon as we receive your letter, except for emails already sent. Our Notice of Privacy "
                       "Practices explains this too." if en else
                       f"Puede revocar esta autorizacion en cualquier momento escribiendo a {who}, {contact}. "
                       "Termina en cuanto recibamos su carta, excepto los correos ya enviados. Nuestro Aviso de "
                       "Practicas de Privacidad tambien lo explica."),
        "conditioning": ("We will not condition your treatment, payment, enrollment or eligibility for benefits on "
                         "whether you sign. Signing is your choice." if en else
                         "No condicionaremos su tratamiento, pago, inscripcion o elegibilidad para beneficios a que "
                         "usted firme. Firmar es su decision."),
        "redisclosure": ("Information shared under this authorization may be shared again by the person who receives "
                         "it and may then no longer be protected by federal privacy law (HIPAA)." if en else
                         "La informacion compartida bajo esta autorizacion puede ser compartida de nuevo por quien la "
                         "recibe y entonces puede dejar de estar protegida por la ley federal de privacidad (HIPAA)."),
        "remuneration": ((f"{who} receives payment from {third_party} for sending these communications."
                          if paid else f"{who} receives no payment from anyone else for these communications.")
                         if en else
                         (f"{who} recibe un pago de {third_party} por enviar estas comunicaciones." if paid else
                          f"{who} no recibe pago de nadie mas por estas comunicaciones.")),
        "signature": ("Signature of patient or representative: ______________________   Date: ____/____/______\n"
                      "Printed name: ______________________   You will receive a copy of this signed form."
                      if en else
                      "Firma del paciente o representante: ______________________   Fecha: ____/____/______\n"
                      "Nombre en letra de molde: ______________________   Usted recibira una copia de este formulario firmado."),
        "representative": ("If you sign for the patient, describe your authority to act for them (for example, parent "
                           "of a minor, legal guardian, health care power of attorney): ______________________"
                           if en else
                           "Si firma por el paciente, describa su autoridad para actuar en su nombre (por ejemplo, "
                           "padre o madre de un menor, tutor legal, poder notarial para atencion medica): "
                           "______________________"),
    }
    version = settings.compliance.form_version
    title = f"{h['title']} - {c.name}"
    sections = tuple((e, h[e], texts[e]) for e in ELEMENTS)
    sections += (("version", h["version"], f"{scope} v{version} ({language})"),)
    return Form(scope, language, version, title, sections)


def to_html(form: Form) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n<p>{html.escape(t).replace(chr(10), '<br>')}</p>"
                     for _e, h, t in form.sections)
    return (f'<!doctype html>\n<html lang="{form.language}">\n<head><meta charset="utf-8">'
            f"<title>{html.escape(form.title)}</title>\n"
            "<style>body{font-family:Arial,Helvetica,sans-serif;max-width:680px;margin:24px auto;line-height:1.45}"
            "h1{font-size:20px}h2{font-size:15px;margin-bottom:2px}</style></head>\n"
            f"<body>\n<h1>{html.escape(form.title)}</h1>\n{body}\n</body>\n</html>\n")


def to_pdf(form: Form) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="Letter")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_title(form.title)
    pdf.set_font("Helvetica", "B", 14)
    pdf.multi_cell(0, 7, form.title, new_x="LMARGIN", new_y="NEXT")
    for _e, head, text in form.sections:
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 11)
        pdf.multi_cell(0, 6, head, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def write(form: Form, out: Path) -> Path:
    """Write .html or .pdf by the file's extension."""
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise InputError(f"--out {out}: use a .pdf or .html file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".pdf":
        out.write_bytes(to_pdf(form))
    else:
        out.write_text(to_html(form), encoding="utf-8")
    return out
