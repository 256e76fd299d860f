"""Segments: streaming evaluation over 1,000,000 contacts (--quick: 100,000), 5% authorized.

- build: an SQLite database of N contacts encrypted per row with the real Keyring (the
  AAD binds each ciphertext to its contact, so no ciphertext is shared), inserted by
  executemany batches of 10,000; every 20th contact holds a valid
  condition-targeted-marketing authorization, 0.5% are suppressed. Cached under
  bench-out/ by size (with its key file), so reruns skip the build.
- evaluate, each in a fresh child process reporting its own ru_maxrss:
  (a) segments/osteoporosis-followup.toml (clinical rules: authorization first, then
      decryption of the authorized contacts only), and
  (b) segments/newsletter.toml (non-PHI: everything in SQL, nothing decrypted),
  at N and at N/10, to show that peak memory does not grow with the number of contacts.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.memory import peak_kb, reset_peak, rss_kb

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out"
GENERATOR = 2  # bump when the generated data changes, so cached databases are rebuilt
AT = datetime(2026, 11, 28, 12, 0)
SEGMENTS = {"condition": "osteoporosis-followup", "non-PHI": "newsletter"}
BATCH = 10_000
AUTHORIZED_EVERY = 20  # 5%
SUPPRESSED_EVERY = 200  # 0.5%
CONDITIONS = ("osteoporosis", "osteopenia", "asthma", "diabetes", "hypertension", "scoliosis")
PROCEDURES = ("DEXA", "mammogram", "MRI knee", "CT chest", "ultrasound abdomen", "X-ray wrist")
AUTHORIZATION = {
    "scope": "condition-targeted-marketing",
    "information_description": "Diagnoses, procedures and exam dates held by Riverside Imaging",
    "discloser": "Riverside Imaging Center",
    "recipients": "Riverside Imaging Center and its email service provider",
    "purpose": "Tailored information about bone-density screening",
    "expires_at": datetime(2027, 12, 31),
    "signed_at": datetime(2026, 3, 1, 10),
    "signature_present": True, "statement_revocation": True, "statement_conditioning": True,
    "statement_redisclosure": True, "plain_language": True, "copy_provided": True, "signer": "patient",
    "compound": False, "treatment_conditioned": False, "known_false": False, "remuneration": False,
    "remuneration_statement": False, "document_sha256": "",
}


def _paths(n: int) -> tuple[Path, Path]:
    stem = OUT / f"segments-{n}-g{GENERATOR}"
    return stem.with_suffix(".db"), stem.with_suffix(".keys.json")


def _contact_rows(keyring: Any, start: int, n: int, rnd: random.Random) -> list[dict[str, Any]]:
    from mailer.store.contacts import aad

    created = datetime(2024, 1, 1)
    rows = []
    for i in range(start, start + n):
        email = f"patient{i}@example.com"
        h = keyring.lookup_hash(email)
        clinical = {
            "conditions": rnd.sample(CONDITIONS, rnd.choice((0, 1, 1, 2))),
            "procedures": rnd.sample(PROCEDURES, rnd.choice((0, 1, 2))),
            "last_exam_date": f"{rnd.randint(2019, 2026)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
        }
        rows.append({
            "email_hash": h,
            "email_enc": keyring.encrypt(email.encode(), aad("email", h)),
            "identity_enc": keyring.encrypt_json({"first_name": "Pat", "last_name": f"Doe{i}", "preferred_name": ""},
                                                 aad("identity", h)),
            "phi_enc": keyring.encrypt_json(clinical, aad("phi", h)),
            "key_id": keyring.active_key_id,
            "language": "es" if i % 5 == 0 else "en",
            "newsletter_opt_in": rnd.random() < 0.7,
            "created_at": created,
            "updated_at": created,
        })
    return rows


def build(n: int) -> float | None:
    """Build (or reuse) the database of n contacts; returns the build seconds, None if cached."""
    from sqlalchemy import insert

    from mailer.crypto import Keyring
    from mailer.db import make_engine, migrate
    from mailer.models import Authorization, Contact, Suppression
    from mailer.store.auth_records import encrypt_record

    db, keys = _paths(n)
    if db.exists() and keys.exists():
        return None
    OUT.mkdir(exist_ok=True)
    tmp = db.with_suffix(".building")
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    keyring = Keyring.generate()
    engine = make_engine(f"sqlite:///{tmp}")
    migrate(engine)
    rnd = random.Random(n)
    contacts, auths, supps = Contact.__table__, Authorization.__table__, Suppression.__table__  # type: ignore[attr-defined]
    try:
        for start in range(0, n, BATCH):
            rows = _contact_rows(keyring, start, min(BATCH, n - start), rnd)
            with engine.begin() as conn:
                conn.execute(insert(contacts), rows)  # executemany; ids are 1..n in order
                ids = range(start + 1, start + len(rows) + 1)
                conn.execute(insert(auths), [encrypt_record(keyring, {
                    **AUTHORIZATION, "contact_id": i, "created_at": AT.replace(year=2026, month=3),
                    "updated_at": AT.replace(year=2026, month=3)}) for i in ids if i % AUTHORIZED_EVERY == 0])
                conn.execute(insert(supps), [{"email_hash": r["email_hash"], "reason": "unsubscribe", "at": AT}
                                             for i, r in zip(ids, rows, strict=True) if i % SUPPRESSED_EVERY == 7])
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    keyring.save(keys, overwrite=True)
    tmp.rename(db)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    return time.perf_counter() - t0


def _child(db: str, keys: str, segment: str) -> None:
    """Runs in a fresh interpreter: evaluate one segment, print timings and memory."""
    import gc
    import resource

    from mailer.config import FieldSettings
    from mailer.crypto import Keyring
    from mailer.db import make_engine
    from mailer.segments import gate, load_segment, plan_segment
    from mailer.store import audience

    engine = make_engine(f"sqlite:///{db}")
    keyring = Keyring.load(Path(keys))
    plan = plan_segment(load_segment(ROOT / "segments" / f"{segment}.toml", FieldSettings()))
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM contact").scalar()  # open the file, warm the pool
    gc.collect()
    reset = reset_peak()
    base = rss_kb()
    t0 = time.perf_counter()
    counts = audience.evaluate(engine, keyring, plan, AT)
    seconds = time.perf_counter() - t0
    gate(plan, counts)
    hwm = peak_kb() if reset else None
    print(json.dumps({"seconds": seconds, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "base_kb": base, "eval_peak_kb": hwm, "counts": counts.as_dict()}))


def _measure(n: int, segment: str) -> dict[str, Any]:
    db, keys = _paths(n)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_segments", "--child", str(db), str(keys), segment],
        cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    sizes = (n, n // 10)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        built = build(size)
        rows.append({"measure": f"build {size:,} contacts (5% authorized)",
                     "value": round(built, 1) if built is not None else 0.0, "unit": "s",
                     "note": "per-row AES-GCM (email, identity, clinical), 10k-row executemany"
                     if built is not None else f"cached in bench-out/{_paths(size)[0].name}"})
    peaks: dict[tuple[str, int], float] = {}
    for kind, segment in SEGMENTS.items():
        for size in sizes:
            r = _measure(size, segment)
            c = r["counts"]
            # ru_maxrss survives fork+exec on Linux (it starts at the parent's RSS), so the
            # evaluation's own peak is VmHWM, reset once the child has started.
            exact = r["eval_peak_kb"] is not None
            peak_mb = (r["eval_peak_kb"] if exact else r["maxrss_kb"]) / 1024
            peaks[(kind, size)] = peak_mb
            label = f"{kind} segment ({segment}) over {size:,}"
            note = (f"considered {c['considered']:,}, authorized {c['authorized']:,}, "
                    f"matched {c['matched']:,}, suppressed {c['suppressed']:,}")
            rows.append({"measure": f"{label}: time", "value": round(r["seconds"], 2), "unit": "s", "note": note})
            rows.append({"measure": f"{label}: throughput", "value": round(size / r["seconds"]),
                         "unit": "contacts/s", "note": "contacts in the table per second of evaluation"})
            rows.append({"measure": f"{label}: peak RSS", "value": round(peak_mb, 1), "unit": "MB",
                         "note": (f"VmHWM of the child during evaluation; {(r['eval_peak_kb'] - r['base_kb']) / 1024:.1f} MB "
                                  f"above its {r['base_kb'] / 1024:.1f} MB before it") if exact
                         else "child ru_maxrss (includes start-up)"})
    for kind in SEGMENTS:
        ratio = peaks[(kind, sizes[0])] / peaks[(kind, sizes[1])]
        rows.append({"measure": f"{kind}: peak RSS at {sizes[0]:,} / at {sizes[1]:,}", "value": round(ratio, 3),
                     "unit": "x", "note": "about 1.0: memory does not grow with the number of contacts"})
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(*sys.argv[2:5])
    else:
        for row in run(quick="--quick" in sys.argv):
            print(row)
