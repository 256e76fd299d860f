"""Signed-in principals and CLI environments for tests (issue 12).

    principal(rt, "mia", "marketer")      -> a real account's Principal (created on first use)
    token(rt, "mia", "marketer")          -> an API token for it (use as MAILER_TOKEN)
    cli_env(config_path, "mia", ...)      -> {"MAILER_TOKEN": ...} for CliRunner.invoke(env=...)
    sign_in(rt, "mia", "marketer")        -> the Principal, and rt.act_as(it) (ledger entries name it)

Accounts are real rows made through mailer.accounts.service: the first administrator is
bootstrapped if the database has none, and acts (via "service") to create the others.
Roles default to every person role, for tests about something other than permissions;
tests about permissions pass the roles they mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailer.accounts import service as accounts
from mailer.accounts.models import Account
from mailer.accounts.permissions import PERSON_ROLES, Principal
from mailer.runtime import Runtime

_TOKENS: dict[tuple[str, str], str] = {}


def admin(rt: Runtime) -> Principal:
    """The first administrator (bootstrapped when there is none), as the program vouches for it."""
    if accounts.count_accounts(rt) == 0:
        accounts.bootstrap_admin(rt)
    with rt.engine.connect() as conn:
        rows = conn.execute(select(Account.__table__).order_by(Account.__table__.c.id)).all()  # type: ignore[attr-defined]
    row = next(r for r in rows if "admin" in r.roles.split(",") and not r.disabled)
    return Principal(row.id, row.name, frozenset(row.roles.split(",")), "service")


def ensure(rt: Runtime, name: str, *roles: str) -> None:
    """Create the account if it does not exist (roles default to every person role)."""
    key = name.strip().lower()
    boss = admin(rt)  # bootstraps the first administrator first: it may be the account asked for
    with rt.engine.connect() as conn:
        exists = conn.execute(select(Account.__table__.c.id).where(Account.__table__.c.name == key)).first()  # type: ignore[attr-defined]
    if exists is None:
        accounts.create_account(rt, boss, key, roles or PERSON_ROLES)


def token(rt: Runtime, name: str, *roles: str) -> str:
    """An API token for the account (one per database and account, reused)."""
    cache = (rt.settings.database.url, name.strip().lower())
    if cache not in _TOKENS:
        ensure(rt, name, *roles)
        _TOKENS[cache] = accounts.issue_api_token(rt, admin(rt), name, label="test").token
    return _TOKENS[cache]


def principal(rt: Runtime, name: str, *roles: str) -> Principal:
    """The Principal of a real, token-authenticated account."""
    return accounts.resolve_token(rt, token(rt, name, *roles), os_user=accounts.real_os_user())


def sign_in(rt: Runtime, name: str, *roles: str) -> Principal:
    p = principal(rt, name, *roles)
    rt.act_as(p)
    return p


def runtime_for(config: Path) -> Runtime:
    from mailer.config import load_settings

    return Runtime(load_settings(config))


def cli_env(config: Path, name: str | None, *roles: str) -> dict[str, Any]:
    """Environment for a CLI call as `name` (None: nobody signed in). Needs `mailer init` done
    (a key file and a migrated database); before that it signs nobody in."""
    if name is None:
        return {"MAILER_TOKEN": ""}
    rt = runtime_for(config)
    try:
        if not rt.settings.keys.file.exists():
            return {"MAILER_TOKEN": ""}
        rt.migrate()
        return {"MAILER_TOKEN": token(rt, name, *roles)}
    finally:
        rt.dispose()
