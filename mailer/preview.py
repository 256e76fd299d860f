"""A reviewer's preview: the template rendered for a synthetic contact, as .eml and .html."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailer.compose import Composer
from mailer.config import Settings
from mailer.templates import CompiledTemplate, compile_template

SYNTHETIC_CONTACT = {"first_name": "Sample", "preferred_name": "", "language": "en"}
SAMPLE_TOKEN = "SAMPLE-TOKEN-not-a-real-recipient"  # noqa: S105 - a placeholder, not a secret


@dataclass(frozen=True)
class Preview:
    template: CompiledTemplate
    eml: bytes
    html: str


def render_preview(settings: Settings, template_path: Path, *, campaign_name: str = "Preview") -> Preview:
    """Same compile, render and compose path as a real send; no database, no keys."""
    template = compile_template(template_path)
    c = settings.center
    url = settings.unsubscribe.base_url + SAMPLE_TOKEN
    rendered = template.render({
        "contact": SYNTHETIC_CONTACT,
        "center": {"name": c.name, "postal_address": c.postal_address, "phone": c.phone, "website": c.website},
        "campaign": {"name": campaign_name},
        "unsubscribe_url": url,
    })
    s = settings.sender
    composer = Composer(from_address=s.from_address, envelope_from=settings.envelope_from, list_id=s.list_id,
                        reply_to=s.reply_to)
    msg = composer.compose(recipient="sample.patient@example.invalid", rendered=rendered,
                           message_id=composer.message_id(0), unsubscribe_url=url)
    return Preview(template, msg.data, rendered.html)


def write_preview(preview: Preview, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    eml = out_dir / f"{preview.template.name}.eml"
    html = out_dir / f"{preview.template.name}.html"
    eml.write_bytes(preview.eml)
    html.write_text(preview.html)
    return eml, html
