"""authorization elements encrypted at rest (SEC-4)

The free-text 164.508(c) elements of an authorization (information_description,
discloser, recipients, purpose, expiration_event, representative_authority,
third_party) leave their clear columns for one AES-GCM JSON blob, `elements_enc`, with
the id of the key that made it in `key_id` (see `mailer.store.auth_records`).

A migration holds no keys (they live in the key file, apart from the data), so it
cannot encrypt rows that already exist. mailer is unreleased, so this migration only
changes the schema of an EMPTY authorization table: if the table holds any row it stops
with an error and, being in the migration's transaction, changes nothing. The way
forward for such a database is to migrate a fresh one and record the signed documents
again with `mailer authorizations import` (which encrypts them). The downgrade refuses
the same way (it could not decrypt the rows either).

Revision ID: 0003_authz_enc
Revises: 0002_ledger
Create Date: 2026-11-28 14:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003_authz_enc"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None

_AUTHORIZATION = sa.table("authorization", sa.column("id", sa.Integer()))


def _refuse_if_not_empty(direction: str) -> None:
    rows = op.get_bind().execute(sa.select(sa.func.count()).select_from(_AUTHORIZATION)).scalar()
    if rows:
        raise RuntimeError(
            f"migration 0003_authz_enc ({direction}) refused: the authorization table holds {rows} row(s). "
            "A migration has no keys, so it cannot encrypt (or decrypt) the authorization elements; "
            "this schema change is only made on an empty table. Re-import the signed authorizations "
            "with `mailer authorizations import` into a freshly migrated database."
        )


def upgrade() -> None:
    _refuse_if_not_empty("upgrade")
    with op.batch_alter_table("authorization", schema=None) as batch_op:
        batch_op.drop_column("information_description")
        batch_op.drop_column("discloser")
        batch_op.drop_column("recipients")
        batch_op.drop_column("purpose")
        batch_op.drop_column("expiration_event")
        batch_op.drop_column("representative_authority")
        batch_op.drop_column("third_party")
        batch_op.add_column(sa.Column("elements_enc", sa.LargeBinary(), nullable=False))
        batch_op.add_column(sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False))
        batch_op.create_index(batch_op.f("ix_authorization_key_id"), ["key_id"], unique=False)


def downgrade() -> None:
    _refuse_if_not_empty("downgrade")
    with op.batch_alter_table("authorization", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_key_id"))
        batch_op.drop_column("key_id")
        batch_op.drop_column("elements_enc")
        batch_op.add_column(sa.Column("information_description", sa.Text(), nullable=False))
        batch_op.add_column(sa.Column("discloser", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False))
        batch_op.add_column(sa.Column("recipients", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False))
        batch_op.add_column(sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False))
        batch_op.add_column(sa.Column("expiration_event", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.add_column(sa.Column("representative_authority", sqlmodel.sql.sqltypes.AutoString(length=512),
                                      nullable=True))
        batch_op.add_column(sa.Column("third_party", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
