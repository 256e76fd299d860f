"""The PHI lint (issue 13): detection and false alarms per half of the labelled corpus, and how
fast `mailer lint` starts and lints one template (targets: start under 0.5 s, lint under 20 ms)."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "templates" / "newsletter"
CONFIG = ROOT / "config" / "mailer.example.toml"


def _startup(runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `mailer lint --config X templates/newsletter` in a fresh process."""
    walls, cpus = [], []
    exe = [sys.executable, "-c", "import sys; from mailer.cli.entry import main; sys.argv[0] = 'mailer'; main()",
           "lint", "--config", str(CONFIG), str(SAMPLE)]
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(exe, cwd=ROOT, capture_output=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def run(quick: bool) -> list[dict[str, Any]]:
    from bench.lint_eval import evaluate

    rows = [row for half in ("tuning", "heldout") for row in evaluate(half).rows()]
    wall, cpu = _startup(3 if quick else 7)
    rows.append({"measure": "mailer lint: start and lint one template", "value": wall, "unit": "s",
                 "note": f"median wall of fresh processes; CPU {cpu:.2f} s; target < 0.5 s"})
    return rows
