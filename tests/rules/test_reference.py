"""The rule reference stays complete and true: every ID the code cites is explained, and
nothing is explained that the code does not cite."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailer import rules
from mailer.cli.app import app
from tests.conftest import ROOT

REFERENCE = "mailer/rules/reference.toml"
REGENERATE = "mailer rules --format markdown > docs/rules.md"


def cited() -> dict[str, list[str]]:
    """Rule ID -> where the code cites it (file:line), outside the reference itself."""
    where: dict[str, list[str]] = defaultdict(list)
    files = [*ROOT.joinpath("mailer").rglob("*.py"), *ROOT.joinpath("config").glob("*.toml"),
             *ROOT.joinpath("templates").rglob("*.toml")]
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("mailer/rules/"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for rule_id in rules.RULE_ID.findall(line):
                if rule_id not in rules.NOT_RULES:
                    where[rule_id].append(f"{rel}:{n}")
    return where


def test_every_rule_id_the_code_cites_is_in_the_reference() -> None:
    missing = {rid: places for rid, places in cited().items() if rid not in rules.load()}
    assert not missing, "\n".join(
        f"{places[0]} cites {rid} ({len(places)} place(s)), which {REFERENCE} lacks: add a [\"{rid}\"] table "
        f"there with title, source, enforces and satisfy (source and wording: the rule set, rules.md), "
        f"then run `{REGENERATE}`"
        for rid, places in sorted(missing.items()))


def test_the_reference_lists_no_rule_that_nothing_cites() -> None:
    used = cited()
    unused = [rid for rid in rules.load() if rid not in used]
    assert not unused, "\n".join(
        f"{REFERENCE} explains {rid}, which no code cites: remove its table (or cite it where it is "
        f"enforced), then run `{REGENERATE}`" for rid in unused)


def test_docs_rules_md_is_generated_from_the_reference() -> None:
    on_disk = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert on_disk == rules.render_markdown() + "\n" or on_disk == rules.render_markdown(), \
        f"docs/rules.md is out of date: run `{REGENERATE}`"
    for rid in rules.load():
        assert f"### {rid}: " in on_disk


def test_mailer_rules_id_prints_the_rule_with_its_source_and_fix() -> None:
    res = CliRunner().invoke(app, ["rules", "SEC-6"])
    assert res.exit_code == 0
    assert res.output.startswith("SEC-6  ")
    assert "164.312(c)" in res.output and "to satisfy it:" in res.output


def test_mailer_rules_lists_every_rule() -> None:
    res = CliRunner().invoke(app, ["rules"])
    assert res.exit_code == 0
    listed = [line.split()[0] for line in res.output.splitlines() if line.startswith("  ")]
    assert listed == list(rules.load())


def test_an_unknown_id_exits_2_with_the_nearest_ids() -> None:
    res = CliRunner().invoke(app, ["rules", "SEC-66"])
    assert res.exit_code == 2
    assert "no rule 'SEC-66'" in res.output and "SEC-6" in res.output


def test_every_entry_says_what_is_enforced_and_how_to_pass() -> None:
    for rule in rules.load().values():
        assert len(rule.enforces) > 40 and len(rule.satisfy) > 10 and rule.source, rule.id


@given(st.sampled_from(sorted(rules.load())), st.data())
def test_any_letter_case_finds_the_rule(rule_id: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(rule_id), max_size=len(rule_id)))
    typed = "".join(c.swapcase() if f else c for c, f in zip(rule_id, flips, strict=True))
    found = rules.get(f"  {typed} ")
    assert found is not None and found.id == rule_id


def test_the_scan_sees_ids_in_every_form_the_code_writes_them(tmp_path: Path) -> None:
    line = 'Refusal("MKT-2c", ...)  # SEG-3, AUTH-7; SEND-1/TLS-1..TLS-4; UTF-8 and SHA-256 are not rules'
    found = [r for r in rules.RULE_ID.findall(line) if r not in rules.NOT_RULES]
    assert found == ["MKT-2c", "SEG-3", "AUTH-7", "SEND-1", "TLS-1", "TLS-4"]
