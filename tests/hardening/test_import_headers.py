"""Import headers (issues 14, 15): matched without regard to case; a headerless file never
prints a cell; ';' files named as the cause; header problems are not bad rows; names with
NUL or line breaks refused; --skip-invalid with nothing valid is a failure; counts are rows."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _cells(path: Path, line: int = 2) -> list[str]:
    rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
    return [c for c in rows[line - 1] if len(c.strip()) >= 3]


@pytest.mark.parametrize("kind", ["contacts", "authorizations"])
def test_a_headerless_file_prints_no_cell(mailer, tmp_path: Path, kind: str) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    if kind == "authorizations":
        assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    src = ROOT / f"examples/{kind}.csv"
    headerless = tmp_path / f"{kind}.csv"
    headerless.write_text("".join(src.read_text().splitlines(keepends=True)[1:4]))
    for extra in ([], ["--skip-invalid"]):
        res = mailer(kind, "import", str(headerless), *extra)
        assert res.exit_code == 2, res.output
        assert "not a header row" in res.output and "an email address" in res.output
        assert "bad row" not in res.output
        for cell in _cells(src) + _cells(src, 3):
            if cell.lower() not in ("true", "false"):
                assert cell not in res.output, (cell, res.output)
                assert cell.split("@")[0] not in res.output
        assert "Traceback" not in res.output


def test_headers_match_without_regard_to_case(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    src = (ROOT / "examples/contacts.csv").read_text().splitlines(keepends=True)
    f = tmp_path / "upper.csv"
    f.write_text(src[0].upper().replace("FIRST_NAME", "First Name") + "".join(src[1:5]))
    res = mailer("contacts", "import", str(f))
    assert res.exit_code == 0, res.output
    assert "4 new" in res.output


def test_a_semicolon_file_is_named_as_the_cause(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    f = tmp_path / "semi.csv"
    f.write_text("email;first_name;last_name\nann.lee@example.com;Ann;Lee\n")
    res = mailer("contacts", "import", str(f))
    assert res.exit_code == 2
    assert "separated by ';'" in res.output and "Ann" not in res.output and "bad row" not in res.output


def test_an_unknown_column_in_a_real_header_is_named(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    f = tmp_path / "cols.csv"
    f.write_text("email,first_name,ssn,Ann Lee 1970\nann.lee@example.com,Ann,123-45-6789,x\n")
    res = mailer("contacts", "import", str(f))
    assert res.exit_code == 2
    assert "ssn" in res.output and "column 4" in res.output and "Ann Lee" not in res.output


def test_names_with_nul_or_line_breaks_are_refused(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    f = tmp_path / "nul.csv"
    f.write_text('email,first_name,last_name\nann.lee@example.com,An\x00n,Lee\nbo.kim@example.com,"Bo\nX",Kim\n'
                 'cy.ng@example.com,Cy,Ng\n')
    res = mailer("contacts", "import", str(f))
    assert res.exit_code == 2
    assert f"{f}:2: first_name: contains a control character" in res.output
    assert f"{f}:3: first_name: contains a control character" in res.output
    assert "2 bad row(s)" in res.output


def test_skip_invalid_with_nothing_valid_is_a_failure(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    f = tmp_path / "bad.csv"
    f.write_text("email,first_name\nnot-an-address,Ann\nalso bad,Bo\n")
    res = mailer("contacts", "import", str(f), "--skip-invalid")
    assert res.exit_code == 1, res.output
    assert "none of the 2 row(s) is valid" in res.output
    a = tmp_path / "auth.csv"
    a.write_text("email,scope\nnobody@example.com,marketing\n")
    res = mailer("authorizations", "import", str(a), "--skip-invalid")
    assert res.exit_code == 1, res.output


def test_the_problem_count_counts_rows(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    a = tmp_path / "auth.csv"
    a.write_text("email,scope,signed_at\nnot an address,nonsense-scope,yesterday\n")
    res = mailer("authorizations", "import", str(a))
    assert res.exit_code == 2
    assert "1 bad row(s)" in res.output, res.output


def test_a_non_utf8_authorizations_file_is_one_line(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    assert mailer("init").exit_code == 0
    a = tmp_path / "latin1.csv"
    a.write_bytes("email,scope\nren\xe9e@example.com,marketing\n".encode("latin-1"))
    res = mailer("authorizations", "import", str(a))
    assert res.exit_code == 2 and "not UTF-8" in res.output and str(a) in res.output
    assert "Traceback" not in res.output
