"""Driver-level SQL for the send path's hot statements (claim, record, ledger append).

SQLAlchemy Core costs ~25 µs per row in an `executemany` (bind processing, parameter
dicts) and ~30 µs per statement; the driver's own cursor costs ~8 per row (perf-notes:
27,000 vs 92,000 rows/s).
At thousands of messages a second that difference is a third of the sender's budget.
Statements here are written once with `?` placeholders and translated for the
dialect's paramstyle; datetimes go through the dialect's own bind processor, so rows
are stored exactly as the Core path stores them and read back by it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect

from mailer.models import Delivery

_TIME = Delivery.__table__.c.updated_at.type  # type: ignore[attr-defined]


@lru_cache(maxsize=256)
def _translate(paramstyle: str, sql: str) -> str:
    if paramstyle in ("format", "pyformat"):
        return sql.replace("%", "%%").replace("?", "%s")
    if paramstyle == "qmark":
        return sql
    raise NotImplementedError(f"paramstyle {paramstyle}")  # pragma: no cover - sqlite3 and psycopg only


def sql(conn: Connection, statement: str) -> str:
    """STATEMENT with `?` placeholders, in the connection's driver paramstyle."""
    return _translate(conn.dialect.paramstyle, statement)


def marks(n: int) -> str:
    """`?,?,...` for an IN list of n values."""
    return ",".join("?" * n)


@lru_cache(maxsize=8)
def _time_processor(dialect: Dialect) -> Callable[[datetime | None], Any]:
    proc = _TIME.dialect_impl(dialect).bind_processor(dialect)
    return proc if proc is not None else (lambda v: v)


def time_param(conn: Connection) -> Callable[[datetime | None], Any]:
    """The dialect's own conversion of a naive-UTC datetime to a bound value."""
    return _time_processor(conn.dialect)


def _cursor(conn: Connection) -> Any:
    """The driver's own cursor, inside whatever transaction SQLAlchemy began on CONN (writes
    run in `mailer.db.writing`, so BEGIN IMMEDIATE and COMMIT stay SQLAlchemy's)."""
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def executemany(conn: Connection, statement: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Run STATEMENT once per row in one driver call, inside the caller's transaction.
    Returns the rows changed, as the driver counts them (sqlite3: the total)."""
    if not rows:
        return 0
    cur = _cursor(conn)
    try:
        cur.executemany(sql(conn, statement), list(rows))
        return int(cur.rowcount)
    finally:
        cur.close()


def fetch(conn: Connection, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur = _cursor(conn)
    try:
        cur.execute(sql(conn, statement), params)
        return list(cur.fetchall())
    finally:
        cur.close()
