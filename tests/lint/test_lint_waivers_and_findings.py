"""Findings API, the code table, and waivers (issue 5: waived only in template.toml, still shown)."""

from __future__ import annotations

import re
from pathlib import Path

from lintcases import CORPUS, REPO, SETTINGS

from mailer.lint import CODES, UNWAIVABLE, Finding, has_errors, lint_paths, lint_template_dir
from mailer.lint.findings import finding

RULES = (REPO.parent / "shared" / "spec" / "rules.md") if (REPO.parent / "shared").exists() else Path("/work/shared/spec/rules.md")

BODY = ('<p>Fax us at 217-555-0142.</p><p>{{ center.postal_address }}</p>'
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n')


def make(tmp_path: Path, waivers: str = "", body: str = BODY) -> Path:
    folder = tmp_path / "t"
    folder.mkdir(exist_ok=True)
    (folder / "template.toml").write_text(
        'subject = "News"\nfrom_name = "Riverside Imaging"\npurpose = "newsletter"\n' + waivers)
    (folder / "body.html.j2").write_text(body)
    return folder


def test_codes_are_stable_and_cite_real_rules() -> None:
    rule_ids = set(re.findall(r"^\| ([A-Z]+-\d+[a-z]?) \|", RULES.read_text(), re.MULTILINE)) if RULES.exists() else set()
    for code, (rule, severity, hint) in CODES.items():
        assert re.fullmatch(r"(PHI|SPAM|DIS|TST)\d{3}", code)
        assert severity in ("error", "review", "info")  # issue 13: three severities
        assert hint and "\n" not in hint
        if rule_ids:
            assert rule in rule_ids, code
    assert UNWAIVABLE <= set(CODES)


def test_finding_format_and_dict() -> None:
    f = finding("PHI102", "t/body.html.j2", 3, 7, "'contact.last_name' is outside the allowed context")
    assert f.format() == "t/body.html.j2:3:7: PHI102 'contact.last_name' is outside the allowed context (PHI-1)"
    assert f.as_dict() == {
        "path": "t/body.html.j2", "line": 3, "column": 7, "code": "PHI102", "severity": "error",
        "message": "'contact.last_name' is outside the allowed context (PHI-1)", "rule": "PHI-1",
        "hint": CODES["PHI102"][2], "waived": False,
    }
    assert has_errors([f]) and not has_errors([])
    assert isinstance(f, Finding)


def test_waiver_marks_but_keeps_the_finding(tmp_path: Path) -> None:
    folder = make(tmp_path, '[[waivers]]\ncode = "PHI301"\nreason = "the center\'s fax line"\nreviewer = "j.doe"\n')
    findings = lint_template_dir(folder, SETTINGS)
    assert [(f.code, f.waived, f.waiver_reviewer) for f in findings] == [("PHI301", True, "j.doe")]
    assert not has_errors(findings)
    assert findings[0].format().endswith("[waived by j.doe: the center's fax line]")
    assert findings[0].as_dict()["waiver_reason"] == "the center's fax line"


def test_waiver_needs_reason_and_reviewer(tmp_path: Path) -> None:
    folder = make(tmp_path, '[[waivers]]\ncode = "PHI301"\nreviewer = "j.doe"\n')
    findings = lint_template_dir(folder, SETTINGS)
    assert sorted((f.code, f.waived) for f in findings) == [("PHI105", False), ("PHI301", False)]
    waiver_problem = next(f for f in findings if f.code == "PHI105")
    assert (waiver_problem.path, waiver_problem.line) == (str(folder / "template.toml"), 4)


def test_unknown_code_cannot_be_waived(tmp_path: Path) -> None:
    folder = make(tmp_path, '[[waivers]]\ncode = "XYZ999"\nreason = "r"\nreviewer = "j.doe"\n')
    assert {f.code for f in lint_template_dir(folder, SETTINGS)} == {"PHI105", "PHI301"}


def test_phi1_findings_cannot_be_waived(tmp_path: Path) -> None:
    for code in sorted(UNWAIVABLE - {"PHI210"}):
        folder = make(tmp_path, f'[[waivers]]\ncode = "{code}"\nreason = "r"\nreviewer = "j.doe"\n',
                      body=BODY + "{{ contact.last_name }}")
        findings = lint_template_dir(folder, SETTINGS)
        assert has_errors(findings)
        assert not any(f.waived for f in findings if f.code in UNWAIVABLE)


def test_waiver_applies_to_a_single_file_of_the_folder(tmp_path: Path) -> None:
    folder = make(tmp_path, '[[waivers]]\ncode = "PHI301"\nreason = "fax"\nreviewer = "j.doe"\n')
    findings = lint_paths([folder / "body.html.j2"], SETTINGS)
    assert [(f.code, f.waived) for f in findings] == [("PHI301", True)]


def test_missing_files_are_findings(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "template.toml").write_text('subject = ""\npurpose = "newsletter"\n')
    codes = sorted(f.code for f in lint_template_dir(folder, SETTINGS))
    assert codes == ["PHI105", "PHI105", "PHI105"]  # empty subject, no from_name, no body.html.j2


def test_lint_paths_accepts_a_folder_of_templates() -> None:
    findings = lint_paths([CORPUS], SETTINGS)
    assert {Path(f.path).parent.name for f in findings} >= {"sh-ssn", "phi1-last-name"}


def test_messages_never_carry_literal_identifiers() -> None:
    """The SSN, phone, MRN ... of the corpus never appear in any message (style rule 5)."""
    secrets = ["123-45-6789", "RV2048813", "XJP884213370", "4111", "03/14/1961", "555-0199", "jane.doe",
               "45 Elm", "Margaret", "192.168", "40021877", "PX44019"]
    for f in lint_paths([CORPUS], SETTINGS):
        for s in secrets:
            assert s not in f.message
