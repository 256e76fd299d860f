"""Ledger checkpoints: the signed head of the chain and the anchor left by a lawful purge."""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlmodel import Field, SQLModel

HEAD = "head"  # the newest entry: a removed tail or an entry added behind the ledger's back shows
PURGED = "purged"  # the last entry removed by a purge (AUTH-9): the chain continues from it


class LedgerCheckpoint(SQLModel, table=True):
    """One signed (seq, entry_hash) pair per name. Written only by `mailer.ledger` and
    `mailer.retention`; its MAC is over name, seq, hash and key id, so it cannot be moved
    to another entry without the ledger key."""

    __tablename__ = "ledger_checkpoint"

    name: str = Field(primary_key=True, max_length=16)
    seq: int
    entry_hash: str = Field(max_length=64)
    at: NaiveDatetime
    key_id: str = Field(max_length=32)
    mac: str = Field(max_length=64)
