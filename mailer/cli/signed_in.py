"""Who acts, for the compliance-record commands (issue 17): an authenticated account.

Until the accounts CLI (issue 12, milestone 2) lands its session handling, the account is
the one whose API token is in $MAILER_TOKEN (`mailer users token NAME`). Nothing here reads
--actor or $MAILER_USER: those never choose who acts on these records. At merge, this one
function defers to the accounts CLI's principal resolver.
"""

from __future__ import annotations

import os

import typer

from mailer.accounts.permissions import Action, Principal, require
from mailer.cli.common import runtime


def principal(ctx: typer.Context, action: Action) -> Principal:
    """The signed-in account, checked against `action`; every entry this process writes names it."""
    from mailer.accounts.service import real_os_user, resolve_token

    rt = runtime(ctx)
    found = getattr(ctx.find_root().obj, "principal", None)  # set by a session-aware caller, if any
    token = os.environ.get("MAILER_TOKEN", "").strip()
    if found is None and token:
        found = resolve_token(rt, token, os_user=real_os_user())
    p = require(found, action)
    rt.act_as(p)
    return p
