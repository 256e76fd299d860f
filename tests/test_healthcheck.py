"""The Docker health checks say "unhealthy" with one reason, and "healthy" only when it is so."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from mailer.healthcheck import main


def test_heartbeat_fresh_stale_and_missing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    beat = tmp_path / "worker.alive"
    assert main(["heartbeat", str(beat), "30"]) == 1
    assert "does not exist yet" in capsys.readouterr().err
    beat.touch()
    assert main(["heartbeat", str(beat), "30"]) == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert main(["heartbeat", str(beat), "30"]) == 1
    assert "old (limit 30s)" in capsys.readouterr().err


def test_smtp_needs_a_220_greeting(capsys) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["smtp", "127.0.0.1", str(port)]) == 1  # nothing listens there
    assert capsys.readouterr().err.startswith("unhealthy: ConnectionRefusedError")


def test_smtp_healthy_against_mailer_sink(tmp_path: Path) -> None:
    from mailer.sink import LocalSink

    sink = LocalSink(out=tmp_path / "out", port=0, report=lambda _line: None)
    port = sink.start()
    try:
        assert main(["smtp", "127.0.0.1", str(port)]) == 0
    finally:
        sink.stop()


def test_bad_usage_is_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["http", "ftp://example.org/"]) == 1
    assert main(["smtp", "127.0.0.1"]) == 1
    assert main(["nope"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(ln.startswith("unhealthy: ") for ln in lines)
