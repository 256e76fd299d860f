"""The README's "Try it on your machine" section, followed literally in a scratch copy of
the repository. The one change: port 2525 becomes a free port (tests never use fixed
ports), in the sink's command line and in config/local.toml alike. At `mailer login` the
test types what a person would: the password the output showed (then a new one at a first
sign-in) and the code an authenticator app makes from the TOTP secret the output showed."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pyotp
import pytest
from typer.testing import CliRunner

from mailer.cli.app import app
from tests.conftest import ROOT
from tests.sink.test_sink_cli import _free_port


def readme_local_steps() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it on your machine", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block, "the README's local section has no sh block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


class Person:
    """What someone following the README notes down and types at the prompts."""

    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.first_sign_in: set[str] = set()

    def read(self, output: str) -> None:
        for name, otp in re.findall(r"^one-time password for (\S+): (\S+)$", output, flags=re.M):
            self.passwords[name] = otp
            self.first_sign_in.add(name)
        self.secrets.update(re.findall(r"^TOTP secret for (\S+): (\S+)$", output, flags=re.M))

    def answers(self, argv: list[str]) -> str | None:
        """Keyboard input for `mailer login --user NAME` (None for other commands)."""
        if argv[1:2] != ["login"]:
            return None
        name = argv[argv.index("--user") + 1]
        code = pyotp.TOTP(self.secrets[name]).now() if name in self.secrets else ""
        typed = [self.passwords[name], code]
        if name in self.first_sign_in:
            self.passwords[name] = "plum lantern meadow otter 42"
            self.first_sign_in.discard(name)
            typed += [self.passwords[name]] * 2  # new password, and again to confirm
        return "\n".join(typed) + "\n"


def test_the_readme_local_walk_through_sends_through_mailer_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "repo"
    for folder in ("config", "examples", "templates", "segments"):
        shutil.copytree(ROOT / folder, work / folder)
    port = str(_free_port())
    local = work / "config" / "local.toml"
    local.write_text(re.sub(r"(?m)^port = 2525$", f"port = {port}", local.read_text()))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MAILER_DATABASE_URL", raising=False)
    sink: subprocess.Popen[str] | None = None
    banner: list[str] = []
    person, runner = Person(), CliRunner()
    try:
        for line in readme_local_steps():
            argv = shlex.split(line.replace("2525", port))
            if argv[0] == "export":
                name, _, value = argv[1].partition("=")
                monkeypatch.setenv(name, value)
            elif argv[-1] == "&":
                assert argv[:2] == ["mailer", "sink"], f"only the sink runs in the background: {line}"
                sink = subprocess.Popen([sys.executable, "-m", "mailer.cli.app", *argv[1:-1]],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                assert sink.stdout is not None
                for out in sink.stdout:
                    banner.append(out)
                    if out.startswith("waiting for messages"):
                        break
                text = "".join(banner)
                printed = tomllib.loads(text[text.index("[smtp]"):text.index("waiting for")])["smtp"]
                configured = tomllib.loads(local.read_text())["smtp"]
                # what the sink printed is what config/local.toml already says
                assert (printed["host"], printed["port"], printed["tls"]) == (
                    configured["host"], configured["port"], configured["tls"])
                assert Path(printed["ca_file"]) == (local.parent / configured["ca_file"]).resolve()
            elif argv[0] == "mailer":
                res = runner.invoke(app, argv[1:], input=person.answers(argv), prog_name="mailer")
                assert res.exit_code == 0, f"{line} exited {res.exit_code}: {res.output}"
                person.read(res.output)
            elif argv[0] == "ls":
                emls = sorted(Path(argv[1]).glob("*.eml"))
                assert emls and emls[0].name == "000001.eml"
            else:
                raise AssertionError(f"the test does not know how to follow: {line}")
    finally:
        if sink is not None:
            sink.send_signal(signal.SIGINT)
            rest, _ = sink.communicate(timeout=30)
            banner.append(rest)
    log = "".join(banner)
    received = [ln for ln in log.splitlines() if ln.startswith("received <")]
    assert len(received) == len(list((work / ".sink").glob("*.eml"))) > 0
    for row in (ROOT / "examples" / "contacts.csv").read_text().splitlines()[1:]:
        assert row.split(",")[0] not in log, "the sink never prints an address"
