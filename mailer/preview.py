"""A reviewer's preview: the template rendered for a synthetic contact, as .eml and .html."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape as html_escape
from pathlib import Path

from mailer.compose import Composer
from mailer.config import Settings
from mailer.templates import CompiledTemplate, compile_template

SYNTHETIC_CONTACT = {"first_name": "Sample", "preferred_name": "", "language": "en"}
SAMPLE_ADDRESS = "sample.patient@example.invalid"  # RFC 2606: can never be delivered
SAMPLE_TOKEN = "SAMPLE-TOKEN-not-a-real-recipient"  # noqa: S105 - a placeholder, not a secret


@dataclass(frozen=True)
class Preview:
    template: CompiledTemplate
    eml: bytes
    html: str


def _asset_placeholder(key: str, as_html: bool) -> str:
    """`{{ asset('key') }}` in a preview: a marker, not the patient's words or image, which are
    decrypted only where the consent is checked (a campaign's send and evidence sample, TST-5)."""
    text = f"[patient asset '{key}': its consented content is inserted at send time]"
    return html_escape(text) if as_html else text


def render_preview(settings: Settings, template: Path | CompiledTemplate, *, campaign_name: str = "Preview",
                   campaign_id: int = 0) -> Preview:
    """Same compile, render and compose path as a real send; no database, no keys.
    Also the evidence package's sample message (mailer.evidence)."""
    if not isinstance(template, CompiledTemplate):
        template = compile_template(template)
        template.bind_assets(_asset_placeholder)  # no database here: name the asset, never its content
    url = settings.unsubscribe.base_url + SAMPLE_TOKEN
    rendered = template.render({
        "contact": SYNTHETIC_CONTACT,
        "center": settings.center.context(),
        "campaign": {"name": campaign_name},
        "unsubscribe_url": url,
    })
    s = settings.sender
    composer = Composer(from_address=s.from_address, envelope_from=settings.envelope_from, list_id=s.list_id,
                        reply_to=s.reply_to, campaign_id=campaign_id)
    msg = composer.compose(recipient=SAMPLE_ADDRESS, rendered=rendered,
                           message_id=composer.message_id(0), unsubscribe_url=url)
    return Preview(template, msg.data, rendered.html)


def write_preview(preview: Preview, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    eml = out_dir / f"{preview.template.name}.eml"
    html = out_dir / f"{preview.template.name}.html"
    eml.write_bytes(preview.eml)
    html.write_text(preview.html)
    return eml, html
