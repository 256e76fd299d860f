"""A stop event that SIGTERM and SIGINT set, safely, for the long-running commands."""

from __future__ import annotations

import signal
import threading


def stop_on_signals() -> threading.Event:
    """Return an event set by SIGTERM or SIGINT.

    The handler hands the ``set()`` to a short thread: a signal handler runs in the main
    thread, and if that thread is inside ``Event.wait()`` holding the event's lock, calling
    ``set()`` there deadlocks and the process ignores every later signal.
    """
    stop = threading.Event()

    def handle(_signum: int, _frame: object) -> None:
        threading.Thread(target=stop.set, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    return stop
