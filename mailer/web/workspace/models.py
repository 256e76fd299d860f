"""Workspace tables (issue 16): browser sessions held server-side, and ledger verifications.

A browser holds only a random session id; the database holds its SHA-256, the account,
the CSRF token for its forms and the times that end it (idle and absolute, SEC-3). A copy
of the table signs nobody in. `LedgerVerification` keeps the last verification a person
ran from the workspace, so the dashboard shows it without re-reading a million entries.
"""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlmodel import Field, SQLModel

from mailer.models import utcnow


class WebSession(SQLModel, table=True):
    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, index=True, unique=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    stage: str = Field(default="full", max_length=16)  # full | password (a forced change first)
    csrf: str = Field(max_length=64)  # the token every form of this session carries
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    last_seen_at: NaiveDatetime = Field(default_factory=utcnow)
    hard_expires_at: NaiveDatetime
    ended_at: NaiveDatetime | None = None
    end_reason: str | None = Field(default=None, max_length=32)  # signed-out | idle | absolute | disabled


class LedgerVerification(SQLModel, table=True):
    __tablename__ = "ledger_verification"

    id: int | None = Field(default=None, primary_key=True)
    at: NaiveDatetime = Field(default_factory=utcnow)
    ok: bool
    entries: int
    head_seq: int
    actor: str = Field(max_length=64)
    problem: str = Field(default="", max_length=500)
