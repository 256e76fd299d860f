"""Templates compile once (sandboxed, CSS inlined, hashed) and refuse anything outside the context."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailer.errors import TemplateError
from mailer.templates import compile_template, content_hash
from tests.conftest import ROOT

CONTEXT = {
    "contact": {"first_name": "Ann", "preferred_name": "", "language": "en"},
    "center": {"name": "Riverside Imaging Center", "postal_address": "100 Main Street, Springfield, IL 62701",
               "phone": "(217) 555-0100", "website": "https://riverside-imaging.example"},
    "campaign": {"name": "Spring"},
    "unsubscribe_url": "https://riverside-imaging.example/u/TOKEN123",
}


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(ROOT / "templates" / name, dst)
    return dst


@pytest.mark.parametrize("name", ["newsletter", "service-announcement", "condition-targeted"])
def test_samples_compile_and_render_with_unsubscribe_and_address(name: str) -> None:
    t = compile_template(ROOT / "templates" / name)
    r = t.render(CONTEXT)
    assert "https://riverside-imaging.example/u/TOKEN123" in r.html
    assert "https://riverside-imaging.example/u/TOKEN123" in r.text
    assert "100 Main Street" in r.html and "100 Main Street" in r.text
    assert "<style" not in r.html.lower()  # CSS inlined once, at compile time
    assert r.subject and "\n" not in r.subject


def test_one_changed_character_changes_the_content_hash(tmp_path: Path) -> None:
    t = _copy("newsletter", tmp_path)
    before = content_hash(t)
    body = t / "body.html.j2"
    body.write_text(body.read_text().replace("8 pm", "9 pm", 1))
    assert content_hash(t) != before


def test_the_text_part_is_generated_from_html_when_missing(tmp_path: Path) -> None:
    t = _copy("newsletter", tmp_path)
    (t / "body.txt.j2").unlink(missing_ok=True)
    r = compile_template(t).render(CONTEXT)
    assert "<" not in r.text.replace("<https://", "").replace("<http", "")
    assert "Unsubscribe" in r.text and "TOKEN123" in r.text


@pytest.mark.parametrize(
    "expr",
    ["{{ contact.last_name }}", "{{ contact.conditions }}", "{{ contact['procedures'] }}",
     "{{ contact|attr('email') }}", "{{ ''.__class__.__mro__ }}", "{{ patient.diagnosis }}",
     "{% for k in contact %}{{ k }}{% endfor %}"],
    ids=["last-name", "clinical-attr", "item-access", "attr-filter", "ssti", "unknown-var", "loop-over-contact"],
)
def test_anything_outside_the_context_is_a_compile_time_error(expr: str, tmp_path: Path) -> None:
    t = _copy("newsletter", tmp_path)
    body = t / "body.html.j2"
    body.write_text(body.read_text().replace("<h1>", "<h1>" + expr, 1))
    with pytest.raises(TemplateError) as err:
        compile_template(t)
    assert "PHI-1" in str(err.value)


def test_a_clinical_variable_in_the_subject_is_refused(tmp_path: Path) -> None:
    t = _copy("newsletter", tmp_path)
    toml = t / "template.toml"
    toml.write_text(toml.read_text().replace('subject = "', 'subject = "{{ patient.diagnosis }} ', 1))
    with pytest.raises(TemplateError):
        compile_template(t)


def test_unknown_purpose_and_keys_are_clear_errors(tmp_path: Path) -> None:
    t = _copy("newsletter", tmp_path)
    toml = t / "template.toml"
    toml.write_text(toml.read_text().replace('purpose = "newsletter"', 'purpose = "promo"'))
    with pytest.raises(TemplateError, match="purpose"):
        compile_template(t)
