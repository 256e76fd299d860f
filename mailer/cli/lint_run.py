"""`mailer lint` without typer: the command body, the watch loop and the fast entry point (issue 13).

mailer.cli.entry calls `main_fast` for `mailer lint ...`, so an editor or a pre-commit hook
pays only for argparse, the lint and its parsers; mailer.cli.lint wraps the same
`lint_command` as a typer command for `mailer --config X lint` and `mailer --help`.
Exit codes: 0 no unwaived errors, 1 errors, 2 a path or the config is unusable.
"""

from __future__ import annotations

import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.lint import Finding, LintSettings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2  # mirrors mailer.errors, without importing it


def echo(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


LINT_HELP = """Lint templates for PHI leaks and CAN-SPAM essentials; exit 1 on unwaived errors.

    Findings are `error` (blocks), `review` (a reviewer acknowledges each at approval)
    or `info` (advice).
    """


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def summary(findings: list[Finding], paths: int) -> str:
    errors = sum(1 for f in findings if f.blocking)
    review = sum(1 for f in findings if f.severity == "review" and not f.waived)
    info = sum(1 for f in findings if f.severity == "info" and not f.waived)
    waived = sum(1 for f in findings if f.waived)
    return (f"mailer lint: {errors} error(s), {review} to review, {info} info, {waived} waived "
            f"in {paths} path(s)")


NO_CONFIG_WARNING = (
    "mailer lint: warning: no config (--config or $MAILER_CONFIG): the center's own phone, address, "
    "website and staff are unknown, so the lint may report them as identifiers"
)


def _settings(config: Path | None) -> LintSettings:
    from mailer.lint.settings import LintSettings, from_config_file

    if config is None:
        echo(NO_CONFIG_WARNING, err=True)
        return LintSettings(configured=False)
    return from_config_file(config)


def _run(paths: list[Path], settings: LintSettings, output: OutputFormat) -> list[Finding]:
    from mailer.lint import lint_paths

    findings = lint_paths(paths, settings)
    if output is OutputFormat.json:
        import json

        echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        from mailer.rules import pointer

        for f in findings:
            echo(f"{f.format()}; {pointer(f.rule)}")  # where the rule is explained (issue 18)
    echo(summary(findings, len(paths)), err=True)
    return findings


def _mtimes(paths: list[Path]) -> dict[Path, float]:
    out: dict[Path, float] = {}
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            if f.name.endswith((".j2", ".toml")):
                try:
                    out[f] = f.stat().st_mtime
                except OSError:
                    continue
    return out


def _watch(paths: list[Path], settings: LintSettings, output: OutputFormat, interval: float) -> None:
    """Re-lint whenever a template file changes; Ctrl-C stops (exit 0)."""
    seen = _mtimes(paths)
    echo(f"mailer lint: watching {len(seen)} file(s); Ctrl-C to stop", err=True)
    try:
        while True:
            time.sleep(interval)
            now = _mtimes(paths)
            if now != seen:
                seen = now
                echo(f"--- {time.strftime('%H:%M:%S')} ---", err=True)
                _run(paths, settings, output)
    except KeyboardInterrupt:
        return


def lint_command(paths: list[Path], output: OutputFormat, config: Path | None, watch: bool) -> int:
    """The command itself, shared by the typer command and the fast entry point; the exit code."""
    config = config or _env_config()
    from mailer.errors import MailerError

    missing = [p for p in paths if not p.exists()]
    if missing:
        for p in missing:
            echo(f"mailer lint: {p}: no such file or folder", err=True)
        return EXIT_USAGE
    try:
        settings = _settings(config)
        findings = _run(paths, settings, output)
        if watch:
            _watch(paths, settings, output, interval=0.5)
    except MailerError as err:
        echo(f"mailer lint: {err}", err=True)
        return err.exit_code
    from mailer.lint import has_errors

    return EXIT_FAILURE if has_errors(findings) else EXIT_OK


def main_fast(argv: list[str]) -> None:
    """`mailer lint ...` with argparse instead of typer and no other command loaded.

    The same options as the typer command (which still serves `mailer --config X lint`
    and `mailer --help`); issue 13 asks for a start-up under 0.5 s.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="mailer lint", description=(LINT_HELP or "").split("\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="template folders, folders of templates, or .j2 files")
    ap.add_argument("--format", choices=("text", "json"), default="text", help="text (path:line:col: CODE message) or json")
    ap.add_argument("--config", type=Path, default=None, help="mailer config TOML (default: $MAILER_CONFIG)")
    ap.add_argument("--watch", action="store_true", help="keep running and lint again whenever a template file changes")
    args = ap.parse_args(argv[1:])
    sys.exit(lint_command(args.paths, OutputFormat(args.format), args.config or _env_config(), args.watch))



def _env_config() -> Path | None:
    value = os.environ.get("MAILER_CONFIG")
    return Path(value) if value else None
