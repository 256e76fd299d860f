"""bounces and complaints: VERP tokens, processed events, messages kept aside (issue 19)

Revision ID: 0008_bounces
Revises: 0007_campaign_snapshot
Create Date: 2026-12-01 12:45:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008_bounces"
down_revision = "0007_campaign_snapshot"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "bouncetoken",
        sa.Column("token_hash", _S(length=64), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("email_hash", _S(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_table(
        "bounceevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", _S(length=64), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("email_hash", _S(length=64), nullable=False),
        sa.Column("klass", _S(length=16), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("source", _S(length=16), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    op.create_index("ix_bounceevent_campaign_id", "bounceevent", ["campaign_id"], unique=False)
    op.create_index("ix_bounceevent_email_klass_at", "bounceevent", ["email_hash", "klass", "at"], unique=False)
    op.create_table(
        "bounceheld",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", _S(length=64), nullable=False),
        sa.Column("disposition", _S(length=16), nullable=False),
        sa.Column("reason", _S(length=64), nullable=False),
        sa.Column("source", _S(length=16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body_enc", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", _S(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    op.create_index("ix_bounceheld_disposition", "bounceheld", ["disposition"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_bounceheld_disposition", table_name="bounceheld")
    op.drop_table("bounceheld")
    op.drop_index("ix_bounceevent_email_klass_at", table_name="bounceevent")
    op.drop_index("ix_bounceevent_campaign_id", table_name="bounceevent")
    op.drop_table("bounceevent")
    op.drop_table("bouncetoken")
