"""The corpus (issue 5 acceptance): every expected finding is reported, and nothing else.

Each case is a folder under corpus/ with an expected.toml naming the error, warning
and waived codes. Clean cases (names starting with "clean-") expect none, so they
pin down the false positives the lint must not raise.
"""

from __future__ import annotations

import pytest
from lintcases import SETTINGS, Case, corpus_cases

from mailer.lint import CODES, has_errors, lint_paths

CASES = corpus_cases()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert sum(1 for c in CASES if not c.errors) >= 15  # clean and tricky-clean cases
    assert all(code in CODES for c in CASES for code in c.errors | c.warnings | c.waived)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case: Case) -> None:
    findings = lint_paths([case.path], SETTINGS)
    report = "\n".join(f.format() for f in findings)
    errors = {f.code for f in findings if f.severity == "error" and not f.waived}
    warnings = {f.code for f in findings if f.severity != "error" and not f.waived}  # review or info
    waived = {f.code for f in findings if f.waived}
    assert errors == case.errors, f"{case.description}\n{report}"
    assert warnings == case.warnings, f"{case.description}\n{report}"
    assert waived == case.waived, f"{case.description}\n{report}"
    assert has_errors(findings) == bool(case.errors)


@pytest.mark.parametrize("case", [c for c in CASES if c.errors], ids=lambda c: c.name)
def test_findings_point_into_the_case(case: Case) -> None:
    for f in lint_paths([case.path], SETTINGS):
        assert f.path.startswith(str(case.path.parent if case.path.is_file() else case.path))
        assert f.line >= 1 and f.column >= 1
