"""`mailer lint`: compiler-style output, JSON shape, summary on stderr, exit codes (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from lintcases import CORPUS, REPO
from typer.testing import CliRunner

from mailer.cli.lint import register

CONFIG = """
[center]
name = "Riverside Imaging"
postal_address = "1200 River Rd, Springfield, IL 62704"
phone = "(217) 555-0100"
website = "https://riverside-imaging.example"

[sender]
from_address = "news@riverside-imaging.example"

[fields.clinical]
conditions = "list"
implant_model = "text"
"""


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def noop() -> None:  # a second command keeps typer from flattening `lint` into the app
        pass

    return app


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailer.toml"
    path.write_text(CONFIG)
    return path


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["lint", *args])


def test_clean_templates_exit_0(app: typer.Typer, config: Path) -> None:
    result = run(app, str(REPO / "templates"), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "0 error(s)" in result.stderr


def test_errors_exit_1_with_compiler_style_lines(app: typer.Typer, config: Path) -> None:
    case = CORPUS / "phi2-subject-diagnosis"
    result = run(app, str(case), "--config", str(config))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{case}/template.toml:1:15: PHI101 'patient' is not in the template context (PHI-1); see mailer rules PHI-1",
        f"{case}/template.toml:1:23: PHI201 clinical field 'patient.diagnosis' in the subject (PHI-2); see mailer rules PHI-2",
    ]
    assert "2 error(s)" in result.stderr


def test_json_output_shape(app: typer.Typer, config: Path) -> None:
    result = run(app, str(CORPUS / "sh-ssn"), str(CORPUS / "waiver-center-fax"), "--format", "json", "--config", str(config))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert isinstance(data, list) and len(data) == 2
    for item in data:
        assert {"path", "line", "column", "code", "severity", "message", "rule", "hint", "waived"} <= set(item)
        assert isinstance(item["line"], int) and isinstance(item["column"], int)
    ssn, fax = data
    assert (ssn["code"], ssn["severity"], ssn["waived"]) == ("PHI305", "error", False)
    assert (fax["code"], fax["waived"], fax["waiver_reviewer"]) == ("PHI301", True, "j.doe")
    assert "123-45" not in result.stdout


def test_waived_only_exit_0_and_waiver_is_shown(app: typer.Typer, config: Path) -> None:
    result = run(app, str(CORPUS / "waiver-center-fax"), "--config", str(config))
    assert result.exit_code == 0
    assert "[waived by j.doe: the number is the center's fax line]; see mailer rules PHI-3" in result.stdout
    assert "1 waived" in result.stderr


def test_info_alone_exit_0(app: typer.Typer, config: Path) -> None:
    result = run(app, str(CORPUS / "clean-toll-free"), "--config", str(config))
    assert result.exit_code == 0
    assert "PHI302 [info]" in result.stdout and "1 info" in result.stderr


def test_missing_path_exit_2(app: typer.Typer, config: Path) -> None:
    result = run(app, str(CORPUS / "no-such-template"), "--config", str(config))
    assert result.exit_code == 2
    assert "no such file or folder" in result.stderr


def test_bad_config_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    result = run(app, str(CORPUS / "clean-basic"), "--config", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2


def test_config_allowlists_the_center_and_adds_clinical_fields(app: typer.Typer, config: Path, tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "template.toml").write_text('subject = "About your {{ contact.implant_model }}"\n'
                                          'from_name = "Riverside Imaging"\npurpose = "newsletter"\n')
    (folder / "body.html.j2").write_text(
        '<p>Call (217) 555-0100 or visit 1200 River Rd.</p><p>{{ center.postal_address }}</p>'
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n')
    result = run(app, str(folder), "--config", str(config))
    codes = [line.split()[1] for line in result.stdout.splitlines()]
    assert codes == ["PHI102", "PHI201"]  # implant_model is clinical by config; phone and address are the center's


def test_single_j2_file(app: typer.Typer, config: Path) -> None:
    result = run(app, str(CORPUS / "file-leak" / "snippet.html.j2"), "--config", str(config))
    assert result.exit_code == 1 and "PHI102" in result.stdout


def test_registered_in_the_real_app(config: Path) -> None:
    app_module = pytest.importorskip("mailer.cli.app")
    result = CliRunner().invoke(app_module.app, ["--config", str(config), "lint", str(CORPUS / "sh-mrn")])
    assert result.exit_code == 1
    assert "PHI306" in result.stdout


def test_without_a_config_the_lint_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: the center's identity is unknown without a config, and the lint says so, once."""
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "MAILER_CONFIG"}
    cmd = [sys.executable, "-c", "import sys; from mailer.cli.entry import main; sys.argv[0] = 'mailer'; main()",
           "lint", str(CORPUS / "clean-basic"), str(CORPUS / "clean-macro")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("no config") == 1
    with_config = subprocess.run([*cmd, "--config", str(REPO / "config" / "mailer.example.toml")],
                                 capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert "no config" not in with_config.stderr


def test_mailer_lint_loads_neither_the_database_layer_nor_the_other_commands() -> None:
    """Issue 13: `mailer lint` starts fast (the time itself is measured by make bench)."""
    import subprocess
    import sys

    probe = ("import sys; from mailer.cli.entry import main; sys.argv = ['mailer', 'lint', '--config', "
             f"{str(REPO / 'config' / 'mailer.example.toml')!r}, {str(CORPUS / 'clean-basic')!r}]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('sqlalchemy', 'pydantic', 'typer', 'rich', 'mailer.ledger', 'mailer.cli.app') "
             "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False)
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout + res.stderr


def test_review_and_info_are_labelled_and_do_not_fail_the_run(app: typer.Typer, config: Path) -> None:
    result = run(app, str(CORPUS / "tst-says-name"), "--config", str(config))
    assert result.exit_code == 0
    assert "TST101 [review]" in result.stdout and "1 to review" in result.stderr
