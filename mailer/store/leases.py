"""Sender leases: several senders on one campaign run without duplicates (issue 20).

Each sender process registers a lease (`send_lease`, one row per process) and renews it
with a heartbeat. Rows it works on carry its owner id in `delivery.worker`:

* reserved: still `pending`, handed to this sender in blocks (`reserve`) so that senders
  do not read, check and compose the same rows. A reservation is only a hint: the claim
  itself (`deliveries.commit_cycle`) is guarded by the row's status, so a row is claimed
  once whatever the reservations say. Rows reserved by a sender that is gone are free.
* claimed: in flight. Such a row becomes `uncertain` only when its owner's lease has
  expired (`sweep`), i.e. the process died; never because another sender started.

A lease expires `lease_seconds` after its last heartbeat. On the same host a lease whose
process no longer exists is expired at once (`reap`), so a killed sender restarted on the
same machine reports its in-flight rows without waiting for the timeout.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, text

from mailer.db import writing
from mailer.ledger import SEND, Event, Ledger
from mailer.models import utcnow

DEFAULT_LEASE_SECONDS = 30.0
RESERVE_BLOCK = 64  # the least rows reserved at a time; a sender takes 4 windows (claim_batch)


def host_id() -> str:
    """This machine's name plus its pid namespace: pids are comparable only inside it."""
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return f"{socket.gethostname()[:40]}/{ns}"[:64]


def new_owner() -> str:
    """A sender's owner id: pid and random bits, never reused by a later process."""
    return f"{os.getpid()}.{secrets.token_hex(6)}@{socket.gethostname()[:40]}"[:64]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register(engine: Engine, owner: str, campaign_id: int, run: int, *, seconds: float,
             clock: Callable[[], float] = time.time) -> None:
    """The lease goes in before the first claim, so a sweep never sees our rows without it."""
    now = clock()
    with writing(engine) as conn:
        conn.execute(text("DELETE FROM send_lease WHERE owner = :o"), {"o": owner})
        conn.execute(text("INSERT INTO send_lease (owner, campaign_id, run, host, pid, started_at, expires_at) "
                          "VALUES (:o, :c, :r, :h, :p, :s, :e)"),
                     {"o": owner, "c": campaign_id, "r": run, "h": host_id(), "p": os.getpid(), "s": now,
                      "e": now + seconds})


def renew(engine: Engine, owner: str, *, seconds: float, clock: Callable[[], float] = time.time) -> bool:
    """The heartbeat. False when the lease is gone (another process judged us dead)."""
    with writing(engine) as conn:
        n = conn.execute(text("UPDATE send_lease SET expires_at = :e WHERE owner = :o"),
                         {"e": clock() + seconds, "o": owner}).rowcount
    return bool(n)


def release(engine: Engine, owner: str) -> None:
    """A sender that ends normally has recorded or released every row it claimed."""
    with writing(engine) as conn:
        conn.execute(text("DELETE FROM send_lease WHERE owner = :o"), {"o": owner})


def reap(engine: Engine, campaign_id: int, *, clock: Callable[[], float] = time.time) -> int:
    """Expire at once the leases of this host whose process is gone (SIGKILL, OOM)."""
    here = host_id()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT owner, pid FROM send_lease WHERE campaign_id = :c AND host = :h "
                                 "AND expires_at > :now"), {"c": campaign_id, "h": here, "now": clock()}).all()
    dead = [r.owner for r in rows if r.pid != os.getpid() and not _pid_alive(r.pid)]
    if dead:
        with writing(engine) as conn:
            conn.execute(text("UPDATE send_lease SET expires_at = 0 WHERE owner IN :d")
                         .bindparams(bindparam("d", expanding=True)), {"d": dead})
    return len(dead)


def live_owners(engine: Engine, campaign_id: int, *, clock: Callable[[], float] = time.time) -> list[str]:
    """Owners with an unexpired lease on the campaign, in a stable order."""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT owner FROM send_lease WHERE campaign_id = :c AND "
                                                "expires_at > :now ORDER BY owner"),
                                           {"c": campaign_id, "now": clock()})]


_NOT_LIVE = ("(d.worker IS NULL OR NOT EXISTS (SELECT 1 FROM send_lease l WHERE l.owner = d.worker "
             "AND l.expires_at > :now))")
# Constant statements (identifiers fixed here, every value bound).
_PICK = ("SELECT d.id FROM delivery d WHERE d.campaign_id = :c AND d.run = :r AND d.status IN :st AND "  # noqa: S608
         + _NOT_LIVE + " ORDER BY d.id LIMIT :n")
_ORPHANS = ("SELECT d.id, d.contact_id, d.message_id, d.worker FROM delivery d "  # noqa: S608
            "WHERE d.campaign_id = :c AND d.run = :r AND d.status = 'claimed' AND " + _NOT_LIVE + " ORDER BY d.id")


def reserve(engine: Engine, owner: str, campaign_id: int, run: int, statuses: Sequence[str], *,
            n: int = RESERVE_BLOCK, clock: Callable[[], float] = time.time) -> list[int]:
    """Hand the next N free rows in STATUSES to OWNER (ids, in order); [] when none is left.

    Free: not reserved or claimed by a live sender. On PostgreSQL rows another sender is
    reserving right now are skipped (FOR UPDATE SKIP LOCKED); on SQLite the write lock
    (BEGIN IMMEDIATE) makes reservations take turns."""
    params: dict[str, Any] = {"c": campaign_id, "r": run, "st": list(statuses), "now": clock(), "n": n}
    with writing(engine) as conn:
        pg = conn.dialect.name == "postgresql"
        pick = _PICK + (" FOR UPDATE OF d SKIP LOCKED" if pg else "")
        ids = [r[0] for r in conn.execute(text(pick).bindparams(bindparam("st", expanding=True)), params)]
        if ids:
            conn.execute(text("UPDATE delivery SET worker = :me WHERE id IN :ids")
                         .bindparams(bindparam("ids", expanding=True)), {"me": owner, "ids": ids})
    return ids


def sweep(engine: Engine, ledger: Ledger, campaign_id: int, run: int, *,
          clock: Callable[[], float] = time.time) -> int:
    """Rows claimed by a sender whose lease has expired (it died): `uncertain`, with a ledger
    entry each, never resent without an operator. Rows of live senders are left alone.

    One statement picks the rows and checks the leases, so a sender that registered and
    claimed meanwhile is seen with its lease (it registers before its first claim)."""
    reap(engine, campaign_id, clock=clock)
    with writing(engine) as conn:
        lock = " FOR UPDATE OF d" if conn.dialect.name == "postgresql" else ""
        rows = conn.execute(text(_ORPHANS + lock),
                            {"c": campaign_id, "r": run, "now": clock()}).all()
        if not rows:
            return 0
        conn.execute(text("UPDATE delivery SET status = 'uncertain', updated_at = :t WHERE id IN :ids "
                          "AND status = 'claimed'").bindparams(bindparam("ids", expanding=True)),
                     {"t": utcnow(), "ids": [r.id for r in rows]})
        ledger.append_in(conn, [Event(kind=SEND, outcome="uncertain", campaign_id=campaign_id,
                                      contact_id=r.contact_id, message_id=r.message_id,
                                      detail={"delivery": r.id, "run": run, "lease": r.worker or ""})
                                for r in rows])
    return len(rows)


def held_elsewhere(engine: Engine, campaign_id: int, run: int, owner: str, statuses: Sequence[str], *,
                   clock: Callable[[], float] = time.time) -> int:
    """Rows in STATUSES that other live senders have reserved: a sender with nothing left of
    its own waits for them instead of ending, and takes them over if their sender dies."""
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM delivery d JOIN send_lease l ON l.owner = d.worker WHERE d.campaign_id = :c "
            "AND d.run = :r AND d.status IN :st AND l.owner <> :me AND l.expires_at > :now")
            .bindparams(bindparam("st", expanding=True)),
            {"c": campaign_id, "r": run, "st": list(statuses), "me": owner, "now": clock()}).scalar() or 0)


class Heartbeat:
    """Renews a lease every `seconds / 3` from a thread of its own, so a busy event loop
    (a long commit, a slow relay) never lets a live sender's lease run out."""

    def __init__(self, engine: Engine, owner: str, *, seconds: float,
                 on_beat: Callable[[], None] | None = None) -> None:
        self.engine, self.owner, self.seconds = engine, owner, seconds
        self.on_beat = on_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{owner[:16]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(max(0.2, self.seconds / 3)):
            try:
                renew(self.engine, self.owner, seconds=self.seconds)
                if self.on_beat is not None:
                    self.on_beat()
            except Exception:  # noqa: BLE001, S112 - the next beat tries again; the lease has slack
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
