"""Send throughput against a C sink (smtp-sink behind stunnel, implicit TLS, cert verified).

Issue 20. For each database (SQLite file, PostgreSQL in a fresh schema), connection count
K and size N, a bare aiosmtplib loop (same TLS, same message shape, pre-built messages)
and the full pipeline (`sending.send`) run alternately, each in a fresh child process:
bare, pipeline, bare, pipeline, ..., bare. Each pipeline run is compared with the mean of
the bare runs on either side of it; the reported ratio is the median of those. Machines
are noisy: compare the ratios, measured in one run, not the absolute rates.

Reported per row: msgs/s, pipeline/bare, client CPU per message (the child's process
CPU time over the send / messages; with several sender processes, their CPU too), CPU
of the sink pair per message, the child's peak RSS, and the 1-minute load average when
the row started. Targets (issue 20, 10,000 messages, K=4): pipeline/bare >= 0.80 on
SQLite and >= 0.75 on PostgreSQL; PostgreSQL CPU per message within 1.2x of SQLite's;
peak memory flat (within 10%) from 10,000 to 100,000.

`python -m bench csink --sizes 10000 --connections 4 --databases sqlite` is a run of a
few minutes. Postfix's smtp-sink and stunnel must be installed (the error says how).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.csink import CSink, SinkMissing, c_sink, cpu_seconds

PG_URL = os.environ.get("MAILER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Options:
    sizes: list[int] = field(default_factory=lambda: [10000, 100000])
    connections: list[int] = field(default_factory=lambda: [4, 8])
    databases: list[str] = field(default_factory=lambda: ["sqlite", "postgresql"])
    repeat: int = 1  # pipeline runs per cell, each between two bare runs
    processes: list[int] = field(default_factory=lambda: [1, 2, 3])
    pg_url: str = PG_URL


def _root() -> Path:
    return Path(__file__).resolve().parent.parent


def load() -> float:
    return os.getloadavg()[0]


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh, empty schema in the PostgreSQL database at URL; dropped afterwards. Yields a
    URL whose connections use it (search_path), so migrations and the run stay inside it."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _child(args: list[str], sink: CSink, env: dict[str, str] | None = None) -> dict[str, Any]:
    la = load()
    before = sum(cpu_seconds(p) for p in sink.pids)
    out = subprocess.run([sys.executable, "-m", "bench.bench_send", *args], check=False, capture_output=True,
                         text=True, cwd=_root(), timeout=3600, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed: {out.stderr.strip()[-800:]}")
    res = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    res["sink_us"] = (sum(cpu_seconds(p) for p in sink.pids) - before) / max(1, int(res["n"])) * 1e6
    res["load"] = la
    return res


def _db_url(db: str, folder: Path, stack: Any, pg_url: str) -> str:
    if db == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}"
    return str(stack.enter_context(pg_schema(pg_url)))


def measure_cell(sink: CSink, folder: Path, db: str, k: int, n: int, repeat: int, pg_url: str,
                 pyspy: str = "") -> dict[str, Any]:
    """bare, pipeline, bare, ... for one (database, K, N): the ratios and the medians."""
    from contextlib import ExitStack

    common = ["--k", str(k), "--port", str(sink.port), "--ca", str(sink.ca_file), "--tls", "implicit"]
    bares = [_child(["bare", "--n", str(n), *common], sink)]
    pipes: list[dict[str, Any]] = []
    ratios: list[float] = []
    for i in range(repeat):
        d = folder / f"{db}-k{k}-n{n}-{i}"
        d.mkdir(parents=True)
        with ExitStack() as stack:
            url = _db_url(db, d, stack, pg_url)
            env = {"BENCH_PYSPY": f"{pyspy}-{db}-{i}.json"} if pyspy else None
            args = ["pipeline", "--n", str(n), "--dir", str(d), "--db", url, *common]
            _child([*args, "--phase", "setup"], sink)  # contacts, campaign, frozen audience: not measured
            pipes.append(_child([*args, "--phase", "send"], sink, env))
        bares.append(_child(["bare", "--n", str(n), *common], sink))
        ratios.append(pipes[-1]["rate"] / ((bares[-2]["rate"] + bares[-1]["rate"]) / 2))

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    return {"db": db, "k": k, "n": n, "ratio": statistics.median(ratios), "ratios": ratios,
            "bare_rate": med(bares, "rate"), "bare_cpu": med(bares, "cpu_us"), "bare_sink": med(bares, "sink_us"),
            "bare_rss": max(r["maxrss_kb"] for r in bares) / 1024,
            "pipe_rate": med(pipes, "rate"), "pipe_cpu": med(pipes, "cpu_us"), "pipe_sink": med(pipes, "sink_us"),
            "pipe_rss": max(r["maxrss_kb"] for r in pipes) / 1024,
            "ledger_ok": all(r["ledger_ok"] for r in pipes), "sent": [r["sent"] for r in pipes],
            "loads": [r["load"] for r in (*bares, *pipes)]}


def processes_option() -> bool:
    """Does `mailer campaign send` have --processes (issue 20, the scale-out side)?"""
    out = subprocess.run([str(Path(sys.executable).with_name("mailer")), "campaign", "send", "--help"],
                         capture_output=True, text=True, cwd=_root(), timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    return "--processes" in out.stdout


def _rows_for(cell: dict[str, Any]) -> list[dict[str, Any]]:
    db, k, n = cell["db"], cell["k"], cell["n"]
    loads = f"load {min(cell['loads']):.2f}-{max(cell['loads']):.2f}"
    target = 0.80 if db == "sqlite" else 0.75
    met = "" if n != 10000 or k != 4 else (f"; target >= {target:.2f}" + ("" if cell["ratio"] >= target else " MISSED"))
    return [
        {"measure": f"C sink, bare loop, {db} cell, {n} msgs, K={k}", "value": cell["bare_rate"], "unit": "msgs/s",
         "note": f"CPU/msg client {cell['bare_cpu']:.0f} µs, sink {cell['bare_sink']:.0f} µs; "
                 f"peak RSS {cell['bare_rss']:.0f} MiB; {loads}"},
        {"measure": f"C sink, pipeline, {db}, {n} msgs, K={k}", "value": cell["pipe_rate"], "unit": "msgs/s",
         "note": f"CPU/msg client {cell['pipe_cpu']:.0f} µs, sink {cell['pipe_sink']:.0f} µs; "
                 f"peak RSS {cell['pipe_rss']:.0f} MiB; ledger verifies: {cell['ledger_ok']}; {loads}"},
        {"measure": f"C sink, pipeline / bare, {db}, {n} msgs, K={k}", "value": cell["ratio"], "unit": "ratio",
         "note": "median of " + ", ".join(f"{r:.2f}" for r in cell["ratios"]) + met},
    ]


def run(quick: bool, opts: Options | None = None) -> list[dict[str, Any]]:
    opts = opts or Options()
    if quick:
        opts = Options(sizes=[1000], connections=[4], databases=opts.databases, repeat=1, processes=[],
                       pg_url=opts.pg_url)
    try:
        from bench.csink import find_tools

        find_tools()
    except SinkMissing as err:
        print(f"C sink bench skipped: {err}", file=sys.stderr)
        return [{"measure": "C sink bench", "value": "skipped", "note": str(err)}]
    rows: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mailer-csink-") as tmp:
        folder = Path(tmp)
        with c_sink(folder / "sink") as sink:
            common = ["--k", "4", "--port", str(sink.port), "--ca", str(sink.ca_file), "--tls", "implicit"]
            _child(["bare", "--n", "200", *common], sink)  # warm-up: imports, page cache
            for n in opts.sizes:
                for k in opts.connections:
                    for db in opts.databases:
                        print(f"  C sink: {db}, {n} msgs, K={k} (load {load():.2f})", file=sys.stderr)
                        cell = measure_cell(sink, folder, db, k, n, opts.repeat, opts.pg_url,
                                            pyspy=os.environ.get("BENCH_PYSPY_PREFIX", ""))
                        cells.append(cell)
                        rows += _rows_for(cell)
            rows += _summary(cells)
            rows += _ledger_rows(opts, folder)
            if opts.processes and "postgresql" in opts.databases:
                rows += _processes_rows(opts, sink, folder, min(opts.sizes))
    return rows


def ledger_hold(db_url: str, folder: Path, cycles: int = 200, batch: int = 32) -> dict[str, float]:
    """How long a commit cycle holds the ledger's lock (SQLite's write lock, PostgreSQL's
    advisory lock): `commit_cycle` with BATCH attempt entries and nothing else, the way the
    sender appends, timed from its start to its commit. The lock is taken inside the cycle,
    so this bounds the hold from above; per entry, it is what several senders serialise on."""
    import time

    from bench.bench_send import _settings
    from mailer.crypto import Keyring
    from mailer.ledger import SEND, Event
    from mailer.runtime import Runtime
    from mailer.store import deliveries as dq

    folder.mkdir(parents=True, exist_ok=True)
    settings = _settings(folder, 25, folder / "ca.pem", 4, db=db_url)
    keyring = Keyring.generate()
    keyring.save(settings.keys.file)
    rt = Runtime(settings, _keyring=keyring, initialising=True)
    rt.migrate()

    def outcome(i: int) -> dq.Outcome:
        return dq.Outcome(i, dq.DEFERRED, Event(
            kind=SEND, outcome="deferred", campaign_id=1, contact_id=i, recipient_hash=f"{i:064x}",
            template_hash="b" * 64, message_hash=f"{i * 7919:064x}", message_id=f"<1.{i}@bench.example>",
            relay="localhost:465", tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384", smtp_code=451,
            smtp_text="4.3.0 try again later", detail={"attempt": 1, "run": 0}), 451)

    took: list[float] = []
    with dq.held_writer(rt.engine) as held:
        for c in range(cycles):
            outs = [outcome(c * batch + j) for j in range(batch)]
            t0 = time.perf_counter()
            dq.commit_cycle(rt.engine, rt.ledger, outcomes=outs, conn=held)
            took.append(time.perf_counter() - t0)
    ok = rt.ledger.verify().ok
    rt.dispose()
    per_cycle = statistics.median(took)
    return {"cycle_ms": per_cycle * 1e3, "entry_us": per_cycle / batch * 1e6, "ok": float(ok)}


def _ledger_rows(opts: Options, folder: Path) -> list[dict[str, Any]]:
    from contextlib import ExitStack

    rows = []
    for db in opts.databases:
        la = load()
        with ExitStack() as stack:
            url = _db_url(db, folder / f"ledger-{db}", stack, opts.pg_url) if db == "postgresql" else \
                f"sqlite:///{folder / f'ledger-{db}' / 'bench.db'}"
            (folder / f"ledger-{db}").mkdir(parents=True, exist_ok=True)
            r = ledger_hold(url, folder / f"ledger-{db}")
        rows.append({"measure": f"ledger lock held per commit cycle of 32 entries, {db}", "value": r["entry_us"],
                     "unit": "µs/entry", "note": f"{r['cycle_ms']:.2f} ms a cycle (median of 200); at 1,000 msgs/s "
                     f"the senders together hold it {r['entry_us'] / 10:.1f}% of the time; ledger verifies: "
                     f"{bool(r['ok'])}; load {la:.2f}"})
    return rows


def _summary(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PG vs SQLite CPU per message, and memory from the smallest to the largest size."""
    out: list[dict[str, Any]] = []
    by = {(c["db"], c["k"], c["n"]): c for c in cells}
    for (db, k, n), c in by.items():
        if db != "postgresql" or ("sqlite", k, n) not in by:
            continue
        s = by[("sqlite", k, n)]
        r = c["pipe_cpu"] / s["pipe_cpu"]
        out.append({"measure": f"C sink, PG / SQLite client CPU per message, {n} msgs, K={k}", "value": r,
                    "unit": "ratio", "note": f"{c['pipe_cpu']:.0f} vs {s['pipe_cpu']:.0f} µs; target <= 1.20"
                                             + ("" if r <= 1.2 else " MISSED")})
    sizes = sorted({c["n"] for c in cells})
    if len(sizes) > 1:
        for (db, k, n), c in by.items():
            if n != sizes[-1] or (db, k, sizes[0]) not in by:
                continue
            small = by[(db, k, sizes[0])]
            growth = c["pipe_rss"] / small["pipe_rss"] - 1
            out.append({"measure": f"C sink, pipeline peak RSS {sizes[0]} -> {n}, {db}, K={k}", "value": growth * 100,
                        "unit": "%", "note": f"{small['pipe_rss']:.0f} -> {c['pipe_rss']:.0f} MiB; target within 10%"
                                             + ("" if abs(growth) <= 0.10 else " MISSED")})
    return out


def _processes_rows(opts: Options, sink: CSink, folder: Path, n: int) -> list[dict[str, Any]]:
    """1, 2, 3 sender processes on PostgreSQL through `campaign send --processes N`, when the
    code has that option; otherwise say so (nothing is simulated)."""
    if not processes_option():
        return [{"measure": f"C sink, PostgreSQL, {p} sender process(es), {n} msgs", "value": "n/a",
                 "note": "`mailer campaign send --processes` is not available in this code (issue 20 scale-out); "
                         "not measured"} for p in opts.processes]
    rows: list[dict[str, Any]] = []
    base: float | None = None
    for p in opts.processes:
        la = load()
        d = folder / f"procs{p}"
        d.mkdir(parents=True)
        try:
            with pg_schema(opts.pg_url) as url:
                out = subprocess.run([sys.executable, "-m", "bench.bench_csink", "cli-send", "--n", str(n),
                                      "--processes", str(p), "--port", str(sink.port), "--ca", str(sink.ca_file),
                                      "--db", url, "--dir", str(d)], capture_output=True, text=True, cwd=_root(),
                                     timeout=3600)
            if out.returncode != 0:
                raise RuntimeError(out.stderr.strip()[-600:])
            res = json.loads(out.stdout.strip().splitlines()[-1])
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
            rows.append({"measure": f"C sink, PostgreSQL, {p} sender process(es), {n} msgs", "value": "failed",
                         "note": " ".join(str(err).split())[:300]})
            continue
        base = base if base is not None else res["cpu_us"]
        rows.append({"measure": f"C sink, PostgreSQL, {p} sender process(es), {n} msgs", "value": res["rate"],
                     "unit": "msgs/s",
                     "note": f"`campaign send --processes {p}`: {res['sent']} sent, wall {res['wall']:.1f}s "
                             f"(CLI start-up included); CPU/msg all processes {res['cpu_us']:.0f} µs "
                             f"({(res['cpu_us'] / base - 1) * 100:+.0f}% vs the first row; target <= +15%); "
                             f"largest child RSS {res['maxrss_kb'] / 1024:.0f} MiB; load {la:.2f}"})
    return rows


def child_cli_send(n: int, processes: int, port: int, ca_file: Path, db: str, folder: Path,
                   flag: bool = True) -> dict[str, Any]:
    """A real `mailer campaign send ID --processes N` on an approved campaign, as a signed-in
    account; CPU is this child's waited-for children (the CLI and the senders it starts)."""
    import resource
    import time

    from bench.bench_send import _contacts_csv, _settings
    from mailer import approvals, campaigns
    from mailer.crypto import Keyring
    from mailer.runtime import Runtime
    from mailer.store import deliveries as dq
    from mailer.store.contacts import import_contacts
    from tests.helpers_accounts import token

    settings = _settings(folder, port, ca_file, 4, tls="implicit", db=db)
    keyring = Keyring.generate()
    keyring.save(settings.keys.file)
    rt = Runtime(settings, _keyring=keyring, initialising=True)
    rt.migrate()
    _contacts_csv(folder / "contacts.csv", n)
    import_contacts(rt.engine, rt.keyring, rt.ledger, folder / "contacts.csv", dict(settings.fields.clinical))
    c = campaigns.create(rt, name="bench", purpose="newsletter", template=_root() / "templates/newsletter",
                         segment=_root() / "segments/newsletter.toml", author="marketer")
    cid = c.id or 0
    campaigns.submit(rt, cid, actor="marketer")
    approvals.approve(rt, cid, reviewer="reviewer")
    tok = token(rt, "sender")
    config = folder / "mailer.toml"
    _write_toml(settings, config)
    args = [str(Path(sys.executable).with_name("mailer")), "--config", str(config), "campaign", "send", str(cid)]
    if flag:
        args += ["--processes", str(processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "MAILER_TOKEN": tok}, timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"campaign send exited {out.returncode}: {out.stdout[-400:]} {out.stderr[-400:]}")
    sent = dq.counts(rt.engine, cid).get(dq.SENT, 0)
    rt.dispose()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"n": n, "sent": sent, "wall": wall, "rate": sent / wall, "cpu_us": cpu / max(1, sent) * 1e6,
            "maxrss_kb": after.ru_maxrss}


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(x)}" for k, x in v.items() if x is not None) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v)  # numbers, and strings in TOML's basic-string escapes


def _write_toml(settings: Any, path: Path) -> None:
    """The settings as a TOML file for the `mailer` subprocess (as tests/helpers_workflow does)."""
    data = settings.model_dump(mode="json", exclude={"source"})
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    import argparse

    if sys.argv[1:2] == ["cli-send"]:  # a child of _processes_rows
        cp = argparse.ArgumentParser()
        for name in ("--n", "--processes", "--port"):
            cp.add_argument(name, type=int, required=True)
        cp.add_argument("--ca", type=Path, required=True)
        cp.add_argument("--db", required=True)
        cp.add_argument("--dir", type=Path, required=True)
        cp.add_argument("--no-flag", action="store_true", help="plain `campaign send` (checks this driver)")
        c = cp.parse_args(sys.argv[2:])
        res = child_cli_send(c.n, c.processes, c.port, c.ca, c.db, c.dir, flag=not c.no_flag)
        sys.stdout.write(json.dumps(res) + "\n")
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    a = ap.parse_args()
    for r in run(False, options_from(a)):
        print(json.dumps(r))


def add_arguments(ap: Any) -> None:
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="messages per run, comma-separated (default 10000,100000)")
    ap.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="K, comma-separated (default 4,8)")
    ap.add_argument("--databases", type=lambda s: s.split(","), default=None,
                    help="sqlite,postgresql (default both; PostgreSQL at MAILER_BENCH_POSTGRES_URL or " + PG_URL + ")")
    ap.add_argument("--repeat", type=int, default=None, help="pipeline runs per cell, alternating with bare (default 1)")
    ap.add_argument("--processes", type=lambda s: [int(x) for x in s.split(",") if x], default=None,
                    help="sender process counts on PostgreSQL (default 1,2,3; '' for none)")


def options_from(a: Any) -> Options:
    o = Options()
    for name in ("sizes", "connections", "databases", "repeat", "processes"):
        v = getattr(a, name, None)
        if v is not None:
            setattr(o, name, v)
    bad = [d for d in o.databases if d not in ("sqlite", "postgresql")]
    if bad:
        raise SystemExit(f"unknown database {bad[0]!r}: use sqlite, postgresql")
    return o


if __name__ == "__main__":
    main()
