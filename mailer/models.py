"""SQLModel tables. PHI columns hold AES-GCM ciphertext (crypto.py); lookups use HMACs.

Times are stored as naive UTC datetimes (SQLite has no time zones); `utcnow()` gives one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import NaiveDatetime
from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Naive UTC, the one time representation stored in the database."""
    return datetime.now(UTC).replace(tzinfo=None)


class Contact(SQLModel, table=True):
    """A patient on the list. Identity and clinical fields are ciphertext (SEC-4)."""

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(index=True, unique=True, max_length=64)  # HMAC of normalized address
    email_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # first_name, last_name, preferred_name as an encrypted JSON object
    identity_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # the clinical fields config declares (conditions, procedures, ...) as encrypted JSON
    phi_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    key_id: str = Field(max_length=32, index=True)  # key that encrypted this row
    language: str = Field(default="en", max_length=16, index=True)
    newsletter_opt_in: bool = Field(default=False, index=True)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class Authorization(SQLModel, table=True):
    """A written HIPAA authorization (45 CFR 164.508): one per contact and scope.

    The free-text 164.508(c) elements (information described, discloser, recipients,
    purpose, expiration event, representative's authority, third party) are one AES-GCM
    JSON blob, `elements_enc` (SEC-4); see `store.auth_records` for its associated data.
    What SQL and the gate read without decrypting stays in clear: ids, scope, flags,
    dates, the document hash and who signed (patient or representative).
    """

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    scope: str = Field(max_length=64, index=True)  # condition-targeted-marketing, ...
    # 164.508(c)(1) core elements (AUTH-1), (c)(1)(vi) authority, third party: encrypted JSON
    elements_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_id: str = Field(max_length=32, index=True)  # key that encrypted this row
    expires_at: NaiveDatetime | None = None
    expiration_event_occurred_at: NaiveDatetime | None = None
    signed_at: NaiveDatetime | None = None
    signature_present: bool = False
    # 164.508(c)(2) statements (AUTH-2)
    statement_revocation: bool = False
    statement_conditioning: bool = False
    statement_redisclosure: bool = False
    # 164.508(c)(3)-(4) (AUTH-3)
    plain_language: bool = True
    copy_provided: bool = False
    # who signed (AUTH-8)
    signer: str = Field(default="patient", max_length=32)  # patient | representative
    # defects (AUTH-5)
    compound: bool = False
    treatment_conditioned: bool = False
    known_false: bool = False
    # remuneration (MKT-3, MKT-6, SEG-5)
    remuneration: bool = False
    remuneration_statement: bool = False
    document_sha256: str = Field(default="", max_length=64)
    form_version: str | None = Field(default=None, max_length=32)  # mailer's form it was signed on (issue 17)
    revoked_at: NaiveDatetime | None = None  # when the written revocation was received (AUTH-7)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)

    __table_args__ = (Index("ix_authorization_contact_scope", "contact_id", "scope"),)


class Suppression(SQLModel, table=True):
    """An address that must not be mailed: unsubscribe, bounce, complaint (SPAM-5, BNC-1)."""

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(index=True, unique=True, max_length=64)
    reason: str = Field(max_length=32)  # unsubscribe | bounce | complaint | manual
    campaign_id: int | None = None
    at: NaiveDatetime = Field(default_factory=utcnow)


class UnsubscribeToken(SQLModel, table=True):
    """Opaque one-click token (PHI-6): random, stored only as its SHA-256."""

    token_hash: str = Field(primary_key=True, max_length=64)  # the only lookup (see migration 0004)
    email_hash: str = Field(max_length=64)
    contact_id: int | None = None
    campaign_id: int | None = None
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    used_at: NaiveDatetime | None = None


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    purpose: str = Field(max_length=64)
    template: str = Field(max_length=512)  # template folder path
    segment: str = Field(max_length=512)  # segment file path
    template_hash: str = Field(default="", max_length=64)
    segment_hash: str = Field(default="", max_length=64)
    third_party: str | None = Field(default=None, max_length=256)
    status: str = Field(default="draft", max_length=16, index=True)
    status_reason: str = Field(default="", max_length=512)
    author: str = Field(default="", max_length=128)
    schedule_at: NaiveDatetime | None = None
    schedule_cron: str | None = Field(default=None, max_length=128)
    audience_hash: str = Field(default="", max_length=64)
    run: int = 0  # recurring campaigns: which run the deliveries belong to
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class CampaignSnapshot(SQLModel, table=True):
    """The content a campaign was submitted with (template files, segment file), so sending,
    checking and evidence never depend on the files on disk or the current folder (SEC-6)."""

    __tablename__ = "campaign_snapshot"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    template_hash: str = Field(max_length=64)
    segment_hash: str = Field(max_length=64)
    template_files: str = Field(sa_column=Column(Text, nullable=False))  # JSON {file name: base64 bytes}
    segment_source: str = Field(sa_column=Column(Text, nullable=False))  # base64 of the segment file's bytes
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Approval(SQLModel, table=True):
    """A reviewer's decision, bound to the content hashes it saw (SEC-6)."""

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    reviewer: str = Field(max_length=128)
    decision: str = Field(max_length=16)  # approved | rejected
    template_hash: str = Field(max_length=64)
    segment_hash: str = Field(max_length=64)
    purpose: str = Field(max_length=64)
    waivers_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    segment_counts_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    note: str = Field(default="", max_length=1024)
    at: NaiveDatetime = Field(default_factory=utcnow)


class Vendor(SQLModel, table=True):
    """A business associate with its BAA (BAA-1, BAA-2)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    host: str = Field(max_length=255, index=True)
    operated_by_covered_entity: bool = False
    baa_signed_at: NaiveDatetime | None = None
    baa_expires_at: NaiveDatetime | None = None
    document_sha256: str = Field(default="", max_length=64)
    expired_at: NaiveDatetime | None = None
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """One recipient of one campaign run: the send queue and its claim/record state.

    status: pending -> claimed -> sent | failed | deferred | skipped; claimed rows left
    after a crash are reported as uncertain and never resent without an operator.
    """

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    run: int = 0
    contact_id: int = Field(foreign_key="contact.id")
    authorization_id: int | None = None
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    message_id: str | None = Field(default=None, max_length=255)
    rule_ids: str = Field(default="", max_length=128)
    smtp_code: int | None = None
    worker: str | None = Field(default=None, max_length=64)
    claimed_at: NaiveDatetime | None = None
    updated_at: NaiveDatetime = Field(default_factory=utcnow)

    __table_args__ = (
        UniqueConstraint("campaign_id", "run", "contact_id", name="uq_delivery_recipient"),
        Index("ix_delivery_campaign_status", "campaign_id", "run", "status", "id"),
    )


class SendLease(SQLModel, table=True):
    """A live sender of a campaign run (issue 20): the rows it claims carry its `owner` in
    `delivery.worker`. Its heartbeat moves `expires_at` (epoch seconds) ahead; claimed rows
    of an owner whose lease has expired are `uncertain`, never those of a live sender."""

    __tablename__ = "send_lease"

    owner: str = Field(primary_key=True, max_length=64)
    campaign_id: int = Field(index=True)
    run: int = 0
    host: str = Field(default="", max_length=64)  # host name and pid namespace: a dead pid here is a dead lease
    pid: int = 0
    started_at: float = 0.0
    expires_at: float = 0.0


class RateSlot(SQLModel, table=True):
    """The shared global pace of a campaign: the next free send slot (epoch seconds)."""

    __tablename__ = "rate_slot"

    key: str = Field(primary_key=True, max_length=64)
    next_at: float = 0.0


class RateGrant(SQLModel, table=True):
    """Per-domain window tokens handed to one sender: the sum over the last minute is the
    domain's count, whatever the number of senders. `key` holds a hash of the domain."""

    __tablename__ = "rate_grant"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64)
    at: float = 0.0
    n: int = 1

    __table_args__ = (Index("ix_rate_grant_key_at", "key", "at"),)


class LedgerEntry(SQLModel, table=True):
    """Append-only, hash-chained, HMAC-signed record (SEC-5, SEC-6). No PHI in clear."""

    __tablename__ = "ledger"

    seq: int = Field(primary_key=True)
    at: NaiveDatetime = Field(index=True)
    kind: str = Field(max_length=32, index=True)
    outcome: str | None = Field(default=None, max_length=16)
    campaign_id: int | None = Field(default=None, index=True)
    contact_id: int | None = Field(default=None, index=True)
    recipient_hash: str | None = Field(default=None, max_length=64)
    template_hash: str | None = Field(default=None, max_length=64)
    message_hash: str | None = Field(default=None, max_length=64)
    message_id: str | None = Field(default=None, max_length=255)
    relay: str | None = Field(default=None, max_length=255)
    tls_version: str | None = Field(default=None, max_length=16)
    tls_cipher: str | None = Field(default=None, max_length=64)
    smtp_code: int | None = None
    smtp_text: str | None = Field(default=None, max_length=512)
    authorization_id: int | None = None
    rule_ids: str = Field(default="", max_length=256)
    actor: str | None = Field(default=None, max_length=128)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    key_id: str = Field(max_length=32)
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)
    mac: str = Field(max_length=64)


class KeyRotation(SQLModel, table=True):
    """Progress of `mailer keys rotate`, so an interrupted rotation resumes."""

    id: int | None = Field(default=None, primary_key=True)
    from_key_id: str = Field(max_length=32)
    to_key_id: str = Field(max_length=32)
    last_contact_id: int = 0
    last_authorization_id: int = 0
    done: bool = False
    started_at: NaiveDatetime = Field(default_factory=utcnow)
    finished_at: NaiveDatetime | None = None
