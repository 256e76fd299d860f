"""Small helpers shared by the compliance records: dates, retention, the ledger entry."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection

from mailer.accounts.permissions import Action, Principal, require
from mailer.errors import InputError
from mailer.ledger import COMPLIANCE, Event
from mailer.retention import add_years
from mailer.runtime import Runtime

RETENTION_YEARS = 6  # AUTH-9 style: 164.530(j)(2), six years from creation or last effective date


def acting(principal: Principal | None, action: Action) -> Principal:
    """The authenticated account allowed to do `action` (SEC-1, SEC-10), or PermissionDenied."""
    return require(principal, action)


def parse_day(text: str, what: str) -> dt.datetime:
    """A calendar date (YYYY-MM-DD) as naive UTC midnight; a clear error otherwise."""
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time())
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a date", hint="write it as YYYY-MM-DD, e.g. 2026-11-30") from None


def retained_until(created: dt.datetime, last_effective: dt.datetime | None) -> dt.datetime:
    """Six years from creation or from the last effective date, whichever is later."""
    return add_years(max(created, last_effective or created), RETENTION_YEARS)


def record_event(rt: Runtime, conn: Connection, by: Principal, outcome: str, *, rules: tuple[str, ...] = (),
                 campaign_id: int | None = None, detail: dict[str, Any] | None = None) -> None:
    """One `compliance` ledger entry in the caller's transaction: ids, names and hashes only."""
    rt.ledger.append_in(conn, [Event(kind=COMPLIANCE, outcome=outcome, actor=by.name, campaign_id=campaign_id,
                                     rule_ids=rules, detail={**(detail or {}), "by": by.ledger_detail()})])


def iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds")
