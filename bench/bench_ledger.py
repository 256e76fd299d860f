"""Ledger: append rate with batched commits, and `ledger verify` over 1,000,000 entries.

- append: realistic send entries (hashes, Message-ID, TLS, SMTP reply) through
  `Ledger.append`, 1,000 per commit, the way the sender records outcomes; one entry
  per commit alongside for contrast. SQLite file, and PostgreSQL when
  MAILER_TEST_POSTGRES_URL is set (a scratch schema, dropped afterwards).
- verify: the whole chain (hash, link, HMAC, signed head) for 1,000,000 entries built
  with batched appends (--quick: 50,000), on SQLite; on PostgreSQL at a tenth of that size.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _events(start: int, n: int) -> list[Any]:
    from mailer.ledger import Event

    return [Event(kind="send", outcome="sent", campaign_id=1 + i // 100000, contact_id=i,
                  recipient_hash=f"{i:064x}", template_hash="b" * 64, message_hash=f"{i * 7919:064x}",
                  message_id=f"<1.{i}.{i:032x}@riverside-imaging.example>", relay="relay.riverside-imaging.example",
                  tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384", smtp_code=250,
                  smtp_text="2.0.0 Ok: queued as 4Xyz123", authorization_id=None, detail={"attempt": 1, "run": 0})
            for i in range(start, start + n)]


@contextmanager
def _database(kind: str, folder: Path) -> Iterator[Any]:
    from sqlalchemy import create_engine, text

    from mailer.crypto import Keyring
    from mailer.db import make_engine, migrate, normalize_url
    from mailer.ledger import Ledger

    if kind == "sqlite":
        path = folder / f"ledger-{uuid.uuid4().hex[:8]}.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate(engine)
        try:
            yield Ledger(engine, Keyring.generate())
        finally:
            engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        return
    base = os.environ["MAILER_TEST_POSTGRES_URL"]
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(normalize_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    engine = make_engine(f"{normalize_url(base)}{sep}options=-csearch_path%3D{schema}")
    try:
        migrate(engine)
        yield Ledger(engine, Keyring.generate())
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _append_rate(ledger: Any, total: int, per_commit: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, total, per_commit):
        ledger.append(_events(start, min(per_commit, total - start)))
    return total / (time.perf_counter() - t0)


def _build(ledger: Any, total: int, per_commit: int = 10000) -> float:
    t0 = time.perf_counter()
    for start in range(0, total, per_commit):
        ledger.append(_events(start, min(per_commit, total - start)))
    return time.perf_counter() - t0


def run(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    backends = ["sqlite"] + (["postgres"] if os.environ.get("MAILER_TEST_POSTGRES_URL") else [])
    n_batched = 20_000 if quick else 200_000
    n_single = 300 if quick else 2_000
    n_verify = 50_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="mailer-bench-ledger-") as tmp:
        folder = Path(tmp)
        for kind in backends:
            with _database(kind, folder) as ledger:
                rate = _append_rate(ledger, n_batched, 1000)
                rows.append({"measure": f"append, 1,000 per commit ({kind})", "value": rate, "unit": "entries/s",
                             "note": f"{n_batched:,} send entries"})
            with _database(kind, folder) as ledger:
                rate = _append_rate(ledger, n_single, 1)
                rows.append({"measure": f"append, 1 per commit ({kind})", "value": rate, "unit": "entries/s",
                             "note": f"{n_single:,} entries, for contrast"})
        for kind in backends:
            n = n_verify if kind == "sqlite" else n_verify // 10
            with _database(kind, folder) as ledger:
                built = _build(ledger, n)
                v = ledger.verify()
                assert v.ok and v.entries == n, v
                rows.append({"measure": f"verify {n:,} entries ({kind})", "value": v.seconds, "unit": "s",
                             "note": f"{n / v.seconds:,.0f} entries/s; built in {built:.1f}s with 10,000 per commit"})
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(r)
