"""Account tables (issue 12, SEC-1, SEC-7): one row per person or service, tokens as hashes only.

Secrets never sit in clear: passwords are Argon2id hashes, the TOTP secret is AES-GCM
ciphertext under the key file (bound to the account id), and API and session tokens are
stored as SHA-256 hashes of 128-bit random values, so a database copy signs nobody in.
"""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

from mailer.models import utcnow


class Account(SQLModel, table=True):
    """A person (or the worker's service identity). Names are unique and never reused for
    someone else: accounts are disabled, not deleted, so the ledger's names stay meaningful."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, index=True, unique=True)  # lower case, [a-z0-9._-]
    roles: str = Field(default="", max_length=128)  # comma-separated, sorted
    password_hash: str | None = Field(default=None, max_length=256)  # Argon2id; None: no password sign-in
    must_change_password: bool = False
    disabled: bool = False
    totp_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    totp_last_step: int | None = None  # the newest TOTP time step accepted: a code is good once
    failed_attempts: int = 0
    locked_until: NaiveDatetime | None = None
    password_changed_at: NaiveDatetime | None = None
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class AccessToken(SQLModel, table=True):
    """An API token (`kind` "api") or a CLI session (`kind` "session"), stored as a hash."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, index=True, unique=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    kind: str = Field(max_length=16)  # api | session
    label: str = Field(default="", max_length=128)
    os_user: str | None = Field(default=None, max_length=64)  # who opened a CLI session
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    expires_at: NaiveDatetime | None = None  # sessions: idle deadline (slides on use)
    hard_expires_at: NaiveDatetime | None = None  # sessions: absolute deadline
    last_used_at: NaiveDatetime | None = None
    revoked_at: NaiveDatetime | None = None
