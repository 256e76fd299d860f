"""Accounts for compliance tests: an administrator, a marketer (author), a reviewer, and
their API tokens, made through the accounts service like `mailer users add/token` do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailer.accounts import service
from mailer.accounts.permissions import Principal
from mailer.runtime import Runtime


@dataclass
class People:
    admin: Principal
    marketer: Principal
    reviewer: Principal
    reviewer2: Principal
    tokens: dict[str, str]


def people(rt: Runtime) -> People:
    info, _pw, _totp = service.create_account(rt, None, "admin", ["admin"])
    # The first administrator, as `mailer init` would sign it in (tests skip its TOTP dance).
    admin = Principal(info.id, info.name, frozenset({"admin"}), "service")
    tokens: dict[str, str] = {"admin": ""}
    found: dict[str, Principal] = {}
    for name, roles in (("marketer", ["marketer"]), ("compliance", ["reviewer"]), ("auditor", ["reviewer"])):
        service.create_account(rt, admin, name, roles)
        tok = service.issue_api_token(rt, admin, name)
        tokens[name] = tok.token
        found[name] = service.resolve_token(rt, tok.token)
    tok = service.issue_api_token(rt, admin, "admin")
    tokens["admin"] = tok.token
    return People(admin, found["marketer"], found["compliance"], found["auditor"], tokens)


def compliance_on(runtime_factory: Any, sink: Any = None, **extra: Any) -> Runtime:
    """A runtime with the TRN-1 training gate switched on (as config/mailer.example.toml does)."""
    over = {"compliance": {"training_required": True, "risk_assessment_required": False, **extra}}
    return runtime_factory(sink, **over)
