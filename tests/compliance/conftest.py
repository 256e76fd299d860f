"""Fixtures for the compliance records: a runtime with the gates on, accounts, and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mailer.cli.app import app
from tests.compliance.helpers import People, compliance_on, people
from tests.helpers_workflow import write_config


@pytest.fixture
def crt(runtime_factory: Any, sink: Any) -> Any:
    return compliance_on(runtime_factory, sink)


@pytest.fixture
def who(crt: Any) -> People:
    return people(crt)


@pytest.fixture
def cli(crt: Any, tmp_path: Path, who: People) -> Callable[..., Any]:
    """Run `mailer ARGS` in-process as an account (its API token in MAILER_TOKEN)."""
    config = write_config(crt, tmp_path / "mailer.toml")
    runner = CliRunner()

    def run(*args: str, as_: str | None = "compliance") -> Any:
        env = {"MAILER_TOKEN": who.tokens[as_] if as_ else ""}
        return runner.invoke(app, ["--config", str(config), *args], env=env)

    return run
