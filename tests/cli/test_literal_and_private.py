"""User text is printed as typed, and files that can hold PHI are private (issue 15)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.conftest import ROOT

NAMES = ["Spring [/] checkup", "[bold]Flu[/bold] :smile: shots", "Bracket [red"]


def _init(mailer) -> None:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0


@pytest.mark.parametrize("name", NAMES)
def test_campaign_names_print_literally_everywhere(mailer, name: str) -> None:  # type: ignore[no-untyped-def]
    _init(mailer)
    made = mailer("campaign", "create", "--name", name, "--template", str(ROOT / "templates/newsletter"),
                  "--segment", str(ROOT / "segments/newsletter.toml"), actor="marketer")
    assert made.exit_code == 0, made.output
    cid = made.output.split()[1]
    for args in (("campaign", "status"), ("campaign", "status", cid), ("campaign", "list")):
        res = mailer(*args)
        assert res.exit_code == 0, (args, res.output)
        assert name in res.output, (args, res.output)
    assert json.loads(mailer("campaign", "status", cid, "--format", "json").stdout)[0]["name"] == name


def test_a_file_name_with_markup_is_printed_as_typed_in_errors(mailer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _init(mailer)
    weird = tmp_path / "[/]odd [bold]name.csv"
    res = mailer("contacts", "import", str(weird))
    assert res.exit_code == 2
    assert str(weird) in res.output and "Traceback" not in res.output


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_dry_run_folder_and_files_are_private(mailer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _init(mailer)
    made = mailer("campaign", "create", "--name", "x", "--template", str(ROOT / "templates/newsletter"),
                  "--segment", str(ROOT / "segments/newsletter.toml"), actor="marketer")
    cid = made.output.split()[1]
    assert mailer("campaign", "submit", cid, actor="marketer").exit_code == 0
    assert mailer("campaign", "approve", cid, actor="reviewer").exit_code == 0
    out = tmp_path / "dry"
    res = mailer("campaign", "send", cid, "--dry-run", str(out))
    assert res.exit_code == 0, res.output
    files = list(out.glob("*.eml"))
    assert files and _mode(out) == 0o700
    assert {_mode(f) for f in files} == {0o600}


def test_ledger_export_is_private(mailer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _init(mailer)
    res = mailer("ledger", "export", "--out", str(tmp_path / "ledger.jsonl"))
    assert res.exit_code == 0, res.output
    assert _mode(tmp_path / "ledger.jsonl") == 0o600
