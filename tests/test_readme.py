"""The README stays true: every `mailer ...` command it shows exists, and its options do too."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.testing import CliRunner

from mailer.cli.app import app
from tests.conftest import ROOT


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("mailer "):
                cmds.append(shlex.split(line)[1:])
    return cmds


def _path_and_options(argv: list[str]) -> tuple[list[str], list[str]]:
    argv = [a for a in argv]
    path = []
    for a in argv:
        if a.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", a):
            break
        path.append(a)
    return path, [a.split("=")[0] for a in argv if a.startswith("--")]


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda a: " ".join(a[:3]))
def test_readme_command_exists_with_its_options(argv: list[str]) -> None:
    path, options = _path_and_options(argv)
    res = CliRunner().invoke(app, [*path, "--help"])
    assert res.exit_code == 0, f"`mailer {' '.join(path)}` is not a command"
    for opt in options:
        assert opt in res.output, f"`mailer {' '.join(path)}` has no option {opt}"


def test_the_quick_start_is_two_commands_on_the_first_screen() -> None:
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert "make demo" in head and "make test" in head
