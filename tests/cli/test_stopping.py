"""SIGTERM stops the long-running commands (sink, worker, bounce receiver) even when it lands mid-wait."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import signal
    from mailer.cli.stopping import stop_on_signals

    stop = stop_on_signals()
    # The main thread holds the event's lock, as it does for a moment inside Event.wait(),
    # when the signal arrives: a handler calling stop.set() right here never returns.
    with stop._cond:
        signal.raise_signal(signal.SIGTERM)
    print("stopped" if stop.wait(10) else "not stopped")
""")


def test_a_signal_that_lands_while_the_wait_holds_its_lock_still_stops() -> None:
    res = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "stopped", res.stderr
