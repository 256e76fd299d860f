"""`mailer lint PATH...`: the PHI lint with compiler-style output (issues 5 and 13).

The body lives in mailer.cli.lint_run (no typer), which `mailer lint` reaches directly
for a fast start; this module registers the same command in the full CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.lint_run import LINT_HELP, OutputFormat, lint_command, summary

__all__ = ["OutputFormat", "lint", "register", "summary"]


def lint(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="template folders, folders of templates, or .j2 files")],
    output: Annotated[OutputFormat, typer.Option("--format", help="text (path:line:col: CODE message) or json")] = OutputFormat.text,
    config: Annotated[Path | None, typer.Option("--config", help="mailer config TOML (default: the global --config, else $MAILER_CONFIG)")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="keep running and lint again whenever a template file changes")] = False,
) -> None:
    """Lint templates for PHI leaks and CAN-SPAM essentials; exit 1 on unwaived errors.

    Findings are `error` (blocks), `review` (a reviewer acknowledges each at approval)
    or `info` (advice).
    """
    root_obj = ctx.find_root().obj
    config = config or getattr(root_obj, "config", None)  # `mailer --config X lint ...`
    raise typer.Exit(lint_command(paths, output, config, watch))


lint.__doc__ = LINT_HELP


def register(app: typer.Typer) -> None:
    """Called by mailer/cli/app.py's auto-discovery."""
    app.command("lint")(lint)
