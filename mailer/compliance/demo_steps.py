"""`make demo`'s issue-17 block: the accounts it acts as, and their API tokens.

The demo is the program vouching for itself in a scratch folder: it makes (or reuses) an
administrator, the marketer who authors campaigns and the compliance reviewer, and hands
back API tokens so the compliance-record commands run as those accounts (MAILER_TOKEN).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from mailer.accounts import service
from mailer.accounts.models import Account
from mailer.accounts.permissions import Principal
from mailer.config import load_settings
from mailer.runtime import Runtime

PEOPLE = (("marketer", ["marketer"]), ("compliance", ["reviewer"]))


def demo_tokens(config: Path) -> dict[str, str]:
    rt = Runtime(load_settings(config))
    try:
        acc = Account.__table__  # type: ignore[attr-defined]
        with rt.engine.connect() as conn:
            empty = not conn.execute(select(func.count()).select_from(acc)).scalar()
        if empty:
            service.create_account(rt, None, "admin", ["admin"])
        admin_row = next(a for a in service.list_accounts(rt) if "admin" in a.roles and not a.disabled)
        admin = Principal(admin_row.id, admin_row.name, frozenset({"admin"}), "service", service.real_os_user())
        names = {a.name for a in service.list_accounts(rt)}
        tokens = {"admin": service.issue_api_token(rt, admin, admin_row.name, label="demo").token}
        for name, roles in PEOPLE:
            if name not in names:
                service.create_account(rt, admin, name, roles)
            tokens[name] = service.issue_api_token(rt, admin, name, label="demo").token
        return tokens
    finally:
        rt.dispose()
