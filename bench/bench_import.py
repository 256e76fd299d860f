"""Contact import: rows per second and the child's peak memory, for a file and one ten times larger.

Each import runs in a fresh child process (SQLite file, new key file) so ru_maxrss is that
import's own peak. Memory must stay flat as the file grows: the ratio should be near 1.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CONDITIONS = ["osteoporosis", "osteopenia", "asthma", "hypertension", "diabetes", ""]
PROCEDURES = ["mammogram", "dexa", "ultrasound abdomen", "mri knee", "ct chest", ""]


def make_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Synthetic contacts on example.* domains (no real person)."""
    rnd = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "first_name", "last_name", "language", "newsletter_opt_in",
                    "conditions", "procedures", "last_exam_date"])
        for i in range(rows):
            w.writerow([f"patient{i}@example.org", f"First{i % 997}", f"Last{i % 1009}", rnd.choice(["en", "es"]),
                        rnd.choice(["true", "false"]), ";".join(filter(None, rnd.sample(CONDITIONS, 2))),
                        rnd.choice(PROCEDURES), f"20{rnd.randint(15, 25)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"])


_CHILD = r"""
import json, sys, time
from pathlib import Path
from bench.memory import peak_kb, reset_peak, rss_kb
from mailer.crypto import Keyring
from mailer.db import make_engine, migrate
from mailer.ledger import Ledger
from mailer.store.contacts import import_contacts
folder, csv_path = Path(sys.argv[1]), Path(sys.argv[2])
keyring = Keyring.generate()
keyring.save(folder / "keys.json")
engine = make_engine(f"sqlite:///{folder / 'bench.db'}")
migrate(engine)
reset_peak()
base = rss_kb() or 0
t0 = time.perf_counter()
r = import_contacts(engine, keyring, Ledger(engine, keyring), csv_path,
                    {"conditions": "list", "procedures": "list", "last_exam_date": "date"})
dt = time.perf_counter() - t0
print(json.dumps({"rows": r.inserted, "seconds": dt, "maxrss_kb": peak_kb(),
                  "before_kb": base}))
"""


def _import_in_child(rows: int, tmp: Path) -> dict[str, Any]:
    folder = tmp / f"run{rows}"
    folder.mkdir()
    path = folder / "contacts.csv"
    make_csv(path, rows)
    res = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(path)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent,
                         check=True)
    data: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    data["file_mb"] = path.stat().st_size / 1e6
    return data


def run(quick: bool) -> list[dict[str, Any]]:
    small, large = (10_000, 100_000) if quick else (100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="mailer-bench-import-") as d:
        a = _import_in_child(small, Path(d))
        b = _import_in_child(large, Path(d))
    rows = []
    for r in (a, b):
        n = r["rows"]
        rows.append({"measure": f"import {n:,} contacts", "value": n / r["seconds"], "unit": "rows/s",
                     "note": f"{r['seconds']:.1f}s, {r['file_mb']:.0f} MB CSV, one transaction, AES-GCM x3 + HMAC per row"})
        rows.append({"measure": f"peak memory, {n:,} rows", "value": r["maxrss_kb"] / 1024, "unit": "MiB",
                     "note": f"child VmHWM; {r['before_kb'] / 1024:.0f} MiB resident before the import started"})
    rows.append({"measure": "peak memory ratio, 10x rows", "value": b["maxrss_kb"] / a["maxrss_kb"], "unit": "x",
                 "note": "flat is ~1.0: rows stream in batches, duplicate detection uses a temp table"})
    return rows
