"""Container health checks, with no import of the CLI (they run every few seconds).

    python -m mailer.healthcheck smtp HOST PORT          the sink greets with 220
    python -m mailer.healthcheck http URL                 the URL answers 200
    python -m mailer.healthcheck heartbeat FILE MAX_AGE   the worker touched FILE recently

Exit 0 healthy, 1 not (with one line saying why).
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.request
from pathlib import Path


def smtp(host: str, port: int, timeout: float = 3.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        banner = s.recv(512).decode("ascii", "replace")
        s.sendall(b"QUIT\r\n")
    if not banner.startswith("220"):
        return f"no 220 greeting from {host}:{port}"
    return ""


def http(url: str, timeout: float = 3.0) -> str:
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
        return "" if resp.status == 200 else f"{url} answered {resp.status}"


def heartbeat(path: Path, max_age: float) -> str:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist yet"
    return "" if age <= max_age else f"{path} is {age:.0f}s old (limit {max_age:.0f}s)"


def main(argv: list[str]) -> int:
    try:
        kind, *args = argv
        if kind == "smtp":
            problem = smtp(args[0], int(args[1]))
        elif kind == "http":
            problem = http(args[0])
        elif kind == "heartbeat":
            problem = heartbeat(Path(args[0]), float(args[1]))
        else:
            problem = f"unknown check {kind!r}"
    except (ValueError, IndexError):
        problem = "usage: python -m mailer.healthcheck smtp HOST PORT | http URL | heartbeat FILE MAX_AGE"
    except OSError as e:
        problem = f"{type(e).__name__}: {e}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
