"""sender leases and shared rate limits: several senders on one campaign (issue 20)

Revision ID: 0012_delivery_leases
Revises: 0011_compliance
Create Date: 2026-12-01 16:20:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012_delivery_leases"
down_revision = "0011_compliance"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "send_lease",
        sa.Column("owner", _S(length=64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("host", _S(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    with op.batch_alter_table("send_lease", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_send_lease_campaign_id"), ["campaign_id"], unique=False)
    op.create_table(
        "rate_slot",
        sa.Column("key", _S(length=64), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "rate_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", _S(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rate_grant", schema=None) as batch_op:
        batch_op.create_index("ix_rate_grant_key_at", ["key", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rate_grant", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_grant_key_at")
    op.drop_table("rate_grant")
    op.drop_table("rate_slot")
    with op.batch_alter_table("send_lease", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_send_lease_campaign_id"))
    op.drop_table("send_lease")
