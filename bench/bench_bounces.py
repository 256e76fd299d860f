"""Bounce processing: messages per second from a Maildir of DSNs, and peak memory.

A Maildir of N Postfix-shaped reports (85% hard 5.1.1, 10% delayed 4.4.1, 5% ARF
complaints), each naming a delivery by its return-path token, is processed by
`mailer.bounces.mailbox.fetch_maildir` exactly as `mailer bounces fetch` does: read,
parse (stdlib + flufl.bounce), look up the tokens, decide, suppress, write events and
ledger entries one commit per batch, and file every message away. Each size runs in a
fresh child process so its peak RSS (VmHWM) is its own: flat memory means the peak at
10,000 is about the peak at 2,000.

Target (issue 19): over 500 messages/s on the 2-core machine, memory flat.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.memory import peak_kb, reset_peak

DOMAIN = "bounces.riverside-imaging.example"


def _report(i: int, token: str, rcpt: str) -> bytes:
    kind = i % 20
    if kind == 0:
        return (f"From: fbl@provider.example\nTo: fbl@riverside-imaging.example\nSubject: complaint\nMIME-Version: 1.0\n"
                f"Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n\n--F\n"
                f"Content-Type: text/plain\n\nAn abuse report.\n\n--F\nContent-Type: message/feedback-report\n\n"
                f"Feedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\nVersion: 1\nOriginal-Rcpt-To: <{rcpt}>\n\n"
                f"--F\nContent-Type: message/rfc822\n\nReturn-Path: <bounces+{token}@{DOMAIN}>\nTo: {rcpt}\n"
                f"Subject: Evening hours\n\n(body)\n--F--\n").encode()
    action, status = ("delayed", "4.4.1") if kind in (1, 2) else ("failed", "5.1.1")
    return (f"Return-Path: <>\nDelivered-To: bounces+{token}@{DOMAIN}\nFrom: MAILER-DAEMON@relay.example.net\n"
            f"To: bounces+{token}@{DOMAIN}\nSubject: Undelivered Mail Returned to Sender\nAuto-Submitted: auto-replied\n"
            f"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B{i}\"\n\n"
            f"--B{i}\nContent-Type: text/plain; charset=us-ascii\n\nThis is the mail system at host relay.example.net.\n\n"
            f"I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n"
            f"<{rcpt}>: host mx.patients.example.com said: 550 5.1.1 User unknown\n\n"
            f"--B{i}\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.net\n"
            f"X-Postfix-Sender: rfc822; bounces+{token}@{DOMAIN}\n\nFinal-Recipient: rfc822; {rcpt}\n"
            f"Original-Recipient: rfc822;{rcpt}\nAction: {action}\nStatus: {status}\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected\n\n"
            f"--B{i}\nContent-Type: text/rfc822-headers\n\nFrom: Riverside Imaging <news@riverside-imaging.example>\n"
            f"To: {rcpt}\nSubject: Evening hours\nMessage-ID: <1.{i}.{token}@riverside-imaging.example>\n\n--B{i}--\n").encode()


def child(n: int, folder: Path) -> dict[str, Any]:
    reset_peak()
    from mailer.bounces.mailbox import fetch_maildir
    from mailer.bounces.process import Processor
    from mailer.bounces.verp import new_return_token
    from mailer.config import settings_from_mapping
    from mailer.crypto import Keyring, token_hash
    from mailer.db import writing
    from mailer.models import utcnow
    from mailer.runtime import Runtime
    from mailer.store import rawsql

    settings = settings_from_mapping({"database": {"url": f"sqlite:///{folder / 'bench.db'}"},
                                      "keys": {"file": str(folder / "keys.json")},
                                      "bounces": {"domain": DOMAIN}}, source="<bench>")
    keyring = Keyring.generate()
    rt = Runtime(settings, _keyring=keyring, initialising=True)  # a fresh bench database
    rt.migrate()
    md = mailbox.Maildir(str(folder / "Maildir"), create=True)
    rows = []
    now = utcnow()
    for i in range(n):  # the deliveries' tokens as the claim stores them, and one report for each
        token, rcpt = new_return_token(), f"patient{i:06d}@patients.example.com"
        rows.append((token_hash(token), i + 1, 1 + i % 4, i + 1, keyring.lookup_hash(rcpt), now))
        md.add(_report(i, token, rcpt))
    with writing(rt.engine) as conn:
        t = rawsql.time_param(conn)
        rawsql.executemany(conn, "INSERT INTO bouncetoken (token_hash, delivery_id, campaign_id, contact_id, "
                                 "email_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)", [(*r[:5], t(r[5])) for r in rows])
    del rows
    started = time.perf_counter()
    cpu0 = time.process_time()
    totals = fetch_maildir(Processor(rt, actor="bench"), folder / "Maildir")
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    ok = rt.ledger.verify().ok
    rt.dispose()
    return {"n": n, "elapsed": elapsed, "rate": totals.total / elapsed, "cpu_us": cpu / n * 1e6,
            "applied": totals.by_disposition.get("applied", 0), "maxrss_kb": peak_kb(), "ledger_ok": ok}


def _child(n: int, folder: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_bounces", "--n", str(n), "--dir", str(folder)],
                         check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                         timeout=1800)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = [300, 1000] if quick else [2000, 10000]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mailer-bench-bounces-") as tmp:
        results = []
        for n in sizes:
            d = Path(tmp) / f"b{n}"
            d.mkdir()
            results.append(_child(n, d))
        for r in results:
            rows.append({"measure": f"bounces fetched from a Maildir, {r['n']} reports", "value": r["rate"],
                         "unit": "msgs/s",
                         "note": f"target > 500/s{'' if r['rate'] > 500 else ' (MISSED)'}; CPU/msg {r['cpu_us']:.0f} µs; "
                                 f"applied {r['applied']}; peak RSS {r['maxrss_kb'] / 1024:.0f} MiB; "
                                 f"ledger verifies: {r['ledger_ok']}"})
        small, big = results[0]["maxrss_kb"], results[-1]["maxrss_kb"]
        rows.append({"measure": f"peak RSS {sizes[-1]} vs {sizes[0]} reports", "value": big / small * 100, "unit": "%",
                     "note": "flat memory: about 100%"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--dir", type=Path, required=True)
    a = ap.parse_args()
    sys.stdout.write(json.dumps(child(a.n, a.dir)) + "\n")


if __name__ == "__main__":
    main()
