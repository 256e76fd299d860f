"""Shared CLI plumbing: the runtime for a command, consoles, and the one error handler."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mailer.config import load_settings
from mailer.errors import ComplianceRefusal, ImportRejected, MailerError
from mailer.private_files import write_private
from mailer.redact import RedactingFilter
from mailer.rules import pointer
from mailer.runtime import Runtime

if TYPE_CHECKING:
    from mailer.accounts.permissions import Action, Principal

ENV_TOKEN = "MAILER_TOKEN"  # noqa: S105 - the variable's name, not a token
ENV_TOKEN_FILE = "MAILER_TOKEN_FILE"  # noqa: S105 - a file holding the token (a mounted secret)

# User text (campaign names, file names, values in errors) is printed literally: no rich
# markup, no emoji codes, so a name like "[/]" or ":x:" prints as typed and breaks nothing.
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False,
              width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


@dataclass
class State:
    config: Path | None = None
    _runtime: Runtime | None = field(default=None, repr=False)
    _principal: Principal | None = field(default=None, repr=False)
    _resolved: bool = False

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


# -- who acts (issue 12): an authenticated account, never a name someone typed ---------------
def session_file() -> Path:
    """Where `mailer login` keeps session tokens: $XDG_CONFIG_HOME/mailer/session.json (0600)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mailer" / "session.json"


def _database_key(rt: Runtime) -> str:
    """Sessions are per database: one file can hold sessions for several configs."""
    return hashlib.sha256(rt.settings.database.url.encode()).hexdigest()[:16]


def _read_sessions() -> dict[str, str]:
    try:
        data = json.loads(session_file().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_sessions(data: dict[str, str]) -> None:
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, json.dumps(data).encode())


def save_session(rt: Runtime, token: str) -> Path:
    data = _read_sessions()
    data[_database_key(rt)] = token
    _write_sessions(data)
    return session_file()


def stored_session(rt: Runtime) -> str | None:
    return _read_sessions().get(_database_key(rt))


def forget_session(rt: Runtime) -> None:
    data = _read_sessions()
    if data.pop(_database_key(rt), None) is not None:
        _write_sessions(data)


def env_token() -> str:
    """The API token from the environment: $MAILER_TOKEN, else the first line of the file
    $MAILER_TOKEN_FILE names (a secret mounted read-only, e.g. the worker's in Docker)."""
    from mailer.errors import InputError

    token = os.environ.get(ENV_TOKEN, "").strip()
    path = os.environ.get(ENV_TOKEN_FILE, "").strip()
    if token or not path:
        return token
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise InputError(f"{ENV_TOKEN_FILE}={path}: cannot read the token file ({reason})",
                         hint="write it with mailer users token NAME --out FILE, readable by this user") from None
    if not token:
        raise InputError(f"{ENV_TOKEN_FILE}={path}: the token file is empty",
                         hint="write it with mailer users token NAME --out FILE")
    return token


def principal(ctx: typer.Context) -> Principal | None:
    """The signed-in account: $MAILER_TOKEN (an API token) or the token in $MAILER_TOKEN_FILE,
    else this user's `mailer login` session for this database, else None. A token that does
    not resolve is an error (exit 3); an unreadable token file is one line (exit 2)."""
    from mailer.accounts import service as accounts

    st = state(ctx)
    if not st._resolved:
        rt = st.runtime()
        token = env_token() or stored_session(rt)
        st._principal = accounts.resolve_token(rt, token, os_user=accounts.real_os_user()) if token else None
        st._resolved = True
        rt.act_as(st._principal)
    return st._principal


def act(ctx: typer.Context, action: Action) -> str:
    """Check that the signed-in account may do `action` (recording a refusal), make it the
    actor of every ledger entry this command writes, and return its name."""
    from mailer.accounts import service as accounts
    from mailer.accounts.permissions import PermissionDenied, require

    p = principal(ctx)
    try:
        require(p, action)
    except PermissionDenied as e:
        accounts.record_denied(runtime(ctx), p, action, e.rules[0])
        raise
    assert p is not None
    return p.name


def signed_in(ctx: typer.Context, action: Action) -> Principal:
    """`act`, returning the account itself: for services that take a Principal (issue 17's records)."""
    act(ctx, action)
    p = principal(ctx)
    assert p is not None
    return p


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
            err.print(f"  refused by {r.rule}{who}: {r.reason}" + ("" if r.fix else f"; {pointer(r.rule)}"),
                      markup=False)
            if r.fix:
                err.print(f"    to satisfy it: {r.fix}; {pointer(r.rule)}", markup=False)
    elif e.rules:
        err.print(f"  rule: {', '.join(e.rules)}; {pointer(*e.rules)}", markup=False)
    if e.hint and not isinstance(e, ComplianceRefusal):
        err.print(f"  fix: {e.hint}", markup=False)


#: The order `mailer --help` lists commands in: setup, data, content, campaigns, records, running.
COMMAND_ORDER = ("init", "login", "logout", "whoami", "users", "contacts", "authorizations", "segment", "lint",
                 "preview", "campaign", "bounces", "ledger", "training", "assets", "risk", "complaints", "review",
                 "keys", "dkim", "vendors", "migrate", "worker", "serve", "sink", "rules", "demo")
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
        finally:
            anchor_ledger(ctx.obj)


def anchor_ledger(st: Any) -> None:
    """After a command that wrote to the ledger: anchor its head outside the database (SEC-5)."""
    rt = st._runtime if isinstance(st, State) else None
    if rt is None or "ledger" not in rt.__dict__ or not rt.ledger.appended:
        return
    from sqlalchemy.exc import SQLAlchemyError

    try:
        rt.ledger.anchor()
    except (MailerError, OSError, SQLAlchemyError) as e:
        err.print(f"warning: could not anchor the ledger head outside the database: "
                  f"{getattr(e, 'message', None) or e}", markup=False)


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
