"""compliance records: training, assets and consents, risk assessments, complaints;
authorization form version (issue 17)

Revision ID: 0011_compliance
Revises: 0010_web_sessions
Create Date: 2026-12-01 13:20:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011_compliance"
down_revision = "0010_web_sessions"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "training_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", _S(length=64), nullable=False),
        sa.Column("course", _S(length=128), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("certificate_sha256", _S(length=64), nullable=True),
        sa.Column("certificate_enc", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", _S(length=32), nullable=True),
        sa.Column("recorded_by", _S(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("training_record", schema=None) as b:
        b.create_index(b.f("ix_training_record_account"), ["account"], unique=False)
        b.create_index(b.f("ix_training_record_course"), ["course"], unique=False)

    op.create_table(
        "asset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", _S(length=64), nullable=False),
        sa.Column("kind", _S(length=16), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("media_type", _S(length=64), nullable=False),
        sa.Column("content_sha256", _S(length=64), nullable=False),
        sa.Column("content_enc", sa.LargeBinary(), nullable=False),
        sa.Column("consent_enc", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", _S(length=32), nullable=False),
        sa.Column("channels", _S(length=64), nullable=False),
        sa.Column("consent_signed_at", sa.DateTime(), nullable=False),
        sa.Column("consent_expires_at", sa.DateTime(), nullable=True),
        sa.Column("consent_document_sha256", _S(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("registered_by", _S(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("asset", schema=None) as b:
        b.create_index(b.f("ix_asset_key"), ["key"], unique=True)
        b.create_index(b.f("ix_asset_contact_id"), ["contact_id"], unique=False)

    op.create_table(
        "risk_assessment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", _S(length=200), nullable=False),
        sa.Column("covers_json", _S(length=4000), nullable=False),
        sa.Column("details_enc", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", _S(length=32), nullable=False),
        sa.Column("residual_risk", _S(length=16), nullable=False),
        sa.Column("decision", _S(length=16), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("author", _S(length=64), nullable=False),
        sa.Column("reviewer", _S(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("risk_assessment", schema=None) as b:
        b.create_index(b.f("ix_risk_assessment_status"), ["status"], unique=False)

    op.create_table(
        "complaint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("channel", _S(length=16), nullable=False),
        sa.Column("contact_hash", _S(length=64), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("category", _S(length=32), nullable=False),
        sa.Column("text_enc", sa.LargeBinary(), nullable=False),
        sa.Column("resolution_enc", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", _S(length=32), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("recorded_by", _S(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("complaint", schema=None) as b:
        b.create_index(b.f("ix_complaint_received_at"), ["received_at"], unique=False)
        b.create_index(b.f("ix_complaint_contact_hash"), ["contact_hash"], unique=False)
        b.create_index(b.f("ix_complaint_campaign_id"), ["campaign_id"], unique=False)
        b.create_index(b.f("ix_complaint_status"), ["status"], unique=False)

    with op.batch_alter_table("authorization", schema=None) as b:
        b.add_column(sa.Column("form_version", _S(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization", schema=None) as b:
        b.drop_column("form_version")
    for t in ("complaint", "risk_assessment", "asset", "training_record"):
        op.drop_table(t)
