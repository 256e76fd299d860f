"""Several processes appending at once still make one valid chain (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from test_ledger_support import send_event

from mailer.models import LedgerEntry

WORKERS, BATCHES, PER_BATCH = 4, 25, 20


def append_worker(db_url: str, key_file: str, worker: int, start: Any) -> int:
    """A separate process: its own engine and keyring, like a `mailer worker` on another machine."""
    from mailer.crypto import Keyring
    from mailer.db import make_engine
    from mailer.ledger import Ledger

    engine = make_engine(db_url)
    ledger = Ledger(engine, Keyring.load(Path(key_file)))
    start.wait()
    seqs = 0
    for b in range(BATCHES):
        ids = ledger.append([send_event(worker * 100000 + b * PER_BATCH + i, campaign_id=worker)
                             for i in range(PER_BATCH)])
        assert ids == list(range(ids[0], ids[0] + PER_BATCH))  # one batch is one contiguous run
        seqs += len(ids)
    engine.dispose()
    return seqs


def test_concurrent_writers_make_one_valid_chain(runtime_factory: Any) -> None:
    rt = runtime_factory()
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(WORKERS + 1)
        with ctx.Pool(WORKERS) as pool:
            results = [pool.apply_async(append_worker, (rt.settings.database.url, str(rt.settings.keys.file), w, start))
                       for w in range(WORKERS)]
            start.wait()
            during = [rt.ledger.verify() for _ in range(3)]  # verifying while they write sees a consistent snapshot
            counts = [r.get(timeout=300) for r in results]
    assert counts == [BATCHES * PER_BATCH] * WORKERS
    assert all(v.ok for v in during), [v for v in during if not v.ok]
    v = rt.ledger.verify()
    assert v.ok, v
    assert v.entries == v.last_seq == WORKERS * BATCHES * PER_BATCH
    t = LedgerEntry.__table__
    with rt.engine.connect() as conn:
        per_worker = dict(conn.execute(select(t.c.campaign_id, func.count()).group_by(t.c.campaign_id)).all())
    assert per_worker == {w: BATCHES * PER_BATCH for w in range(WORKERS)}
