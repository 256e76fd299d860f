"""Exclusive named locks across processes: a PostgreSQL session advisory lock, or a lock file.

Both are released by the server or the operating system when the holder dies, so a killed
process never blocks the next one. `flock` locks belong to an open file, so two holders in
one process exclude each other too (tests use threads as stand-ins for processes).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text


def sqlite_lock_path(engine: Engine, name: str) -> Path:
    """A lock file beside the SQLite database file."""
    db = Path(engine.url.database or "mailer.db")
    return db.with_name(f"{db.name}.{name}.lock")


class NamedLock:
    """`with NamedLock(engine, "keys", wait=30) as held:` -- held is False when not got in time.

    On PostgreSQL the lock is an advisory lock per schema (one installation); on SQLite a
    lock file beside the database. `extra_file` adds a lock file (e.g. beside the key file)
    taken as well, for state that lives outside the database."""

    def __init__(self, engine: Engine, name: str, *, wait: float | None = 0.0, poll: float = 0.05,
                 extra_file: Path | None = None) -> None:
        self.engine = engine
        self.name = name
        self.wait = wait
        self.poll = poll
        self.extra_file = extra_file
        self._conn: Any = None
        self._files: list[Any] = []

    def _try_pg(self) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect()
        got = self._conn.execute(text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :k))"),
                                 {"k": ":mailer-" + self.name}).scalar()
        self._conn.commit()
        return bool(got)

    def _try_file(self, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fh = os.fdopen(fd, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        except OSError:
            pass
        self._files.append(fh)
        return True

    def try_acquire(self) -> bool:
        files = [p for p in (self.extra_file,) if p is not None]
        if self.engine.dialect.name == "postgresql":
            if not self._try_pg():
                return False
        else:
            files.insert(0, sqlite_lock_path(self.engine, self.name))
        for path in files:
            if not self._try_file(path):
                self.release()
                return False
        return True

    def acquire(self) -> bool:
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            if self.try_acquire():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)

    def release(self) -> None:
        for fh in self._files:
            fh.close()
        self._files = []
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
