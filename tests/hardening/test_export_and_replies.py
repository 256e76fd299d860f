"""SMTP replies keep no PHI in the ledger (PHI-2, SEC-5); CSV exports cannot carry formulas."""

from __future__ import annotations

import csv
import io
from typing import Any

from mailer import sending
from mailer.ledger import Event
from mailer.ledger_query import Filters, export
from mailer.smtp_reply import MAX_TEXT, stored_reply
from tests.conftest import NO_GATES
from tests.test_send_support import ledger_rows, newsletter
from tests.test_smtp_replies import VICTIM, _rt, _victim_id, server  # noqa: F401 - fixture

REPLY = ("550 5.1.1 <ben.quinn2@example.com>: Recipient Ben Quinn unknown; patient file 4481 notes "
         "osteoporosis follow-up MRI on 2024-03-05, call 217 555 0199 " + "x" * 400)


async def test_a_reply_quoting_the_patient_keeps_only_code_and_scrubbed_text(runtime_factory, server) -> None:  # noqa: F811
    handler, sink = server
    handler.rcpt_once[VICTIM] = REPLY
    rt = _rt(runtime_factory, sink)
    c = newsletter(rt)
    await sending.send(rt, c.id, preflight=NO_GATES)
    row = ledger_rows(rt, kind="send", campaign_id=c.id, contact_id=_victim_id(rt))[0]
    assert row.smtp_code == 550
    text = row.smtp_text or ""
    assert text.startswith("5.1.1") and len(text) <= MAX_TEXT + 6
    for leaked in ("ben", "quinn", "osteoporosis", "2024-03-05", "555 0199", "@"):
        assert leaked not in text.lower(), (leaked, text)


def test_stored_reply_shapes() -> None:
    assert stored_reply("250 2.0.0 OK queued as 12345") == "2.0.0 OK queued as 12345"
    assert stored_reply("421 Service not available") == "Service not available"
    assert stored_reply(None) is None
    assert stored_reply("550 5.1.1 Jane Roe unknown", values=("Jane", "Roe")) == "5.1.1 <value> <value> unknown"
    assert stored_reply("550 5.7.1 no", check=lambda _r, _v: ["PHI-3"]) == "5.7.1 <text withheld: PHI check>"


def test_csv_export_escapes_formula_cells(runtime_factory: Any) -> None:
    rt = runtime_factory()
    evil = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    rt.ledger.append([Event(kind="system", outcome="note", actor=a) for a in evil])
    buf = io.StringIO()
    export(rt.ledger, Filters.build(kind=["system"]), "csv", buf, actor="auditor", destination="stdout")
    rows = list(csv.DictReader(io.StringIO(buf.getvalue(), newline="")))
    actors = [r["actor"] for r in rows]
    assert actors == ["'" + a.replace("\r", "\\r") for a in evil]
