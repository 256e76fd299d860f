"""Run the real `mailer` CLI in-process against a config file written for the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer.cli.app import app


@pytest.fixture
def config_file(db_url: str, tmp_path: Path, sink) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "mailer.toml"
    path.write_text(f"""
[database]
url = "{db_url}"
[keys]
file = "{tmp_path / 'keys.json'}"
[center]
name = "Riverside Imaging Center"
postal_address = "100 Main Street, Springfield, IL 62701"
phone = "(217) 555-0100"
[sender]
from_address = "news@riverside-imaging.example"
[smtp]
host = "localhost"
port = {sink.port}
ca_file = "{sink.certs.ca_file}"
operated_by_covered_entity = true
[unsubscribe]
base_url = "https://riverside-imaging.example/u/"
""")
    return path


@pytest.fixture
def mailer(config_file: Path) -> Callable[..., object]:
    runner = CliRunner()

    def run(*args: str, actor: str | None = "tester", roles: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        """Run as the account `actor` (an API token; every person role unless `roles`)."""
        from tests.helpers_accounts import cli_env

        env = cli_env(config_file, actor if args[:1] != ("init",) else None, *roles)
        return runner.invoke(app, ["--config", str(config_file), *args], env=env)

    return run
