"""Shared CLI plumbing: the runtime for a command, consoles, and the one error handler."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mailer.config import load_settings
from mailer.errors import ComplianceRefusal, ImportRejected, MailerError
from mailer.redact import RedactingFilter
from mailer.rules import pointer
from mailer.runtime import Runtime

if TYPE_CHECKING:
    from mailer.accounts.permissions import Action, Principal

ENV_TOKEN = "MAILER_TOKEN"  # noqa: S105 - the variable's name, not a token

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class State:
    config: Path | None = None
    _runtime: Runtime | None = field(default=None, repr=False)
    _principal: Principal | None = field(default=None, repr=False)
    _resolved: bool = False

    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(load_settings(self.config))
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
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


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


def principal(ctx: typer.Context) -> Principal | None:
    """The signed-in account: $MAILER_TOKEN (an API token), else this user's `mailer login`
    session for this database, else None. A token that does not resolve is an error (exit 3)."""
    from mailer.accounts import service as accounts

    st = state(ctx)
    if not st._resolved:
        rt = st.runtime()
        token = os.environ.get(ENV_TOKEN, "").strip() or stored_session(rt)
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
    err.print(f"[bold red]error:[/] {e.message}", markup=True, highlight=False)
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


class MailerGroup(TyperGroup):
    """Maps MailerError to exit codes (2 input, 3 refused, 1 other) for every subcommand."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MailerError as e:
            report_error(e)
            raise typer.Exit(e.exit_code) from None
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
    return typer.Typer(help=help_text, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, add_completion=False)


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
