"""Tables of bounce and complaint processing (issue 19). No address and no body in clear."""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlalchemy import Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from mailer.models import utcnow


class BounceToken(SQLModel, table=True):
    """The VERP return-path token of one delivery: random, stored only as its SHA-256 (PHI-6).

    Only the primary key is indexed: one row is inserted per message on the send path."""

    token_hash: str = Field(primary_key=True, max_length=64)
    delivery_id: int
    campaign_id: int
    contact_id: int
    email_hash: str = Field(max_length=64)
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class BounceEvent(SQLModel, table=True):
    """One processed bounce or complaint: a delivery has at most one of each class (idempotent)."""

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=64, unique=True)  # sha256 of delivery id and class
    delivery_id: int
    campaign_id: int = Field(index=True)
    contact_id: int | None = None
    email_hash: str = Field(max_length=64)
    klass: str = Field(max_length=16)  # hard | soft | complaint
    status: str = Field(default="", max_length=16)  # RFC 3463 code, or the feedback type
    source: str = Field(default="", max_length=16)  # smtp | maildir | imap
    suppressed: bool = False
    at: NaiveDatetime = Field(default_factory=utcnow)

    __table_args__ = (Index("ix_bounceevent_email_klass_at", "email_hash", "klass", "at"),)


class BounceHeld(SQLModel, table=True):
    """A message kept aside: auto-replies and unparseable ones (for review) and rejected
    ones (forged, malformed, oversized). Never acted on; the body is AES-GCM ciphertext
    (the bounce mailbox is a PHI store, BNC-2, SEC-4), absent when it was over the size bound."""

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True)  # of the raw message: the same message is held once
    disposition: str = Field(max_length=16, index=True)  # review | rejected
    reason: str = Field(max_length=64)
    source: str = Field(default="", max_length=16)
    size: int = 0
    body_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    key_id: str = Field(default="", max_length=32)
    at: NaiveDatetime = Field(default_factory=utcnow)
