"""Crash safety: SIGKILL `mailer campaign send` at random points of a 5,000-message campaign, resume, repeat.

No Message-ID reaches the sink twice, every recipient ends sent, skipped, failed or
uncertain, and each crash leaves at most the in-flight window (limits.claim_batch) uncertain.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import approvals, campaigns
from mailer.models import Delivery
from mailer.store import deliveries as dq
from tests.conftest import ROOT
from tests.test_send_support import (
    CountingHandler,
    as_sink,
    bulk_contacts,
    newsletter,
    parsed,
    start_server,
    tls_server_context,
)

N = 5000
WINDOW = 32
KILLS = 5


def _config(rt, path: Path) -> Path:  # type: ignore[no-untyped-def]
    s = rt.settings
    path.write_text(f"""
[database]
url = "{s.database.url}"
[keys]
file = "{s.keys.file}"
[center]
name = "{s.center.name}"
postal_address = "{s.center.postal_address}"
phone = "{s.center.phone}"
website = "{s.center.website}"
[sender]
from_address = "{s.sender.from_address}"
from_name = "{s.sender.from_name}"
envelope_from = "{s.sender.envelope_from}"
list_id = "{s.sender.list_id}"
[smtp]
host = "localhost"
port = {s.smtp.port}
tls = "starttls"
ca_file = "{s.smtp.ca_file}"
connections = 4
local_hostname = "crash.riverside-imaging.example"
operated_by_covered_entity = true
[unsubscribe]
base_url = "{s.unsubscribe.base_url}"
[limits]
claim_batch = {WINDOW}
retry_base_seconds = 0.05
[compliance]
risk_assessment_required = false
""")
    return path


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(runtime_factory, certs, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("MAILER_CRASH_SEED", "0")) or None)
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs), require_starttls=True)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller), limits={"claim_batch": WINDOW})
        bulk_contacts(rt, N, tmp_path)
        c = newsletter(rt)
        campaigns.submit(rt, c.id, actor="marketer")
        approvals.approve(rt, c.id, reviewer="reviewer")
        cfg = _config(rt, tmp_path / "mailer.toml")
        cmd = [sys.executable, "-m", "mailer.cli.app", "--config", str(cfg), "--actor", "marketer",
               "campaign", "send", str(c.id)]
        env = {**os.environ, "COLUMNS": "120"}
        claimed_at_kill = []
        for _ in range(KILLS):
            start = handler.count
            target = start + rng.randint(50, 700)  # somewhere in the middle of sending
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while handler.count < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(rng.uniform(0.001, 0.02))
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            left = dq.counts(rt.engine, c.id)
            claimed_at_kill.append(left.get(dq.CLAIMED, 0))
            assert left.get(dq.CLAIMED, 0) <= WINDOW  # the in-flight window bounds what a crash leaves open
        final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
    finally:
        controller.stop()
    counts = dq.counts(rt.engine, c.id)
    assert set(counts) <= {dq.SENT, dq.SKIPPED, dq.FAILED, dq.UNCERTAIN}, counts
    assert sum(counts.values()) == N
    assert counts.get(dq.UNCERTAIN, 0) == sum(claimed_at_kill) <= KILLS * WINDOW
    received = Counter(parsed(m.data)["Message-ID"] for m in handler.messages)
    assert not [mid for mid, n in received.items() if n > 1], "a Message-ID reached the sink twice"
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        sent_ids = [r.message_id for r in conn.execute(select(t.c.message_id).where(t.c.campaign_id == c.id,
                                                                                   t.c.status == dq.SENT))]
    assert all(received[mid] == 1 for mid in sent_ids)  # everything recorded as sent arrived exactly once
    assert len(handler.messages) <= len(sent_ids) + counts.get(dq.UNCERTAIN, 0)
    assert rt.ledger.verify().ok
