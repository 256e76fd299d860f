"""drop the unsubscribe-token indexes nothing reads

Tokens are looked up only by their hash (the primary key). The indexes on email_hash,
contact_id and campaign_id were never queried, and each made every claim slower: one
token row is inserted per message, so three index insertions per message (issue 6:
~15 µs of a ~700 µs budget). They can come back with the query that needs them.

Revision ID: 0004_token_idx
Revises: 0003_authz_enc
Create Date: 2026-11-28 04:10:00
"""
from alembic import op

revision = "0004_token_idx"
down_revision = "0003_authz_enc"
branch_labels = None
depends_on = None

_INDEXES = ("email_hash", "contact_id", "campaign_id")


def upgrade() -> None:
    with op.batch_alter_table("unsubscribetoken", schema=None) as batch_op:
        for column in _INDEXES:
            batch_op.drop_index(batch_op.f(f"ix_unsubscribetoken_{column}"))


def downgrade() -> None:
    with op.batch_alter_table("unsubscribetoken", schema=None) as batch_op:
        for column in _INDEXES:
            batch_op.create_index(batch_op.f(f"ix_unsubscribetoken_{column}"), [column], unique=False)
