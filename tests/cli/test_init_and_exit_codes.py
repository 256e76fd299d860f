"""`mailer init` and the exit-code contract: 0 ok, 1 failure, 2 usage/input, 3 refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer.cli.app import app
from tests.conftest import ROOT


def test_init_creates_a_private_key_file_and_refuses_to_overwrite_it(mailer, tmp_path: Path) -> None:
    first = mailer("init")
    assert first.exit_code == 0, first.output
    key_file = tmp_path / "keys.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    before = key_file.read_bytes()
    second = mailer("init")
    assert second.exit_code == 2
    assert "refusing to overwrite" in second.output
    assert key_file.read_bytes() == before
    keys = json.loads(before)
    assert keys["field_keys"] and keys["ledger_key"]


def test_a_missing_input_file_is_exit_2_with_the_path(mailer) -> None:
    assert mailer("init").exit_code == 0
    res = mailer("contacts", "import", "/nonexistent/contacts.csv")
    assert res.exit_code == 2
    assert "/nonexistent/contacts.csv" in res.output


def test_a_condition_segment_without_scope_is_refused_with_exit_3_and_the_rule(mailer, tmp_path: Path) -> None:
    assert mailer("init").exit_code == 0
    seg = tmp_path / "bad.toml"
    seg.write_text('name = "bad"\ndescription = "x"\n[match]\nall = [ { field = "conditions", op = "contains", value = "asthma" } ]\n')
    res = mailer("segment", "check", str(seg), "--format", "json")
    assert res.exit_code == 3
    data = json.loads(res.stdout)
    assert data["refused"] is True and "SEG-1" in data["rules"]


def test_a_bad_config_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[smtp]\ntls = "plaintext"\n')
    res = CliRunner().invoke(app, ["--config", str(cfg), "ledger", "verify"])
    assert res.exit_code == 2
    assert "smtp.tls" in res.output


def _commands(cmd, prefix=()):  # type: ignore[no-untyped-def]
    for name, sub in getattr(cmd, "commands", {}).items():
        yield (*prefix, name)
        yield from _commands(sub, (*prefix, name))


def _all_commands() -> list[tuple[str, ...]]:
    import typer.main

    return sorted(set(_commands(typer.main.get_command(app))))


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    res = CliRunner().invoke(app, [*path, "--help"])
    assert res.exit_code == 0
    assert "Usage:" in res.output


def test_the_sample_files_exist() -> None:
    assert (ROOT / "examples/contacts.csv").exists() and (ROOT / "examples/authorizations.csv").exists()
