"""Ledger pages: keyset-paginated list, entry detail, verify, CSV export, quarterly report,
evidence download, and the access log. Every view of entries, every export and every
download is itself an `access` (or `data-export`) ledger entry (SEC-5).

The list pages by sequence number (`before=SEQ`), never by OFFSET, so page 5,000 costs what
page 1 costs. Entries carry ids and hashes only; the pages show no address or clinical value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from mailer.accounts.permissions import Action
from mailer.errors import InputError
from mailer.ledger import ACCESS, KINDS, Event, entry_hash
from mailer.ledger_query import Filters, parse_when
from mailer.models import LedgerEntry
from mailer.web.workspace.core import Ctx, NotFound, int_param, page, redirect
from mailer.web.workspace.models import LedgerVerification
from mailer.web.workspace.security import HEADERS

_L = LedgerEntry.__table__  # type: ignore[attr-defined]
_V = LedgerVerification.__table__  # type: ignore[attr-defined]
PAGE_SIZE = 50
_LIST_COLS = (_L.c.seq, _L.c.at, _L.c.kind, _L.c.outcome, _L.c.campaign_id, _L.c.recipient_hash, _L.c.rule_ids,
              _L.c.actor, _L.c.entry_hash)


def record_view(c: Ctx, what: str, **detail: Any) -> None:
    """An `access` entry for a view of ledger entries, authorizations, exports or evidence."""
    c.rt.ledger.append([Event(kind=ACCESS, outcome="viewed", actor=c.principal.name, rule_ids=("SEC-5",),
                              detail={"channel": "web", "page": what,
                                      **{k: v for k, v in detail.items() if v not in (None, "", [])}})])


def _filters(c: Ctx, *, kinds: tuple[str, ...] = ()) -> tuple[dict[str, str], list[Any]]:
    f = {k: c.q(k) for k in ("campaign", "kind", "actor", "since", "until")}
    conds: list[Any] = []
    errors: dict[str, str] = {}
    if f["campaign"]:
        try:
            conds.append(_L.c.campaign_id == int(f["campaign"]))
        except ValueError:
            errors["campaign"] = "a campaign number"
    kind = kinds or ((f["kind"],) if f["kind"] else ())
    if f["kind"] and f["kind"] not in KINDS:
        errors["kind"] = f"one of {', '.join(KINDS)}"
    elif kind:
        conds.append(_L.c.kind.in_(kind))
    if f["actor"]:
        conds.append(_L.c.actor == f["actor"][:128])
    for key, end in (("since", False), ("until", True)):
        if f[key]:
            try:
                when = parse_when(f[key], end=end)
            except InputError as e:
                errors[key] = e.message
                continue
            conds.append(_L.c.at >= when if not end else _L.c.at < when)
    if errors:
        raise _FilterError(errors)
    return f, conds


class _FilterError(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors


def _list(c: Ctx, *, title: str, base: str, kinds: tuple[str, ...] = ()) -> Response:
    try:
        f, conds = _filters(c, kinds=kinds)
        before = int_param(c.q("before"), "before")
    except _FilterError as e:
        return c.render("ledger.html", 400, rows=[], f={k: c.q(k) for k in ("campaign", "kind", "actor", "since", "until")},
                        errors=e.errors, more=False, title=title, base=base, kinds=KINDS, fixed_kind=bool(kinds),
                        last=None, qs="")
    q = select(*_LIST_COLS).where(*conds)
    if before:
        q = q.where(_L.c.seq < before)
    with c.rt.engine.connect() as conn:
        rows = conn.execute(q.order_by(_L.c.seq.desc()).limit(PAGE_SIZE + 1)).all()
        last = conn.execute(select(_V).order_by(_V.c.id.desc()).limit(1)).first()
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    record_view(c, base.strip("/") or "ledger", filters={k: v for k, v in f.items() if v}, before=before,
                entries=len(rows))
    from urllib.parse import urlencode

    qs = urlencode({k: v for k, v in f.items() if v})
    return c.render("ledger.html", rows=rows, f=f, errors={}, more=more, title=title, base=base, kinds=KINDS,
                    fixed_kind=bool(kinds), last=last, qs=qs)


@page(Action.LEDGER_READ)
def ledger_list(c: Ctx) -> Response:
    return _list(c, title="Ledger", base="/ledger")


@page(Action.USERS_MANAGE)
def access_log(c: Ctx) -> Response:
    return _list(c, title="Access log", base="/access", kinds=(ACCESS,))


@page(Action.LEDGER_READ)
def ledger_entry(c: Ctx) -> Response:
    seq = int(c.request.path_params["seq"])
    with c.rt.engine.connect() as conn:
        row = conn.execute(select(_L).where(_L.c.seq == seq)).first()
    if row is None:
        raise NotFound(f"entry {seq}")
    m = dict(row._mapping)
    key = c.rt.ledger._keys().get(m["key_id"])
    intact = None if key is None else (
        entry_hash(m) == m["entry_hash"]
        and hmac.compare_digest(hmac.new(key, m["entry_hash"].encode(), hashlib.sha256).hexdigest(), m["mac"]))
    try:
        detail = json.dumps(json.loads(m["detail"]), indent=2, sort_keys=True)
    except ValueError:
        detail = m["detail"]
    record_view(c, "ledger-entry", seq=seq)
    return c.render("entry.html", e=m, detail=detail, intact=intact)


@page(Action.LEDGER_READ)
def ledger_verify(c: Ctx) -> Response:
    """Start verifying the whole chain (POST: it reads every entry) in the background and go
    to its progress page; a small ledger is usually done before the page is first shown."""
    job = c.ws.jobs.start(c.rt, c.principal)
    deadline = time.monotonic() + 0.5
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.02)
    return redirect(f"/ledger/verify/{job.id}")


@page(Action.LEDGER_READ)
def ledger_verify_progress(c: Ctx) -> Response:
    """Entries checked so far (the page reloads itself until done), then the result."""
    job = c.ws.jobs.get(str(c.request.path_params["job"]))
    if job is None:
        raise NotFound("verification")
    return c.render("verify.html", job=job, v=job.result)


@page(Action.LEDGER_EXPORT)
def ledger_export(c: Ctx) -> Response:
    """CSV of the filtered entries, streamed from a temporary file; recorded as a data-export."""
    from mailer.ledger_query import export

    camp = int_param(c.q("campaign"), "campaign")
    filters = Filters.build(campaign=camp, kind=c.q("kind") or None, since=c.q("since") or None,
                            until=c.q("until") or None)
    tmp = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="")  # noqa: SIM115
    with tmp:
        res = export(c.rt.ledger, filters, "csv", tmp, actor=c.principal.name, destination="web download")
    record_view(c, "ledger-export", entries=res.entries, sha256=res.sha256, export_seq=res.seq)
    name = f"ledger-{res.through_seq}.csv"
    return FileResponse(tmp.name, media_type="text/csv", filename=name, headers=HEADERS,
                        background=BackgroundTask(Path(tmp.name).unlink, missing_ok=True))


@page(Action.LEDGER_READ)
def ledger_report(c: Ctx) -> Response:
    from mailer.ledger_report import build_report, render_text

    quarter = c.q("quarter")
    text, error = "", ""
    if quarter:
        try:
            rep = build_report(c.rt.ledger, quarter, verify=False)
            text = render_text(rep)
        except InputError as e:
            error = e.message + (f" ({e.hint})" if e.hint else "")
        record_view(c, "ledger-report", quarter=quarter[:10])
    return c.render("report.html", 400 if error else 200, quarter=quarter, text=text, error=error)


@page(Action.LEDGER_EVIDENCE)
def evidence_zip(c: Ctx) -> Response:
    from mailer.evidence import write_evidence

    cid = int(c.request.path_params["campaign_id"])
    tmpdir = Path(tempfile.mkdtemp(prefix="mailer-evidence-"))
    out = tmpdir / f"evidence-campaign-{cid}.zip"
    res = write_evidence(c.rt, cid, out, actor=c.principal.name)
    record_view(c, "evidence-download", campaign=cid, sha256=res.sha256)

    def cleanup() -> None:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)

    return FileResponse(out, media_type="application/zip", filename=out.name, headers=HEADERS,
                        background=BackgroundTask(cleanup))
