"""Browser sessions, server-side (SEC-3 automatic logoff, SEC-5 audit): open, resolve, end.

The cookie carries a 256-bit random id; the table keeps its SHA-256. A session ends when
it is idle for `web.idle_timeout` seconds, `web.absolute_timeout` seconds after sign-in,
when its account is disabled, or on sign-out. Every end and every sign-in is an `access`
ledger entry; the account service already records failed sign-ins and lockouts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select

from mailer.accounts.models import Account
from mailer.accounts.permissions import Principal
from mailer.accounts.service import SignIn
from mailer.crypto import token_hash
from mailer.db import writing
from mailer.ledger import ACCESS, Event
from mailer.models import utcnow
from mailer.runtime import Runtime
from mailer.web.workspace.models import WebSession

_S = WebSession.__table__  # type: ignore[attr-defined]
_ACC = Account.__table__  # type: ignore[attr-defined]
FULL, PASSWORD = "full", "password"
_TOUCH_EVERY = timedelta(seconds=5)
# One read per request: the session and its account's current state.
_RESOLVE = (select(_S.c.id, _S.c.stage, _S.c.csrf, _S.c.created_at, _S.c.last_seen_at, _S.c.hard_expires_at,
                   _S.c.ended_at, _ACC.c.id.label("account_id"), _ACC.c.name, _ACC.c.roles, _ACC.c.disabled,
                   _ACC.c.password_changed_at)
            .join(_ACC, _ACC.c.id == _S.c.account_id).where(_S.c.token_hash == bindparam("h")))  # a session's last-seen time is written at most this often


@dataclass(frozen=True)
class WebSessionInfo:
    id: int
    principal: Principal
    stage: str
    csrf: str


@dataclass(frozen=True)
class Ended:
    """Why a presented session did not resolve ('' when there was no live session at all)."""

    reason: str


def _record(rt: Runtime, conn: Any, outcome: str, actor: str | None, detail: dict[str, Any]) -> None:
    rt.ledger.append_in(conn, [Event(kind=ACCESS, outcome=outcome, actor=actor, rule_ids=("SEC-3", "SEC-5"),
                                     detail={"channel": "web", **detail})])


def open_session(rt: Runtime, sign_in: SignIn, *, now: datetime | None = None) -> tuple[str, WebSessionInfo]:
    """A new session after a successful sign-in; `stage` password when it must change first."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    stage = PASSWORD if sign_in.must_change_password else FULL
    p = sign_in.principal
    with writing(rt.engine) as conn:
        sid = conn.execute(_S.insert().values(
            token_hash=token_hash(token), account_id=p.account_id, stage=stage, csrf=csrf, created_at=now,
            last_seen_at=now, hard_expires_at=now + timedelta(seconds=rt.settings.web.absolute_timeout),
        )).inserted_primary_key[0]  # type: ignore[index]
        _record(rt, conn, "session-opened", p.name, {"account_id": p.account_id, "session_id": sid,
                                                     "stage": stage})
    principal = Principal(p.account_id, p.name, p.roles, "session", None, token_id=None)
    return token, WebSessionInfo(sid, principal, stage, csrf)


def resolve(rt: Runtime, token: str | None, *, now: datetime | None = None) -> WebSessionInfo | Ended:
    """The live session this cookie stands for, or why it is not live (and end it, recorded)."""
    if not token:
        return Ended("")
    now = now or utcnow()
    with rt.engine.connect() as conn:
        row: Any = conn.execute(_RESOLVE, {"h": token_hash(token)}).first()
    if row is None or row.ended_at is not None:
        return Ended("")
    cause = ""
    if row.disabled:
        cause = "disabled"
    elif row.password_changed_at is not None and row.password_changed_at > row.created_at:
        cause = "password-changed"  # reset by an administrator, or changed in another session
    elif row.hard_expires_at <= now:
        cause = "absolute"
    elif row.last_seen_at + timedelta(seconds=rt.settings.web.idle_timeout) <= now:
        cause = "idle"
    if cause:
        _end(rt, row.id, row.name, cause, now)
        return Ended(cause)
    idle = rt.settings.web.idle_timeout
    if now - row.last_seen_at >= min(_TOUCH_EVERY, timedelta(seconds=idle / 10)):
        with writing(rt.engine) as conn:
            conn.execute(_S.update().where(_S.c.id == row.id, _S.c.ended_at.is_(None)).values(last_seen_at=now))
    roles = frozenset(r for r in (row.roles or "").split(",") if r)
    return WebSessionInfo(row.id, Principal(row.account_id, row.name, roles, "session"), row.stage, row.csrf)


def _end(rt: Runtime, session_id: int, actor: str | None, reason: str, now: datetime) -> bool:
    with writing(rt.engine) as conn:
        n = conn.execute(_S.update().where(_S.c.id == session_id, _S.c.ended_at.is_(None))
                         .values(ended_at=now, end_reason=reason)).rowcount
        if n:
            outcome = "signed-out" if reason == "signed-out" else "logged-off"
            _record(rt, conn, outcome, actor, {"session_id": session_id, "reason": reason})
    return bool(n)


def end(rt: Runtime, info: WebSessionInfo, reason: str = "signed-out") -> bool:
    return _end(rt, info.id, info.principal.name, reason, utcnow())


def rotate(rt: Runtime, info: WebSessionInfo, *, now: datetime | None = None) -> str:
    """After a password change: a new session id and CSRF token for this browser (the old
    id stops working), full rights, and every other session of the account ends."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with writing(rt.engine) as conn:
        conn.execute(_S.update().where(_S.c.id == info.id).values(
            token_hash=token_hash(token), csrf=secrets.token_urlsafe(32), stage=FULL, created_at=now, last_seen_at=now))
        others = [r[0] for r in conn.execute(select(_S.c.id).where(
            _S.c.account_id == info.principal.account_id, _S.c.id != info.id, _S.c.ended_at.is_(None)))]
        if others:
            conn.execute(_S.update().where(_S.c.id.in_(others)).values(ended_at=now, end_reason="password-changed"))
        _record(rt, conn, "session-rotated", info.principal.name,
                {"session_id": info.id, "reason": "password-changed", "ended_sessions": others})
    return token
