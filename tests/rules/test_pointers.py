"""Every refusal, lint finding and preflight line in text output ends by naming where its
rule is explained (`mailer rules ID`), and that command works."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from mailer.cli.app import app
from tests.conftest import ROOT
from tests.helpers_accounts import cli_env
from tests.helpers_workflow import AUTHOR, create, write_config

POINTER = re.compile(r"see mailer rules ((?:[A-Z]+-\d+[a-z]?)(?:, mailer rules [A-Z]+-\d+[a-z]?)*)$")


def _pointed(line: str) -> list[str]:
    m = POINTER.search(line)
    assert m, f"no pointer at the end of: {line!r}"
    return re.findall(r"[A-Z]+-\d+[a-z]?", m.group(1))


def _each_leads_somewhere(ids: set[str]) -> None:
    for rule_id in ids:
        res = CliRunner().invoke(app, ["rules", rule_id])
        assert res.exit_code == 0 and res.output.startswith(rule_id), rule_id


def test_preflight_lines_end_with_their_rule(sample_rt, tmp_path) -> None:
    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    c = create(sample_rt)
    res = CliRunner(env=cli_env(cfg, AUTHOR)).invoke(app, ["--config", str(cfg), "campaign", "check", str(c.id)])
    assert res.exit_code == 3
    gate_lines = [ln for ln in res.output.splitlines() if re.match(r"  (pass|FAIL|WARN)  ", ln)]
    assert len(gate_lines) == 13  # issue 15 added `files` and `login`; issue 17 `assets` (TST-5) and `risk` (RSK-1)
    seen: set[str] = set()
    for line in gate_lines:
        rule = line.split()[1]
        assert _pointed(line) == [rule]
        seen.add(rule)
    _each_leads_somewhere(seen)


def test_a_refusal_ends_with_its_rule(sample_rt, tmp_path) -> None:
    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    c = create(sample_rt)
    runner = CliRunner(env=cli_env(cfg, AUTHOR))  # the author's account holds the reviewer role too
    assert runner.invoke(app, ["--config", str(cfg), "campaign", "submit", str(c.id)]).exit_code == 0
    res = runner.invoke(app, ["--config", str(cfg), "campaign", "approve", str(c.id)])
    assert res.exit_code == 3
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    refusal = [ln for ln in lines if "refused by SEC-6" in ln]
    assert refusal, res.output
    last = lines[lines.index(refusal[0]) + 1] if "to satisfy it" in "".join(lines) else refusal[0]
    assert _pointed(last) == ["SEC-6"]
    _each_leads_somewhere({"SEC-6"})


def test_lint_findings_end_with_their_rule(tmp_path) -> None:
    corpus = ROOT / "tests" / "lint" / "corpus"
    folders = sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith("clean"))[:12]
    res = CliRunner().invoke(app, ["lint", *map(str, folders)])
    finding_lines = [ln for ln in res.output.splitlines() if re.match(r"\S+:\d+:\d+: [A-Z]+\d{3} ", ln)]
    assert finding_lines, res.output
    seen: set[str] = set()
    for line in finding_lines:
        ids = _pointed(line)
        assert len(ids) == 1
        seen.update(ids)
    _each_leads_somewhere(seen)
