"""Entry point: global options, then every command module found in mailer/cli/."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Annotated

import typer

import mailer.cli as cli_pkg
from mailer.cli.common import MailerGroup, setup_logging, state

app = typer.Typer(
    cls=MailerGroup,
    help="mailer: HIPAA-aware email campaigns. Sign in first (mailer login, or an API token in "
    "$MAILER_TOKEN): every action runs as your account. Exit codes: 0 ok, 1 failure or findings, "
    "2 usage or input error, 3 refused by a compliance rule (the rule ID is printed).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("mailer")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        typer.echo(f"mailer {v}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Settings file (default: $MAILER_CONFIG, else built-in defaults).", envvar="MAILER_CONFIG")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr (never PHI).")] = False,
    _show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
) -> None:
    st = state(ctx)
    st.config = config
    setup_logging(verbose)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name in ("app", "common"):
            continue
        module = importlib.import_module(f"mailer.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
