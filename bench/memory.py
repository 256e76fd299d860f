"""A child process's own peak memory. On Linux ru_maxrss survives execve, so a child
reports its parent's peak; VmHWM, reset through /proc/self/clear_refs, does not."""

from __future__ import annotations

import resource
from pathlib import Path


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the resident high-water mark to the current RSS (Linux); False elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_kb() -> int | None:
    return _status_kb("VmRSS")


def peak_kb() -> int:
    """VmHWM since the last reset_peak(), else ru_maxrss."""
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
