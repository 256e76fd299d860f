"""campaign content snapshots: the approved template and segment, stored at submission

Sending, `campaign check` and evidence read the submitted content from here, so they
never depend on the current folder or on files edited after approval (issue 15).

Revision ID: 0007_campaign_snapshot
Revises: 0005_accounts
Create Date: 2026-12-01 12:55:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_campaign_snapshot"
down_revision = "0005_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("template_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("segment_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("template_files", sa.Text(), nullable=False),
        sa.Column("segment_source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaign_snapshot", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaign_snapshot_campaign_id"), ["campaign_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("campaign_snapshot", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_snapshot_campaign_id"))
    op.drop_table("campaign_snapshot")
