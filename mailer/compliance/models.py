"""Tables of the compliance program's records (issue 17). Free text that may name a patient
or describe PHI is AES-GCM ciphertext (SEC-4); what gates and listings read stays in clear:
ids, names of accounts, dates, kinds, flags and hashes."""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

from mailer.models import utcnow


class TrainingRecord(SQLModel, table=True):
    """One completed course by one account (TRN-1). The certificate is kept by hash, and
    its bytes encrypted when stored."""

    __tablename__ = "training_record"

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=64, index=True)
    course: str = Field(max_length=128, index=True)
    completed_at: NaiveDatetime
    expires_at: NaiveDatetime
    certificate_sha256: str | None = Field(default=None, max_length=64)
    certificate_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    key_id: str | None = Field(default=None, max_length=32)
    recorded_by: str = Field(max_length=64)
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Asset(SQLModel, table=True):
    """A testimonial, quote, story or patient image with the patient's written consent (TST-1).

    `content_enc` holds the exact words or image bytes the patient consented to; the consent's
    free text (what may be used, its terms) is `consent_enc`. Channels, dates and revocation
    stay in clear so the gate decides without decrypting."""

    __tablename__ = "asset"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, index=True, unique=True)  # what templates name: asset('key')
    kind: str = Field(max_length=16)  # testimonial | quote | story | image | before-after
    contact_id: int = Field(foreign_key="contact.id", index=True)
    media_type: str = Field(max_length=64)  # text/plain, image/png, ...
    content_sha256: str = Field(max_length=64)
    content_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    consent_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_id: str = Field(max_length=32)
    channels: str = Field(max_length=64)  # comma-separated: email, web, social
    consent_signed_at: NaiveDatetime
    consent_expires_at: NaiveDatetime | None = None
    consent_document_sha256: str = Field(max_length=64)
    revoked_at: NaiveDatetime | None = None
    registered_by: str = Field(max_length=64)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class RiskAssessment(SQLModel, table=True):
    """A risk assessment for a new marketing initiative (RSK-1, RSK-2).

    `covers_json` lists the initiative's elements it assesses (purposes, vendors, channels,
    data fields: names, no PHI); the narrative (what PHI, who receives it, safeguards,
    residual risk) is ciphertext."""

    __tablename__ = "risk_assessment"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    covers_json: str = Field(max_length=4000)
    details_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_id: str = Field(max_length=32)
    residual_risk: str = Field(max_length=16)  # low | medium | high
    decision: str = Field(max_length=16)  # proceed | do-not-proceed
    status: str = Field(default="draft", max_length=16, index=True)  # draft | approved | rejected
    author: str = Field(max_length=64)
    reviewer: str | None = Field(default=None, max_length=64)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    decided_at: NaiveDatetime | None = None


class Complaint(SQLModel, table=True):
    """A complaint or privacy concern (CMP-1). The patient is linked by lookup hash only; what
    they said and how it was resolved are ciphertext."""

    __tablename__ = "complaint"

    id: int | None = Field(default=None, primary_key=True)
    received_at: NaiveDatetime = Field(index=True)
    channel: str = Field(max_length=16)  # phone | email | mail | in-person | web | social
    contact_hash: str | None = Field(default=None, max_length=64, index=True)
    campaign_id: int | None = Field(default=None, index=True)
    category: str = Field(max_length=32)
    text_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    resolution_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    key_id: str = Field(max_length=32)
    status: str = Field(default="open", max_length=16, index=True)  # open | investigating | resolved
    resolved_at: NaiveDatetime | None = None
    recorded_by: str = Field(max_length=64)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)
