"""web workspace sessions and ledger verifications (issue 16)

Revision ID: 0010_web_sessions
Revises: 0008_bounces
Create Date: 2026-12-01 13:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010_web_sessions"
down_revision = "0008_bounces"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", _S(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("stage", _S(length=16), nullable=False),
        sa.Column("csrf", _S(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("hard_expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", _S(length=32), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_web_session_account_id"), ["account_id"], unique=False)
    op.create_table(
        "ledger_verification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        sa.Column("actor", _S(length=64), nullable=False),
        sa.Column("problem", _S(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("ledger_verification")
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_account_id"))
        batch_op.drop_index(batch_op.f("ix_web_session_token_hash"))
    op.drop_table("web_session")
