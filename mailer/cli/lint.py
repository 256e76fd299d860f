"""`mailer lint PATH...`: the PHI lint with compiler-style output (issue 5).

Exit codes: 0 no unwaived errors, 1 errors, 2 a path or the config is unusable.
Output names files, codes and variables only, never a template or patient value.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mailer.config import load_settings
from mailer.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, MailerError
from mailer.lint import Finding, from_app_settings, has_errors, lint_paths
from mailer.rules import pointer


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def summary(findings: list[Finding], paths: int) -> str:
    errors = sum(1 for f in findings if f.blocking)
    warnings = sum(1 for f in findings if f.severity == "warning" and not f.waived)
    waived = sum(1 for f in findings if f.waived)
    return f"mailer lint: {errors} error(s), {warnings} warning(s), {waived} waived in {paths} path(s)"


def lint(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="template folders, folders of templates, or .j2 files")],
    output: Annotated[OutputFormat, typer.Option("--format", help="text (path:line:col: CODE message) or json")] = OutputFormat.text,
    config: Annotated[Path | None, typer.Option("--config", help="mailer config TOML (default: the global --config, else $MAILER_CONFIG)")] = None,
) -> None:
    """Lint templates for PHI leaks and CAN-SPAM essentials; exit 1 on unwaived errors."""
    config = config or getattr(ctx.find_root().obj, "config", None)  # `mailer --config X lint ...`
    missing = [p for p in paths if not p.exists()]
    if missing:
        for p in missing:
            typer.echo(f"mailer lint: {p}: no such file or folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        settings = from_app_settings(load_settings(config))
        findings = lint_paths(paths, settings)
    except MailerError as err:
        typer.echo(f"mailer lint: {err}", err=True)
        raise typer.Exit(err.exit_code) from None
    if output is OutputFormat.json:
        typer.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        for f in findings:
            typer.echo(f"{f.format()}; {pointer(f.rule)}")
    typer.echo(summary(findings, len(paths)), err=True)
    raise typer.Exit(EXIT_FAILURE if has_errors(findings) else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Called by mailer/cli/app.py's auto-discovery."""
    app.command("lint")(lint)
