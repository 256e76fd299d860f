"""Shared CLI plumbing: the runtime for a command, consoles, and the one error handler."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mailer.config import load_settings
from mailer.errors import ComplianceRefusal, ImportRejected, MailerError
from mailer.redact import RedactingFilter
from mailer.runtime import Runtime

# User text (campaign names, file names, values in errors) is printed literally: no rich
# markup, no emoji codes, so a name like "[/]" or ":x:" prints as typed and breaks nothing.
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False,
              width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


@dataclass
class State:
    config: Path | None = None
    actor: str | None = None
    _runtime: Runtime | None = field(default=None, repr=False)

    initialising: bool = False

    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(load_settings(self.config), initialising=self.initialising)
        return self._runtime


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def runtime(ctx: typer.Context) -> Runtime:
    return state(ctx).runtime()


def actor(ctx: typer.Context, given: str | None = None) -> str:
    """Who acts (SEC-1): --actor, else $MAILER_USER, else the OS user."""
    import getpass
    import os

    return given or state(ctx).actor or os.environ.get("MAILER_USER") or getpass.getuser()


def report_error(e: MailerError) -> None:
    """One place that prints errors: message, rule IDs, the fix, never PHI."""
    from rich.text import Text

    err.print(Text.assemble(("error:", "bold red"), " ", e.message))
    if isinstance(e, ImportRejected):
        for p in e.problems[:200]:
            err.print(f"  {e.path}:{p.line}: {p.field}: {p.reason}", markup=False)
        if len(e.problems) > 200:
            err.print(f"  ... and {len(e.problems) - 200} more", markup=False)
    if isinstance(e, ComplianceRefusal):
        for r in e.refusals:
            who = f" ({r.count} contact(s))" if r.count is not None else ""
            err.print(f"  refused by {r.rule}{who}: {r.reason}", markup=False)
            if r.fix:
                err.print(f"    to satisfy it: {r.fix}", markup=False)
    elif e.rules:
        err.print(f"  rule: {', '.join(e.rules)}", markup=False)
    if e.hint and not isinstance(e, ComplianceRefusal):
        err.print(f"  fix: {e.hint}", markup=False)


#: The order `mailer --help` lists commands in: setup, data, content, campaigns, records, running.
COMMAND_ORDER = ("init", "contacts", "authorizations", "segment", "lint", "preview", "campaign", "ledger",
                 "keys", "dkim", "vendors", "worker", "serve", "sink", "rules", "demo")
#: `mailer campaign --help`: the lifecycle first, then following and fixing a run.
CAMPAIGN_ORDER = ("create", "submit", "review", "approve", "reject", "check", "send", "schedule", "list", "status",
                  "pause", "resume", "cancel", "resend", "retry-failed", "freeze")
_METAVARS = {"fmt": "text|json", "since": "DATE", "until": "DATE", "before": "DATE", "at": "TIME", "cron": "EXPR", "format": "text|json",
             "quarter": "QUARTER", "campaign": "ID", "contact": "ID", "campaign_id": "ID", "limit": "N", "n": "N",
             "out_file": "FILE", "config": "FILE", "file": "FILE", "template": "FOLDER", "segment": "FILE",
             "dry_run": "FOLDER", "kind": "KIND", "outcome": "OUTCOME", "scope": "SCOPE", "types": "TYPE"}


def _humanize(cmd: Any) -> None:
    """Help shows words (ID, FILE, DATE, text|json), never Python type names like <int>."""
    for p in getattr(cmd, "params", []):
        if getattr(p, "is_flag", False) or getattr(p, "count", False):
            continue
        name = p.name or ""
        word = _METAVARS.get(name) or name.upper()
        if p.param_type_name == "argument":
            p.metavar = word
            p.display_type_rich = lambda ctx: None  # the name says it; no "<int>" after it
        else:
            p.metavar = word
    for sub in getattr(cmd, "commands", {}).values():
        _humanize(sub)


class MailerGroup(TyperGroup):
    """Maps MailerError to exit codes (2 input, 3 refused, 1 other) for every subcommand;
    lists commands in a sensible order with their whole one-line description."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _humanize(self)

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        order = COMMAND_ORDER if "init" in names else CAMPAIGN_ORDER if "send" in names else ()
        if order:
            rank = {n: i for i, n in enumerate(order)}
            names.sort(key=lambda n: (rank.get(n, len(rank)), n))
        return names

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            rows.append((name, cmd.get_short_help_str(limit=300)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MailerError as e:
            report_error(e)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a file or folder this user cannot use: name it (exit 2)
            if not e.filename:
                raise
            what = e.strerror or type(e).__name__
            if isinstance(e, FileExistsError | NotADirectoryError):
                what = f"{what} (a file is in the way of a folder on that path)"
            err.print(f"error: {e.filename}: {what}", markup=False)
            err.print("  fix: give this user access to that path, or point the setting at another one", markup=False)
            raise typer.Exit(2) from None
        except Exception as e:  # noqa: BLE001 - no traceback reaches a user; --verbose logs it
            if type(e).__module__.split(".")[0] in ("typer", "click"):  # exits, usage errors, aborts
                raise
            logging.getLogger("mailer").info("unexpected error", exc_info=True)
            err.print(f"error: unexpected {type(e).__name__} (a bug in mailer: please report it; "
                      f"run with --verbose for details)", markup=False)
            raise typer.Exit(1) from None


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(cls=MailerGroup, help=help_text, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, add_completion=False)


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


FormatOpt = Annotated[str, typer.Option("--format", help="text or json.")]


def check_format(fmt: str) -> None:
    """One spelling for every reporting command: --format text|json."""
    if fmt not in ("text", "json"):
        from mailer.errors import InputError

        raise InputError(f"format {fmt!r} is not supported", hint="--format text or --format json")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
