"""The CLI people expect (issue 15): --version and -h, a sensible command order with whole
descriptions, help in words (no Python type names), --format json on every reporting
command, tables readable at 80 columns, a worker that says what it runs."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from mailer import scheduler
from mailer.cli.app import app
from mailer.models import utcnow
from tests.conftest import ROOT
from tests.helpers_accounts import cli_env
from tests.helpers_workflow import approved, write_config


def _commands(cmd, prefix=()):  # type: ignore[no-untyped-def]
    for name, sub in getattr(cmd, "commands", {}).items():
        yield (*prefix, name)
        yield from _commands(sub, (*prefix, name))


ALL = sorted(set(_commands(typer.main.get_command(app))))


def test_version_and_short_help() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and re.fullmatch(r"mailer \d+\.\d+\.\d+\S*\n", res.output)
    for args in (["-h"], ["campaign", "-h"], ["campaign", "send", "-h"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0 and "Usage:" in r.output, args


def test_commands_are_listed_in_a_sensible_order_with_whole_descriptions() -> None:
    out = CliRunner().invoke(app, ["--help"]).output
    listed = re.findall(r"^  ([a-z-]+)\s", out.split("Commands:")[1], re.M)
    assert listed[0] == "init" and listed.index("contacts") < listed.index("campaign") < listed.index("ledger")
    assert listed.index("worker") > listed.index("campaign") and listed[-1] == "demo"
    assert "..." not in out.split("Commands:")[1]
    camp = CliRunner().invoke(app, ["campaign", "--help"]).output
    order = re.findall(r"^  ([a-z-]+)\s", camp.split("Commands:")[1], re.M)
    assert order[:7] == ["create", "submit", "review", "approve", "reject", "check", "send"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p))
def test_help_has_no_python_type_names(path: tuple[str, ...]) -> None:
    out = CliRunner().invoke(app, [*path, "--help"]).output
    for bad in ("<int>", "<str>", "<path>", "<float>", "list[", "<bool>", "NoneType"):
        assert bad not in out, (path, bad)


def _json(res):  # type: ignore[no-untyped-def]
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_format_json_on_every_reporting_command(mailer, sink) -> None:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    imp = _json(mailer("authorizations", "import", str(ROOT / "examples/authorizations.csv"), "--format", "json"))
    assert imp["imported"] > 0
    made = _json(mailer("campaign", "create", "--name", "N", "--template", str(ROOT / "templates/newsletter"),
                        "--segment", str(ROOT / "segments/newsletter.toml"), "--format", "json", actor="marketer"))
    cid = str(made["id"])
    assert made["status"] == "draft"
    assert _json(mailer("campaign", "submit", cid, "--format", "json", actor="marketer"))["status"] == "submitted"
    assert mailer("campaign", "approve", cid, actor="reviewer").exit_code == 0
    sent = _json(mailer("campaign", "send", cid, "--format", "json"))
    assert sent["this_run"]["sent"] == len(sink.messages) > 0 and sent["status"] == "done"
    assert _json(mailer("ledger", "verify", "--format", "json"))["ok"] is True
    shown = _json(mailer("ledger", "show", "--campaign", cid, "--kind", "send", "--format", "json"))
    assert shown and {"seq", "kind", "outcome", "reason"} <= set(shown[0])
    assert _json(mailer("contacts", "count", "--format", "json"))["contacts"] > 0
    assert _json(mailer("campaign", "list", "--format", "json"))[0]["id"] == int(cid)
    two = _json(mailer("campaign", "create", "--name", "M", "--template", str(ROOT / "templates/newsletter"),
                       "--segment", str(ROOT / "segments/newsletter.toml"), "--format", "json", actor="marketer"))
    assert mailer("campaign", "submit", str(two["id"]), actor="marketer").exit_code == 0
    assert mailer("campaign", "approve", str(two["id"]), actor="reviewer").exit_code == 0
    sch = _json(mailer("campaign", "schedule", str(two["id"]), "--cron", "0 9 * * 1", "--format", "json"))
    assert sch["next_run"].startswith("Mon ") and sch["cron"] == "0 9 * * 1"
    bad = mailer("ledger", "show", "--format", "yaml")
    assert bad.exit_code == 2 and "--format text or --format json" in bad.output


def test_tables_fit_80_columns(sample_rt, sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from mailer import sending

    c = approved(sample_rt, name="A rather long campaign name for the spring newsletter")
    asyncio.run(sending.send(sample_rt, c.id))
    cfg = write_config(sample_rt, tmp_path / "m.toml")
    env = {**os.environ, **cli_env(cfg, "reviewer", "reviewer"), "COLUMNS": "80"}  # ledger reads need an account
    for args in (["campaign", "status"], ["campaign", "status", str(c.id)], ["campaign", "list"],
                 ["ledger", "show", "--campaign", str(c.id), "--limit", "30"], ["ledger", "tail"]):
        res = subprocess.run([sys.executable, "-m", "mailer.cli.app", "--config", str(cfg), *args],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert res.returncode == 0, res.stderr
        widest = max(len(line) for line in res.stdout.splitlines())
        assert widest <= 80, (args, widest, res.stdout)


def test_the_worker_logs_each_campaign_it_starts_and_finishes(sample_rt, sink, caplog) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    c = approved(sample_rt)
    scheduler.schedule(sample_rt, c.id, at=utcnow() + timedelta(hours=1), actor="marketer")
    with caplog.at_level(logging.INFO, logger="mailer.scheduler"):
        scheduler.Worker(sample_rt, name="w").run_campaign(c.id)
    text = caplog.text
    assert f"campaign {c.id} run 0: starting" in text
    assert f"campaign {c.id} run 0: finished, {len(sink.messages)} sent" in text and "status done" in text


def test_first_make_demo_says_it_is_installing(tmp_path: Path) -> None:
    res = subprocess.run(["make", "-n", "demo", f"VENV={tmp_path}/venv"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    assert "installing dependencies" in res.stdout


def test_the_send_bar_shows_counts_eta_and_the_freeze(mailer, sink, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    import mailer.cli.campaign_send as cs

    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    made = json.loads(mailer("campaign", "create", "--name", "N", "--template", str(ROOT / "templates/newsletter"),
                             "--segment", str(ROOT / "segments/newsletter.toml"), "--format", "json",
                             actor="marketer").stdout)
    cid = str(made["id"])
    assert mailer("campaign", "submit", cid, actor="marketer").exit_code == 0
    assert mailer("campaign", "approve", cid, actor="reviewer").exit_code == 0
    screen = io.StringIO()
    term = Console(file=screen, force_terminal=True, width=120, markup=False, emoji=False)
    monkeypatch.setattr(cs, "out", term)
    res = mailer("campaign", "send", cid)
    assert res.exit_code == 0, res.output
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "checking gates and freezing the audience" in shown
    n = len(sink.messages)
    assert re.search(rf"sending .*\b{n}/{n}\b", shown), shown[-2000:]
    assert "-:--:--" in shown or "0:00:0" in shown  # the ETA column
