"""Engine, sessions and migrations: SQLite file (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from mailer.errors import ConfigError, InputError, StoreError

MIGRATIONS = Path(__file__).parent / "migrations"


class NotInitialised(InputError):
    """The database has no schema yet (or does not exist): `mailer init` first (exit 2)."""


def where(engine: Engine) -> str:
    """host:port (or the file) of a database, without credentials, for error messages."""
    u = engine.url
    if u.get_backend_name() == "sqlite":
        return str(u.database)
    return f"{u.host or 'localhost'}:{u.port or 5432}"


def readiness(engine: Engine) -> str | None:
    """The schema revision, or None when the database holds no schema. A database that
    cannot be reached is one line naming host and port (StoreError, exit 2)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    try:
        return current_revision(engine)
    except (OperationalError, DBAPIError) as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0][:200] if str(getattr(err, "orig", err)).strip() else type(err).__name__
        raise Unreachable(f"cannot reach the database at {where(engine)}: {reason}",
                          hint="check database.url (or MAILER_DATABASE_URL) and that the server is running") from None


class Unreachable(InputError):
    """The database server does not answer (exit 2)."""


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """An engine for URL. `create=False` (every command but `init`): a SQLite file that does
    not exist is "not initialised" (InputError, exit 2) and nothing is created."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises several types here
        raise ConfigError("setting 'database.url' is not a database URL", hint="e.g. sqlite:///mailer.db") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            db = Path(parsed.database)
            if not create and not db.exists():
                raise NotInitialised(f"not initialised: database {db} does not exist; run `mailer init`",
                                     hint="or point database.url (or MAILER_DATABASE_URL) at the existing database")
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InputError(f"cannot create the database folder {db.parent}: {err.strerror}",
                                 hint="choose a writable folder in database.url") from None
            if create and not os.access(db.parent, os.W_OK):
                raise InputError(f"the database folder {db.parent} is not writable by this user",
                                 hint="fix its permissions or choose another folder in database.url")
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _sqlite_pragmas(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    raise ConfigError(
        f"database backend {parsed.get_backend_name()!r} is not supported",
        hint="use sqlite:///path.db or postgresql://host/db",
    )


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE for writers (see `writing`)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("mailer_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite it is BEGIN IMMEDIATE, so writers queue (busy_timeout)
    instead of failing on a lock upgrade; reads stay deferred and run beside it under WAL."""
    with engine.connect() as conn:
        conn.execution_options(mailer_write=True)
        with conn.begin():
            yield conn


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine_url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(engine_url).replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "heads")
        except Exception as err:  # noqa: BLE001 - report which step failed, no SQL values
            raise StoreError(f"database migration failed: {type(err).__name__}: {err}") from err


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
