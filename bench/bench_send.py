"""Send throughput: the full pipeline against a bare aiosmtplib loop, same sink, same K, same run.

The sink (`python -m mailer.devsink`, aiosmtpd with STARTTLS) runs in its own process so
it does not share the client's interpreter. Each measurement runs in a fresh child
process, so its peak RSS (VmHWM, reset at the child's start) is its own:

- bare: K reused aiosmtplib connections (STARTTLS, verified) sending N pre-built
  messages, one recipient each; nothing else. Both rates include opening the K
  connections (TCP, TLS handshake, EHLO twice).
- pipeline: `sending.send` on an SQLite ledger for a campaign of N personalized messages:
  claim, suppression and authorization checks, render, rendered-output lint, compose,
  send over the pool, batched record with hash-chained ledger entries.
- pipeline + VERP: the same with `bounces.domain` set, so every message also gets a
  random return-path token whose hash is inserted at the claim (issue 19).

Target (issue 6): pipeline >= 80% of bare. Compare the ratio, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.memory import peak_kb, reset_peak, rss_kb

K = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(folder: Path, port: int, ca_file: Path, k: int, *, tls: str = "starttls", db: str = "",
              **extra: Any) -> Any:
    from mailer.config import settings_from_mapping

    data: dict[str, Any] = {
        "database": {"url": db or f"sqlite:///{folder / 'bench.db'}"},
        "keys": {"file": str(folder / "keys.json")},
        "center": {"name": "Riverside Imaging Center", "postal_address": "100 Main Street, Springfield, IL 62701",
                   "phone": "(217) 555-0100", "website": "https://riverside-imaging.example"},
        "sender": {"from_address": "news@riverside-imaging.example", "from_name": "Riverside Imaging",
                   "envelope_from": "bounces@riverside-imaging.example", "list_id": "news.riverside-imaging.example"},
        "smtp": {"host": "localhost", "port": port, "tls": tls, "ca_file": str(ca_file), "connections": k,
                 "local_hostname": "bench.riverside-imaging.example", "operated_by_covered_entity": True},
        "unsubscribe": {"base_url": "https://riverside-imaging.example/u/"},
        "limits": {"claim_batch": 64},  # W, the in-flight window: at most 64 uncertain after a crash
    }
    for key, value in extra.items():
        data.setdefault(key, {}).update(value)
    return settings_from_mapping(data, source="<bench>")


def _contacts_csv(path: Path, n: int) -> None:
    import csv

    firsts = ["Ana", "Ben", "Carla", "Dmitri", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jun", "Kenji", "Lena"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "first_name", "last_name", "preferred_name", "language", "newsletter_opt_in",
                    "conditions", "procedures", "last_exam_date"])
        for i in range(n):
            w.writerow([f"patient{i:06d}@example.com", firsts[i % len(firsts)], "Doe", "", "en", "true", "", "", ""])


def _root() -> Path:
    return Path(__file__).resolve().parent.parent


# -- children ---------------------------------------------------------------------------
def child_bare(n: int, k: int, port: int, ca_file: Path, tls: str = "starttls") -> dict[str, Any]:
    """N pre-built, personalized messages over K reused connections: the transport's ceiling.
    TLS as the pipeline's transport does it: STARTTLS or implicit, verified."""
    reset_peak()
    import aiosmtplib

    from mailer.compose import Composer
    from mailer.templates import compile_template
    from mailer.transport import tls_context

    template = compile_template(_root() / "templates/newsletter")
    comp = Composer(from_address="news@riverside-imaging.example", envelope_from="bounces@riverside-imaging.example",
                    list_id="news.riverside-imaging.example", campaign_id=1)
    center = {"name": "Riverside Imaging Center", "postal_address": "100 Main Street, Springfield, IL 62701",
              "phone": "(217) 555-0100", "website": "https://riverside-imaging.example"}
    msgs = []
    for i in range(n):
        url = f"https://riverside-imaging.example/u/tok{i:019d}"
        r = template.render({"contact": {"first_name": f"Pat{i}", "preferred_name": "", "language": "en"},
                             "center": center, "campaign": {"name": "bench"}, "unsubscribe_url": url})
        msgs.append(comp.compose(recipient=f"patient{i:06d}@example.com", rendered=r,
                                 message_id=comp.message_id(i), unsubscribe_url=url))
    ctx = tls_context(ca_file)

    async def main() -> float:
        implicit = tls == "implicit"
        clients = [aiosmtplib.SMTP(hostname="localhost", port=port, start_tls=not implicit, use_tls=implicit,
                                   tls_context=ctx,
                                   local_hostname="bench.example", timeout=30) for _ in range(k)]
        # Timed from before the connections open, as the pipeline's rate is (its pool opens
        # them as its senders start); opened concurrently, the fastest way for this loop.
        started, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(c.connect() for c in clients))

        async def worker(c: aiosmtplib.SMTP, mine: list[Any]) -> None:
            for m in mine:
                await c.sendmail(m.envelope_from, [m.recipient], m.data)

        await asyncio.gather(*(worker(c, msgs[j::k]) for j, c in enumerate(clients)))
        elapsed, cpu[0] = time.perf_counter() - started, time.process_time() - cpu0
        for c in clients:
            await c.quit()
        return elapsed

    cpu = [0.0]
    elapsed = asyncio.run(main())
    return {"n": n, "elapsed": elapsed, "rate": n / elapsed, "maxrss_kb": peak_kb(), "cpu_us": cpu[0] / n * 1e6}


def child_pipeline(n: int, k: int, port: int, ca_file: Path, folder: Path, dkim: bool = False,
                   verp: bool = False, tls: str = "starttls", db: str = "", phase: str = "all") -> dict[str, Any]:
    """PHASE "all": set up and send in this process. "setup": a fresh database with N contacts
    and a frozen campaign, nothing sent. "send": send the campaign "setup" made, in a fresh
    process, so the peak RSS is the send's own (not the import's, nor `ledger verify`'s)."""
    reset_peak()
    from mailer import campaigns, sending
    from mailer.crypto import Keyring
    from mailer.runtime import Runtime
    from mailer.store.contacts import import_contacts

    settings = _settings(folder, port, ca_file, k, tls=tls, db=db, dkim={"enabled": dkim, "domain": "riverside-imaging.example",
                                                          "selector": "mailer"},
                         bounces={"domain": "bounces.riverside-imaging.example" if verp else ""})
    freeze = 0.0
    if phase == "send":
        rt = Runtime(settings, _keyring=Keyring.load(settings.keys.file))
        cid = int((folder / "campaign-id").read_text())
    else:
        keyring = Keyring.generate()
        if dkim:
            from mailer.dkim import generate_key

            keyring.dkim_private_pem = generate_key("ed25519")
        keyring.save(settings.keys.file)
        rt = Runtime(settings, _keyring=keyring, initialising=True)  # a fresh bench database
        rt.migrate()
        csv_path = folder / "contacts.csv"
        _contacts_csv(csv_path, n)
        import_contacts(rt.engine, rt.keyring, rt.ledger, csv_path, dict(settings.fields.clinical))
        c = campaigns.create(rt, name="bench", purpose="newsletter", template=_root() / "templates/newsletter",
                             segment=_root() / "segments/newsletter.toml", author="bench")
        cid = c.id or 0
        started = time.perf_counter()
        sending.prepare(rt, campaigns.get(rt, cid))  # freeze the audience: not part of the send rate
        freeze = time.perf_counter() - started
        if phase == "setup":
            (folder / "campaign-id").write_text(str(cid))
            rt.dispose()
            return {"n": n, "cid": cid, "freeze": freeze}
    spy = _pyspy(os.environ.get("BENCH_PYSPY", ""))
    reset_peak()
    rss0 = rss_kb() or 0
    cpu0 = time.process_time()
    summary = asyncio.run(sending.send(rt, cid, preflight=lambda rt, campaign: None))
    cpu = time.process_time() - cpu0
    peak = peak_kb()  # the send's: before `ledger verify` reads the chain
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        spy.wait(60)
    ok = rt.ledger.verify().ok
    rt.dispose()
    return {"n": n, "sent": summary.sent, "elapsed": summary.elapsed, "rate": summary.sent / summary.elapsed,
            "freeze": freeze, "ledger_ok": ok, "maxrss_kb": peak, "rss_before_kb": rss0, "cpu_us": cpu / n * 1e6}


def _pyspy(out: str) -> subprocess.Popen[bytes] | None:
    """BENCH_PYSPY=FILE: a py-spy profile (speedscope JSON) of the send alone, not the set-up."""
    if not out:
        return None
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(os.getpid()),
                            "--rate", "250", "--format", "speedscope", "--output", out, "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)  # let it attach
    return spy


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc), to charge the sink per message."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(args: list[str], sink_pid: int | None = None) -> dict[str, Any]:
    before = _cpu_seconds(sink_pid) if sink_pid else 0.0
    out = subprocess.run([sys.executable, "-m", "bench.bench_send", *args], check=True, capture_output=True, text=True,
                         cwd=_root(), timeout=1800)
    res = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if sink_pid:  # includes the child's connection setup, a few ms
        res["sink_us"] = (_cpu_seconds(sink_pid) - before) / max(1, int(res["n"])) * 1e6
    return res


# -- the runner -------------------------------------------------------------------------
def run(quick: bool) -> list[dict[str, Any]]:
    sizes = [300] if quick else [2000, 10000]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        folder = Path(tmp)
        from mailer.devcerts import make_dev_certs

        certs = make_dev_certs(folder / "certs")
        port = _free_port()
        sink = subprocess.Popen([sys.executable, "-m", "mailer.devsink", "--port", str(port), "--cert",
                                 str(certs.cert_file), "--key", str(certs.key_file)],
                                stdout=subprocess.PIPE, text=True, cwd=_root())
        try:
            assert sink.stdout is not None
            line = sink.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError("the sink did not start")
            common = ["--k", str(K), "--port", str(port), "--ca", str(certs.ca_file)]
            _child(["bare", "--n", "200", *common])  # warm-up: imports, page cache
            for n in sizes:
                # bare, pipeline, bare: the sink and the machine drift; compare with the mean
                before = _child(["bare", "--n", str(n), *common], sink.pid)
                d = folder / f"p{n}"
                d.mkdir()
                pipe = _child(["pipeline", "--n", str(n), "--dir", str(d), *common], sink.pid)
                dv = folder / f"v{n}"
                dv.mkdir()
                verp = _child(["pipeline", "--n", str(n), "--dir", str(dv), "--verp", *common], sink.pid)
                after = _child(["bare", "--n", str(n), *common], sink.pid)
                bare = {"rate": (before["rate"] + after["rate"]) / 2,
                        "maxrss_kb": max(before["maxrss_kb"], after["maxrss_kb"]),
                        "cpu_us": (before["cpu_us"] + after["cpu_us"]) / 2,
                        "sink_us": (before["sink_us"] + after["sink_us"]) / 2,
                        "spread": f"{before['rate']:.0f} before, {after['rate']:.0f} after"}
                ratio = pipe["rate"] / bare["rate"]
                rows += [
                    {"measure": f"bare aiosmtplib loop, {n} msgs, K={K}", "value": bare["rate"], "unit": "msgs/s",
                     "note": f"mean of {bare['spread']}; CPU/msg client {bare['cpu_us']:.0f} µs, "
                             f"sink {bare['sink_us']:.0f} µs; peak RSS {bare['maxrss_kb'] / 1024:.0f} MiB"},
                    {"measure": f"full pipeline, {n} msgs, K={K}", "value": pipe["rate"], "unit": "msgs/s",
                     "note": f"CPU/msg client {pipe['cpu_us']:.0f} µs, sink {pipe['sink_us']:.0f} µs; "
                             f"peak RSS {pipe['maxrss_kb'] / 1024:.0f} MiB; freeze {pipe['freeze']:.1f}s; "
                             f"ledger verifies: {pipe['ledger_ok']}"},
                    {"measure": f"pipeline / bare, {n} msgs", "value": ratio * 100, "unit": "%",
                     "note": "target >= 80%" + ("" if ratio >= 0.8 else " (MISSED)")},
                    {"measure": f"full pipeline + VERP return path, {n} msgs", "value": verp["rate"], "unit": "msgs/s",
                     "note": f"{verp['rate'] / bare['rate'] * 100:.0f}% of bare; CPU/msg client {verp['cpu_us']:.0f} µs "
                             f"(a token and its row per message, issue 19); ledger verifies: {verp['ledger_ok']}"},
                ]
            if not quick:
                n = sizes[0]
                d = folder / f"dkim{n}"
                d.mkdir()
                pipe = _child(["pipeline", "--n", str(n), "--dir", str(d), "--dkim", *common], sink.pid)
                rows.append({"measure": f"full pipeline + DKIM Ed25519, {n} msgs", "value": pipe["rate"],
                             "unit": "msgs/s", "note": f"CPU/msg client {pipe['cpu_us']:.0f} µs; "
                                                       f"peak RSS {pipe['maxrss_kb'] / 1024:.0f} MiB"})
        finally:
            sink.terminate()
            sink.wait(10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bare", "pipeline"])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--k", type=int, default=K)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", type=Path, required=True)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--dkim", action="store_true")
    ap.add_argument("--verp", action="store_true", help="a per-message return-path token (issue 19)")
    ap.add_argument("--tls", choices=["starttls", "implicit"], default="starttls")
    ap.add_argument("--db", default="", help="database URL (default: a SQLite file in --dir)")
    ap.add_argument("--phase", choices=["all", "setup", "send"], default="all",
                    help="pipeline: set up and send here, or only one of them (the send in a fresh process)")
    a = ap.parse_args()
    if a.mode == "bare":
        res = child_bare(a.n, a.k, a.port, a.ca, tls=a.tls)
    else:
        res = child_pipeline(a.n, a.k, a.port, a.ca, a.dir, dkim=a.dkim, verp=a.verp, tls=a.tls, db=a.db,
                             phase=a.phase)
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
