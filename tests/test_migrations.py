"""The migrations build exactly the schema the models describe, and the ledger is append-only."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

import mailer.models  # noqa: F401
from mailer.db import make_engine, migrate
from mailer.ledger import Event, Ledger


def _load_all_models() -> None:
    import importlib
    import pkgutil

    import mailer

    for info in pkgutil.walk_packages(mailer.__path__, "mailer."):
        if info.name.endswith("models"):
            importlib.import_module(info.name)


def _ours(name: str | None, type_: str, parent_names: dict) -> bool:  # type: ignore[type-arg]
    """APScheduler creates and owns its job-store table; it is not part of our models."""
    return not (type_ == "table" and name is not None and name.startswith("apscheduler_"))


def test_models_and_migrations_agree(db_url: str) -> None:
    _load_all_models()
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False, "include_name": _ours})
        diff = compare_metadata(ctx, SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models differ from migrations: {diff}"


def test_the_database_refuses_to_update_or_delete_ledger_rows(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt = runtime_factory()
    Ledger(rt.engine, rt.keyring).append([Event(kind="system", outcome="init")])
    for sql in ("UPDATE ledger SET kind = 'x'", "DELETE FROM ledger"):
        with pytest.raises(DBAPIError, match="append-only"), rt.engine.begin() as conn:
            conn.execute(text(sql))
    with rt.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger")).scalar() == 1


def test_the_migrations_form_one_chain_with_one_head() -> None:
    """Branches merged with their own migration must be re-chained: two heads would let
    `upgrade heads` apply them in either order, and `mailer migrate` report a mixed state."""
    from alembic.script import ScriptDirectory

    from mailer.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    heads = script.get_heads()
    assert len(heads) == 1, f"more than one migration head: {heads}; chain one after the other"
    chain = [rev.revision for rev in script.walk_revisions()]
    assert len(chain) == len(set(chain)) and chain[-1] == "0001"
