"""Workspace pages under load (issue 16): dashboard and ledger list times with 1,000,000
ledger entries and 100 campaigns, through the real app under uvicorn, over HTTP.

Median and p95 over 200 sequential requests (keep-alive), signed in as a reviewer; every
ledger page view also appends its `access` entry, as in production. Page 5,000 of the
ledger list (keyset: `before=SEQ`) must cost about what page 1 costs. The entries are
bulk-inserted with placeholder hashes (this bench times reading, not the chain), so
`ledger verify` would reject this database: it is a scratch file, deleted afterwards.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

N_ENTRIES = 1_000_000
N_CAMPAIGNS = 100
REQUESTS = 200
PAGE = 50


def _bulk_ledger(db: Path, n: int) -> None:
    import sqlite3

    kinds = ("send",) * 17 + ("skip", "access", "campaign")
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    # Indexes are built once after the load (much faster than maintaining them per row).
    indexes = [r[0] for r in con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger' AND sql IS NOT NULL")]
    for ddl in indexes:
        con.execute("DROP INDEX " + ddl.split("INDEX", 1)[1].split(" ON ")[0].strip())
    cols = ("seq, at, kind, outcome, campaign_id, contact_id, recipient_hash, template_hash, message_hash, "
            "message_id, relay, tls_version, tls_cipher, smtp_code, smtp_text, authorization_id, rule_ids, actor, "
            "detail, key_id, prev_hash, entry_hash, mac")
    sql = f"INSERT INTO ledger ({cols}) VALUES ({','.join('?' * 23)})"  # noqa: S608
    base = time.time() - n  # one entry a second, ending now
    chunk = 50_000
    for start in range(1, n + 1, chunk):
        rows = []
        for seq in range(start, min(start + chunk, n + 1)):
            kind = kinds[seq % len(kinds)]
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + seq)) + ".000000"
            h = f"{seq:064x}"
            send = kind == "send"
            rows.append((seq, at, kind, "sent" if send else "ok", 1 + seq % N_CAMPAIGNS, seq if send else None,
                         h if send else None, "b" * 64, h if send else None,
                         f"<1.{seq}@riverside-imaging.example>" if send else None,
                         "relay.example" if send else None, "TLSv1.3" if send else None, None, 250 if send else None,
                         None, None, "SEND-2" if send else "", "worker" if send else "rita", '{"run":0}', "k1",
                         f"{seq - 1:064x}", h, "c" * 64))
        con.executemany(sql, rows)
        con.commit()
    for ddl in indexes:
        con.execute(ddl)
    con.commit()
    con.execute("ANALYZE")
    con.close()


def _setup(folder: Path) -> tuple[Any, str]:
    from sqlalchemy import insert

    from mailer.accounts.permissions import Principal
    from mailer.accounts.service import SignIn
    from mailer.config import settings_from_mapping
    from mailer.crypto import Keyring
    from mailer.db import make_engine, migrate
    from mailer.models import Campaign, utcnow
    from mailer.runtime import Runtime
    from mailer.web.workspace import sessions

    root = Path(__file__).resolve().parent.parent
    db = folder / "web.db"
    settings = settings_from_mapping({"database": {"url": f"sqlite:///{db}"},
                                      "keys": {"file": str(folder / "keys.json")},
                                      "web": {"templates_dir": str(root / "templates"),
                                              "segments_dir": str(root / "segments")}}, source="<bench>")
    keyring = Keyring.generate()
    rt = Runtime(settings, _engine=make_engine(settings.database.url), _keyring=keyring)
    migrate(rt.engine)
    _bulk_ledger(db, N_ENTRIES)
    now = utcnow()
    states = ("draft", "submitted", "approved", "scheduled", "done")
    with rt.engine.begin() as conn:
        conn.execute(insert(Campaign.__table__), [  # type: ignore[attr-defined]
            {"name": f"Campaign {i}", "purpose": "newsletter", "template": str(root / "templates/newsletter"),
             "segment": str(root / "segments/newsletter.toml"), "template_hash": "a" * 64, "segment_hash": "b" * 64,
             "status": states[i % len(states)], "status_reason": "", "author": "mara", "run": 0,
             "audience_hash": "", "created_at": now, "updated_at": now} for i in range(N_CAMPAIGNS)])
    from mailer.accounts import service as accounts

    info, _otp, _enrol = accounts.bootstrap_admin(rt)
    admin = Principal(info.id, info.name, frozenset({"admin"}), "service")
    rita, _, _ = accounts.create_account(rt, admin, "rita", ["reviewer"], password="correct horse battery staple")
    token, _ = sessions.open_session(rt, SignIn(Principal(rita.id, "rita", frozenset({"reviewer"}), "password"), False))
    return rt, token


def _serve(rt: Any) -> tuple[Any, Any, str]:
    import uvicorn

    from mailer.web.server import build_app

    server = uvicorn.Server(uvicorn.Config(build_app(rt), host="127.0.0.1", port=0, access_log=False,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def _time(client: Any, url: str, n: int) -> tuple[float, float]:
    client.get(url)  # warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def run(quick: bool) -> list[dict[str, Any]]:
    import httpx

    global N_ENTRIES
    if quick:
        N_ENTRIES = 100_000
    n = 50 if quick else REQUESTS
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mailer-bench-web-") as tmp:
        t0 = time.perf_counter()
        rt, token = _setup(Path(tmp))
        built = time.perf_counter() - t0
        server, thread, url = _serve(rt)
        depth = min(5000, N_ENTRIES // PAGE)
        deep = N_ENTRIES - PAGE * (depth - 1) + 1  # `before` of page 5,000 (fewer in --quick)
        try:
            with httpx.Client(base_url=url, cookies={"mailer_session": token}, timeout=30) as client:
                pages = [("dashboard", "/"), ("ledger list, page 1", "/ledger"),
                         (f"ledger list, page {depth:,}", f"/ledger?before={deep}"),
                         ("ledger list, one campaign, page 1", "/ledger?campaign=7")]
                got = {}
                for label, path in pages:
                    med, p95 = _time(client, path, n)
                    got[label] = med
                    rows.append({"measure": f"{label}: median", "value": med, "unit": "ms",
                                 "note": f"{n} requests, {N_ENTRIES:,} entries, {N_CAMPAIGNS} campaigns"})
                    rows.append({"measure": f"{label}: p95", "value": p95, "unit": "ms",
                                 "note": "target < 150 ms" if "campaign" not in label else ""})
                ratio = got[f"ledger list, page {depth:,}"] / got["ledger list, page 1"]
                rows.append({"measure": f"ledger page {depth:,} / page 1 (median)", "value": ratio, "unit": "x",
                             "note": f"target within 2x; database built in {built:.0f}s"})
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            rt.dispose()
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(r)
