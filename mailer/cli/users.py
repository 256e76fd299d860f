"""`mailer users ...`, `mailer login`, `mailer logout`, `mailer whoami`: accounts and sign-in.

Thin: every decision is in mailer.accounts.service. Secrets shown once (one-time
passwords, TOTP secrets, API tokens) go to standard output and nowhere else.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from mailer.accounts import service as accounts
from mailer.accounts.permissions import ROLES, Action, Principal
from mailer.cli.common import (
    ENV_TOKEN,
    ENV_TOKEN_FILE,
    err,
    forget_session,
    new_app,
    out,
    principal,
    print_json,
    runtime,
    save_session,
    stored_session,
)
from mailer.errors import EXIT_FAILURE, InputError

users_app = new_app("Accounts and roles (admin only): add, list, disable, enable, reset passwords, "
                    f"set roles, issue API tokens. Roles: {', '.join(ROLES)}.")

RoleOpt = Annotated[list[str], typer.Option("--role", "-r", help=f"A role (repeat for several): {', '.join(ROLES)}.")]


def _admin(ctx: typer.Context) -> Principal:
    from mailer.cli.common import act

    act(ctx, Action.USERS_MANAGE)
    p = principal(ctx)
    assert p is not None
    return p


def show_one_time_password(name: str, otp: str) -> None:
    out.print(f"one-time password for {name}: {otp}", markup=False)
    out.print("  hand it over privately; it must be changed at the first sign-in (mailer login)", markup=False)


def show_totp(enrol: accounts.TotpEnrolment | None) -> None:
    """The TOTP secret as text and as a terminal QR code, for an authenticator app (SEC-7)."""
    if enrol is None:
        return
    import io

    import qrcode

    out.print(f"TOTP secret for {enrol.account}: {enrol.secret}", markup=False)
    out.print(f"  or scan: {enrol.uri}", markup=False)
    qr = qrcode.QRCode(border=1)
    qr.add_data(enrol.uri)
    buf = io.StringIO()
    qr.print_ascii(out=buf, invert=True)
    sys.stdout.write(buf.getvalue())
    sys.stdout.flush()


@users_app.command("add")
def add(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Account name (lower case).")],
        role: RoleOpt) -> None:
    """Create an account. People get a one-time password; admin and reviewer also a TOTP
    secret (text and QR code). A `service` account (the worker) signs in with a token only."""
    by = _admin(ctx)
    info, otp, enrol = accounts.create_account(runtime(ctx), by, name, role)
    out.print(f"created account {info.name} ({', '.join(info.roles)})", markup=False)
    if otp:
        show_one_time_password(info.name, otp)
    show_totp(enrol)
    if not otp:
        out.print(f"a service account signs in with a token: mailer users token {info.name}", markup=False)


@users_app.command("list")
def list_cmd(ctx: typer.Context,
             fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text") -> None:
    """Every account: roles, state, second factor, active tokens. No secrets."""
    _admin(ctx)
    rows = accounts.list_accounts(runtime(ctx))
    if fmt == "json":
        print_json([{"id": a.id, "name": a.name, "roles": list(a.roles), "disabled": a.disabled, "locked": a.locked,
                     "must_change_password": a.must_change_password, "totp": a.has_totp,
                     "active_tokens": a.active_tokens} for a in rows])
        return
    from rich.table import Table

    t = Table()
    for col in ("id", "name", "roles", "state", "totp", "tokens"):
        t.add_column(col)
    for a in rows:
        state = "disabled" if a.disabled else "locked" if a.locked else \
            "must change password" if a.must_change_password else "active"
        t.add_row(str(a.id), a.name, ", ".join(a.roles), state, "yes" if a.has_totp else "no", str(a.active_tokens))
    out.print(t)


@users_app.command("disable")
def disable(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Disable an account: it cannot sign in, and its tokens and sessions stop at once."""
    info = accounts.set_disabled(runtime(ctx), _admin(ctx), name, True)
    out.print(f"disabled {info.name}; its tokens and sessions are revoked", markup=False)


@users_app.command("enable")
def enable(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Enable a disabled account (its old tokens stay revoked)."""
    info = accounts.set_disabled(runtime(ctx), _admin(ctx), name, False)
    out.print(f"enabled {info.name}", markup=False)


@users_app.command("reset-password")
def reset_password(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """A new one-time password (also unlocks a locked account and ends its sessions)."""
    otp = accounts.reset_password(runtime(ctx), _admin(ctx), name)
    show_one_time_password(name.strip().lower(), otp)


@users_app.command("roles")
def roles(ctx: typer.Context, name: Annotated[str, typer.Argument()], role: RoleOpt) -> None:
    """Replace an account's roles. Gaining admin or reviewer enrols a TOTP secret if it has none."""
    info, enrol = accounts.set_roles(runtime(ctx), _admin(ctx), name, role)
    out.print(f"{info.name}: roles now {', '.join(info.roles)}", markup=False)
    show_totp(enrol)


@users_app.command("token")
def token(ctx: typer.Context, name: Annotated[str, typer.Argument()],
          days: Annotated[int | None, typer.Option("--days", min=1, help="Lifetime (default: accounts.api_token_days).")] = None,
          label: Annotated[str, typer.Option("--label", help="What it is for (shown in the ledger).")] = "",
          revoke: Annotated[int | None, typer.Option("--revoke", help="Revoke this token id instead.")] = None,
          revoke_all: Annotated[bool, typer.Option("--revoke-all", help="Revoke every token and session of the account.")] = False,
          out_file: Annotated[Path | None, typer.Option("--out", help="Write the token to this file (mode 0600, "
                                                        "replaced atomically) instead of printing it; point "
                                                        "MAILER_TOKEN_FILE at it.")] = None,
          ) -> None:
    """Issue an API token for an account (use it as MAILER_TOKEN, or write it with --out for
    MAILER_TOKEN_FILE), or revoke tokens."""
    rt = runtime(ctx)
    by = _admin(ctx)
    if revoke is not None or revoke_all:
        n = accounts.revoke_tokens(rt, by, name, token_id=revoke)
        out.print(f"revoked {n} token(s) of {name.strip().lower()}", markup=False)
        return
    if out_file is not None and not out_file.parent.is_dir():
        raise InputError(f"--out {out_file}: the folder {out_file.parent} does not exist",
                         hint="create it first, or give a path in an existing folder")
    tok = accounts.issue_api_token(rt, by, name, label=label, days=days)
    if out_file is None:
        sys.stdout.write(tok.token + "\n")
        where = f"shown once. Use it as {ENV_TOKEN}"
    else:
        write_secret(out_file, tok.token + "\n")
        where = f"written to {out_file} (mode 0600). Use it as {ENV_TOKEN_FILE}={out_file}"
    err.print(f"token {tok.id} for {tok.account}, valid until {tok.expires_at:%Y-%m-%d %H:%M} UTC; {where}; "
              f"revoke with mailer users token {tok.account} --revoke {tok.id}", markup=False)


def write_secret(path: Path, text: str) -> None:
    """Write a secret readable by its owner only, atomically: a reader sees the old file or
    the whole new one, never a half-written token or a moment of wider permissions."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # created 0600
    except OSError as e:
        raise InputError(f"--out {path}: cannot write there ({e.strerror})",
                         hint="choose a folder this user may write") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"--out {path}: cannot write there ({e.strerror})",
                         hint="choose a path this user may write, not a folder") from None


@users_app.command("totp")
def totp(ctx: typer.Context, name: Annotated[str | None, typer.Argument(help="Account (default: your own).")] = None) -> None:
    """Enrol a new TOTP secret (your own account, or any account for an admin); the old one stops working."""
    from mailer.accounts.permissions import require

    p = principal(ctx)
    if p is None:
        require(None, Action.USERS_MANAGE)  # raises: nobody is signed in (SEC-1)
    assert p is not None
    show_totp(accounts.enrol_totp(runtime(ctx), p, name or p.name))


@users_app.command("password")
def password(ctx: typer.Context,
             password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the current password, then the "
                                                          "new one, from two lines of standard input.")] = False) -> None:
    """Change your own password (any signed-in account); your other sessions end."""
    from mailer.accounts.permissions import require

    p = principal(ctx)
    if p is None:
        require(None, Action.USERS_MANAGE)  # raises: nobody is signed in (SEC-1)
    assert p is not None
    if password_stdin:
        lines = _stdin_lines() + ["", ""]
        current, new = lines[0], lines[1]
    else:
        current = typer.prompt("current password", hide_input=True)
        new = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    accounts.change_password(runtime(ctx), p, current, new)
    out.print(f"password of {p.name} changed; sign in again with mailer login", markup=False)


def _stdin_lines() -> list[str]:
    return [line.rstrip("\r\n") for line in sys.stdin.readlines()]


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")

    @app.command("login")
    def login(ctx: typer.Context,
              user: Annotated[str | None, typer.Option("--user", "-u", help="Account name (prompted if absent).")] = None,
              password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of "
                                                           "standard input (a first sign-in reads the new password from the second).")] = False,
              totp_code: Annotated[str | None, typer.Option("--totp", help="The current code of your authenticator app.")] = None,
              ) -> None:
        """Sign in (password, plus a TOTP code for admin and reviewer accounts) and keep a
        short-lived session token in a 0600 file in your config folder ($XDG_CONFIG_HOME/mailer)."""
        rt = runtime(ctx)
        os_user = accounts.real_os_user()
        new_password = ""
        if password_stdin:
            if not user:
                raise InputError("--password-stdin needs --user NAME")
            lines = _stdin_lines()
            password = lines[0] if lines else ""
            new_password = lines[1] if len(lines) > 1 else ""
        else:
            user = user or typer.prompt("account")
            password = typer.prompt("password", hide_input=True)
            if totp_code is None:
                totp_code = typer.prompt("TOTP code (empty if your account has none)", default="",
                                         show_default=False)
        sign = accounts.authenticate(rt, user, password, totp_code or None, os_user=os_user)
        if sign.must_change_password:
            if not new_password and not password_stdin:
                out.print("this is a first sign-in (or a reset): choose a new password", markup=False)
                new_password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
            if not new_password:
                raise InputError("the password must be changed at this sign-in",
                                 hint="run mailer login interactively, or give the new password as the second "
                                      "line of standard input")
            accounts.change_password(rt, sign.principal, password, new_password)
            sign = accounts.SignIn(sign.principal, False)
            out.print("password changed", markup=False)
        tok = accounts.open_session(rt, sign, os_user=os_user)
        path = save_session(rt, tok.token)
        cfg = rt.settings.accounts
        p = sign.principal
        out.print(f"signed in as {p.name} ({', '.join(sorted(p.roles))}); the session ends after "
                  f"{cfg.session_idle_minutes} minutes unused or {cfg.session_max_hours} hours (kept in {path})",
                  markup=False)

    @app.command("logout")
    def logout(ctx: typer.Context) -> None:
        """End this database's session (the token is revoked, not just forgotten)."""
        rt = runtime(ctx)
        tok = stored_session(rt)
        closed = accounts.close_session(rt, tok) if tok else False
        forget_session(rt)
        out.print("signed out" if closed else "no open session", markup=False)

    @app.command("whoami")
    def whoami(ctx: typer.Context,
               fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text") -> None:
        """Who this command would act as: account, roles, how it signed in, OS user."""
        p = principal(ctx)
        if p is None:
            err.print("not signed in: mailer login (scripts: MAILER_TOKEN)", markup=False)
            raise typer.Exit(EXIT_FAILURE)
        if fmt == "json":
            print_json({"account": p.name, "account_id": p.account_id, "roles": sorted(p.roles), "via": p.via,
                        "os_user": p.os_user})
        else:
            out.print(f"{p.name} ({', '.join(sorted(p.roles))}) via {p.via}; OS user {p.os_user}", markup=False)
