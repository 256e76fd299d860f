"""`make demo`'s last step: accounts for the workspace and how to open it.

Creates a marketer and a reviewer (with a TOTP secret, SEC-7) in the demo's database,
each with a one-time password that must be changed at first sign-in, and prints the
command that serves the workspace. Demo data only: the passwords are shown on purpose.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from sqlalchemy import select

from mailer.accounts import service as accounts
from mailer.accounts.models import Account
from mailer.accounts.permissions import Principal
from mailer.config import load_settings
from mailer.runtime import Runtime

WEB_ACCOUNTS = (("web-marketer", ("marketer",)), ("web-reviewer", ("reviewer",)))


def _admin(rt: Runtime) -> Principal:
    """The installation's administrator (created here on a database without accounts)."""
    if accounts.count_accounts(rt) == 0:
        accounts.bootstrap_admin(rt)
    t = Account.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        for row in conn.execute(select(t).where(t.c.disabled.is_(False)).order_by(t.c.id)):
            roles = frozenset(r for r in row.roles.split(",") if r)
            if "admin" in roles:
                return Principal(row.id, row.name, roles, "service")
    raise RuntimeError("the demo database has no enabled administrator")


def demo_accounts(config: Path, console: Console) -> None:
    rt = Runtime(load_settings(config))
    try:
        by = _admin(rt)
        lines = []
        for name, roles in WEB_ACCOUNTS:
            otp: str | None
            if any(a.name == name for a in accounts.list_accounts(rt)):
                otp = accounts.reset_password(rt, by, name)
                enrol = accounts.enrol_totp(rt, by, name) if "reviewer" in roles else None
            else:
                _info, otp, enrol = accounts.create_account(rt, by, name, roles)
            code = f"; authenticator secret {enrol.secret}" if enrol else ""
            lines.append(f"  {name:13} ({', '.join(roles)}): one-time password {otp}{code}")
    finally:
        rt.dispose()
    console.print("\n[bold]Open the workspace[/] (marketers, staff and reviewers work here):")
    console.print(f"  mailer --config {config} serve --port 8080", markup=False)
    console.print("  then browse to http://127.0.0.1:8080/ and sign in as:", markup=False)
    for line in lines:
        console.print(line, markup=False)
    console.print("  (each password is changed at first sign-in; add the secret to an authenticator app, "
                  "or: python -c \"import pyotp; print(pyotp.TOTP('SECRET').now())\")", markup=False)
