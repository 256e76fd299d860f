"""Templates that would exhaust resources are refused with a rule ID, at lint, preview and submit
(PHI-1, PHI107); symlinked or escaping body files and unknown template.toml keys are refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mailer.errors import TemplateError
from mailer.lint import LintSettings, lint_template_dir
from mailer.templates import compile_template
from tests.conftest import ROOT

HOSTILE = {
    "power": "{{ 7 ** (10 ** 9) }}",
    "power-of-variable": "{% set n = 10 %}{{ n ** 5000 }}",
    "repeat": "{{ 'a' * 10**10 }}",
    "nested-loops": "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}",
    "loops-over-the-name": "{% for a in contact.first_name * 2000 %}{% for b in contact.first_name * 2000 %}"
                           "{% endfor %}{% endfor %}",
    "big-range": "{% for i in range(10**8) %}{% endfor %}",
    "center": "{{ contact.first_name|center(10**9) }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "output": "{% for i in range(5000) %}{{ 'y' * 1000 }}{% endfor %}",
}


def _template(tmp_path: Path, body_line: str, name: str = "t") -> Path:
    dest = tmp_path / name
    shutil.copytree(ROOT / "templates/newsletter", dest)
    html = dest / "body.html.j2"
    src = html.read_text()
    html.write_text(src.replace("</body>", f"<p>{body_line}</p>\n</body>", 1))
    return dest


@pytest.mark.parametrize("expr", list(HOSTILE.values()), ids=list(HOSTILE))
def test_the_lint_refuses_a_template_over_budget(tmp_path: Path, expr: str) -> None:
    t = _template(tmp_path, expr)
    found = [f for f in lint_template_dir(t, LintSettings()) if f.code == "PHI107"]
    assert found and found[0].rule == "PHI-1" and found[0].blocking
    assert found[0].path.endswith("body.html.j2")
    with pytest.raises(TemplateError) as err:
        compile_template(t)
    assert "body.html.j2" in err.value.message and "PHI-1" in err.value.rules


def test_a_normal_template_is_within_budget(tmp_path: Path) -> None:
    t = _template(tmp_path, "{{ 2 ** 3 }} {{ 'ab' * 3 }} {{ contact.first_name * 2 }}")
    assert not [f for f in lint_template_dir(t, LintSettings()) if f.code == "PHI107"]
    compile_template(t)


def test_a_huge_template_is_refused_before_analysis(tmp_path: Path) -> None:
    t = _template(tmp_path, "{{ 1 }}" * 40_000)
    found = lint_template_dir(t, LintSettings())
    assert [f.code for f in found if f.code == "PHI107"] == ["PHI107"]
    assert "Jinja expressions and statements (at most 5000)" in found[-1].message
    big = _template(tmp_path, "x" * 8_000_000, name="big")  # a 7.5 MB template hung the lint
    assert [f.code for f in lint_template_dir(big, LintSettings()) if f.code == "PHI107"] == ["PHI107"]


def test_preview_and_submit_give_one_line_and_exit_2(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    t = _template(tmp_path, "{% set n = 10 %}\n{{ n ** 5000 }}")
    assert mailer("init").exit_code == 0
    res = mailer("preview", str(t), "--out", str(tmp_path / "out"))
    assert res.exit_code == 2, res.output
    assert f"{t / 'body.html.j2'}:" in res.output and "exponent 5000" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()
    res = mailer("campaign", "create", "--name", "x", "--template", str(t), "--segment",
                 str(ROOT / "segments/newsletter.toml"))
    assert res.exit_code == 0, res.output
    res = mailer("campaign", "submit", "1")
    assert res.exit_code == 2 and "exponent 5000" in res.output and "Traceback" not in res.output
    status = mailer("campaign", "status", "1")
    assert "draft" in status.output


@pytest.mark.parametrize("name", ["body.html.j2", "body.txt.j2"])
def test_symlinked_or_escaping_body_files_are_refused(tmp_path: Path, name: str) -> None:
    t = _template(tmp_path, "hi")
    outside = tmp_path / "secret.j2"
    outside.write_text("{{ contact.first_name }} secret")
    target = t / name
    target.unlink(missing_ok=True)
    os.symlink(outside, target)
    with pytest.raises(TemplateError, match="symbolic link"):
        compile_template(t)
    assert any(f.code == "PHI105" and "symbolic link" in f.message for f in lint_template_dir(t, LintSettings()))


def test_unknown_template_toml_keys_are_a_lint_error(tmp_path: Path) -> None:
    t = _template(tmp_path, "hi")
    toml = t / "template.toml"
    toml.write_text(toml.read_text().replace("purpose", "subjcet = \"typo\"\npurpose", 1))
    found = [f for f in lint_template_dir(t, LintSettings()) if "subjcet" in f.message]
    assert found and found[0].blocking and found[0].code == "PHI105"


def test_non_utf8_template_at_preview_is_one_line(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    t = _template(tmp_path, "hi")
    html = t / "body.html.j2"
    html.write_bytes(html.read_bytes() + "caf\xe9".encode("latin-1"))
    assert mailer("init").exit_code == 0
    res = mailer("preview", str(t), "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and f"{html}:" in res.output and "not UTF-8" in res.output
    assert "Traceback" not in res.output


def test_a_deeply_nested_template_toml_is_one_line(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    t = _template(tmp_path, "hi")
    (t / "template.toml").write_text((t / "template.toml").read_text() + "x = " + "[" * 3000 + "]" * 3000 + "\n")
    assert mailer("init").exit_code == 0
    res = mailer("preview", str(t), "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and "template.toml" in res.output and "Traceback" not in res.output
    assert any(f.path.endswith("template.toml") for f in lint_template_dir(t, LintSettings()))
