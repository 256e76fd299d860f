"""A token in a file (MAILER_TOKEN_FILE) and `mailer users token NAME --out FILE`: how the
Docker worker gets its service token from a volume mounted read-only. What a user would
check: the file's mode, that the token in it signs the account in, and one clear line
(exit 2) when the file cannot be read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mailer.cli.app import app
from tests.helpers_accounts import cli_env
from tests.helpers_workflow import write_config


def run(cfg: Path, *args: str, env: dict[str, Any]) -> Any:
    return CliRunner().invoke(app, ["--config", str(cfg), *args], env=env)


def _setup(sample_rt: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    admin = cli_env(cfg, "boss", "admin")
    res = run(cfg, "users", "add", "worker", "--role", "service", env=admin)
    assert res.exit_code == 0, res.output
    return cfg, admin


def test_token_out_writes_a_private_file_that_signs_the_worker_in(sample_rt: Any, tmp_path: Path) -> None:
    cfg, admin = _setup(sample_rt, tmp_path)
    secret = tmp_path / "secrets"
    secret.mkdir()
    target = secret / "worker.token"
    target.write_text("an old token\n")  # a second issue replaces the file whole
    res = run(cfg, "users", "token", "worker", "--out", str(target), env=admin)
    assert res.exit_code == 0, res.output
    token = target.read_text().strip()
    assert token and token != "an old token" and token not in res.stdout, "the token goes to the file, not the screen"
    assert f"written to {target} (mode 0600)" in res.output and "MAILER_TOKEN_FILE" in res.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in secret.iterdir()) == ["worker.token"], "no temporary file left behind"
    who = run(cfg, "whoami", "--format", "json", env={"MAILER_TOKEN": "", "MAILER_TOKEN_FILE": str(target)})
    assert who.exit_code == 0, who.output
    assert json.loads(who.stdout)["account"] == "worker" and json.loads(who.stdout)["roles"] == ["service"]


def test_mailer_token_wins_over_the_file(sample_rt: Any, tmp_path: Path) -> None:
    cfg, admin = _setup(sample_rt, tmp_path)
    env = {**admin, "MAILER_TOKEN_FILE": str(tmp_path / "missing")}
    who = run(cfg, "whoami", "--format", "json", env=env)
    assert who.exit_code == 0, who.output
    assert json.loads(who.stdout)["account"] == "boss"


def test_an_unreadable_token_file_is_one_line_and_exit_2(sample_rt: Any, tmp_path: Path) -> None:
    cfg, _admin = _setup(sample_rt, tmp_path)
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    for path, why in ((tmp_path / "missing.token", "No such file or directory"),
                      (tmp_path, "Is a directory"), (empty, "the token file is empty")):
        res = run(cfg, "worker", env={"MAILER_TOKEN": "", "MAILER_TOKEN_FILE": str(path)})
        assert res.exit_code == 2, res.output
        first = res.output.splitlines()[0]
        assert first.startswith(f"error: MAILER_TOKEN_FILE={path}: ") and why in first, res.output
        assert "Traceback" not in res.output and "mailer users token NAME --out FILE" in res.output


def test_token_out_into_a_missing_folder_issues_nothing(sample_rt: Any, tmp_path: Path) -> None:
    cfg, admin = _setup(sample_rt, tmp_path)
    res = run(cfg, "users", "token", "worker", "--out", str(tmp_path / "nope" / "t"), env=admin)
    assert res.exit_code == 2 and "does not exist" in res.output
    listed = json.loads(run(cfg, "users", "list", "--format", "json", env=admin).stdout)
    assert next(a for a in listed if a["name"] == "worker")["active_tokens"] == 0


def test_token_out_where_the_user_may_not_write(sample_rt: Any, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere; the missing-folder case covers the error path")
    cfg, admin = _setup(sample_rt, tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    res = run(cfg, "users", "token", "worker", "--out", str(locked / "t"), env=admin)
    assert res.exit_code == 2 and "cannot write there" in res.output
