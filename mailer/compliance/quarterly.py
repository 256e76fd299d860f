"""The quarterly review (QRV-1): the seed's checklist walked with what mailer knows, as a
report (JSON data, HTML, PDF) that a reviewer signs off; the sign-off is a ledger entry
bound to the report's SHA-256, and the quarter's evidence zip carries the report and it.

Checklist: active campaigns; authorization records audited (counts by status, expiring);
vendors and BAAs (expired, expiring); training status per account; complaints and open
items; patient-asset consents; risk assessments; the last ledger verification; a security
self-test (TLS settings, file modes, key age, DKIM). Ids, names, counts and dates only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
import stat
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailer.accounts.permissions import Action, Principal
from mailer.compliance.common import acting, iso, record_event
from mailer.db import writing
from mailer.errors import InputError
from mailer.ledger import COMPLIANCE
from mailer.models import Campaign, utcnow
from mailer.private_files import write_private
from mailer.runtime import Runtime

RULE = "QRV-1"
SIGNED = "review-signed"
_C = Campaign.__table__  # type: ignore[attr-defined]
ACTIVE = ("submitted", "approved", "scheduled", "sending", "paused")


def _file_mode(path: Path) -> dict[str, Any]:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return {"path": path.name, "mode": None, "ok": False, "note": "missing"}
    return {"path": path.name, "mode": oct(mode), "ok": not (mode & 0o077)}


def security_selftest(rt: Runtime, at: dt.datetime) -> dict[str, Any]:
    s = rt.settings
    checks: list[dict[str, Any]] = []
    tls_ok = s.smtp.tls in ("starttls", "implicit") and not (s.smtp.tls == "starttls" and s.smtp.port == 465)
    checks.append({"check": "TLS required (TLS-1..TLS-3)", "ok": tls_ok,
                   "detail": f"{s.smtp.tls} on port {s.smtp.port}, certificates verified, TLS 1.2 minimum"})
    km = _file_mode(s.keys.file)
    checks.append({"check": "key file mode 0600 (SEC-4)", "ok": km["ok"], "detail": f"{km['path']} {km['mode']}"})
    if s.database.url.startswith("sqlite:///"):
        dm = _file_mode(Path(s.database.url[len("sqlite:///"):]))
        checks.append({"check": "database file not world-readable", "ok": dm["ok"], "detail": f"{dm['path']} {dm['mode']}"})
    try:
        age = (at - dt.datetime.fromtimestamp(os.stat(s.keys.file).st_mtime, dt.UTC).replace(tzinfo=None)).days
    except OSError:
        age = None
    checks.append({"check": "field key age under 365 days (rotate: mailer keys rotate)",
                   "ok": age is not None and age < 365, "detail": f"{age} days" if age is not None else "unknown"})
    dkim_ok = bool(s.dkim.enabled and rt.keyring.dkim_private_pem and s.dkim.domain and s.dkim.selector)
    checks.append({"check": "DKIM signing (STD-4)", "ok": dkim_ok,
                   "detail": "enabled with a key" if dkim_ok else "disabled or incomplete"})
    checks.append({"check": "unsubscribe over https (STD-3)", "ok": s.unsubscribe_is_https, "detail": s.unsubscribe.base_url})
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


def gather(rt: Runtime, quarter: str) -> dict[str, Any]:
    """Everything the checklist needs, as of the end of the quarter (or now, if earlier)."""
    from mailer import vendors
    from mailer.compliance import assets, complaints, risk, training
    from mailer.ledger_report import parse_quarter
    from mailer.store.auth_records import list_authorizations

    name, start, end = parse_quarter(quarter)
    at = min(end, utcnow())
    with rt.engine.connect() as conn:
        camps = [r for r in conn.execute(select(_C).order_by(_C.c.id))]
    active = [{"id": c.id, "name": c.name, "purpose": c.purpose, "status": c.status, "author": c.author}
              for c in camps if c.status in ACTIVE or (c.updated_at is not None and start <= c.updated_at < end)]
    statuses: Counter[str] = Counter()
    expiring = 0
    for r in list_authorizations(rt.engine, rt.keyring, at=at):
        statuses[r.status] += 1
        if r.status == "valid" and r.expires_at is not None and r.expires_at <= at + dt.timedelta(days=30):
            expiring += 1
    vend = []
    for v in vendors.list_vendors(rt.engine):
        st = vendors.baa_status(v, at)
        soon = v.baa_expires_at is not None and at < v.baa_expires_at <= at + dt.timedelta(days=90)
        vend.append({"name": v.name, "host": v.host, "covered_entity": v.operated_by_covered_entity,
                     "baa_in_force": st.in_force or v.operated_by_covered_entity, "expiring_90_days": soon,
                     "baa_expires": iso(v.baa_expires_at)})
    asset_rows = [a.as_dict(at) for a in assets.infos(rt).values()]
    ras = risk.assessments(rt)
    verification = rt.ledger.verify()
    return {
        "quarter": name, "start": start.date().isoformat(), "end_exclusive": end.date().isoformat(),
        "as_of": iso(at), "generated": iso(utcnow()),
        "active_campaigns": active,
        "authorizations": {"by_status": dict(sorted(statuses.items())), "total": sum(statuses.values()),
                           "expired": statuses.get("expired", 0), "revoked": statuses.get("revoked", 0),
                           "incomplete": statuses.get("incomplete", 0) + statuses.get("defective", 0),
                           "expiring_30_days": expiring},
        "vendors": vend,
        "training": training.status_by_account(rt, at),
        "complaints": complaints.quarter_summary(rt, start, end),
        "assets": [{k: a[k] for k in ("key", "kind", "email_status", "consent_expires", "revoked")} for a in asset_rows],
        "risk_assessments": {"approved": sum(1 for a in ras if a.status == "approved"),
                             "draft": sum(1 for a in ras if a.status == "draft"),
                             "decided_in_quarter": sum(1 for a in ras if a.decided_at and start <= a.decided_at < end)},
        "ledger_verification": {"ok": verification.ok, "entries": verification.entries,
                                "head_seq": verification.last_seq, "head_hash": verification.last_hash,
                                "verified_at": iso(utcnow())},
        "security": security_selftest(rt, at),
    }


def findings(data: dict[str, Any]) -> list[str]:
    """Pure: what the reviewer must look at, one line each."""
    out = []
    a = data["authorizations"]
    if a["expired"] or a["revoked"] or a["incomplete"]:
        out.append(f"authorizations: {a['expired']} expired, {a['revoked']} revoked, {a['incomplete']} incomplete or defective")
    out += [f"vendor {v['name']}: BAA not in force" for v in data["vendors"] if not v["baa_in_force"]]
    out += [f"vendor {v['name']}: BAA expires within 90 days" for v in data["vendors"] if v["expiring_90_days"]]
    out += [f"training: {t['account']} is {t['status']}" for t in data["training"] if t["status"] != "current"]
    n_open = len(data["complaints"]["open_at_end"])
    if n_open:
        out.append(f"complaints: {n_open} open")
    out += [f"asset {x['key']}: consent {x['email_status']}" for x in data["assets"] if x["email_status"] != "valid"]
    if not data["ledger_verification"]["ok"]:
        out.append("ledger: the chain does NOT verify")
    out += [f"security: {c['check']} failed ({c['detail']})" for c in data["security"]["checks"] if not c["ok"]]
    return out


def _sections(data: dict[str, Any], signoff: dict[str, Any] | None) -> list[tuple[str, list[str]]]:
    a = data["authorizations"]
    cp = data["complaints"]
    lv = data["ledger_verification"]
    secs = [
        ("1. Active marketing campaigns", [f"campaign {c['id']} {c['name']} ({c['purpose']}): {c['status']}, author {c['author']}"
                                           for c in data["active_campaigns"]] or ["none"]),
        ("2. Authorization records audited", [f"{a['total']} on file: " + ", ".join(f"{k} {v}" for k, v in a["by_status"].items()),
                                              f"expired {a['expired']}, revoked {a['revoked']}, incomplete {a['incomplete']}, "
                                              f"expiring within 30 days {a['expiring_30_days']}"]),
        ("3. Vendors and business associate agreements", [f"{v['name']} ({v['host']}): BAA {'in force' if v['baa_in_force'] else 'NOT in force'}"
                                                          + (", expires within 90 days" if v["expiring_90_days"] else "")
                                                          for v in data["vendors"]] or ["no vendor on file"]),
        ("4. Training status per account", [f"{t['account']}: {t['status']}" + (f" until {t['expires']}" if t["expires"] else "")
                                            for t in data["training"]] or ["no accounts"]),
        ("5. Complaints and privacy concerns", [f"received {cp['received']}, resolved {cp['resolved_in_quarter']}, "
                                                f"open at end {len(cp['open_at_end'])}"]
         + [f"open: complaint {o['id']} {o['category']} ({o['age_days']} days)" for o in cp["open_at_end"]]),
        ("6. Patient assets and consents", [f"{x['key']} ({x['kind']}): {x['email_status']}" for x in data["assets"]] or ["none"]),
        ("7. Risk assessments", [f"approved {data['risk_assessments']['approved']}, drafts {data['risk_assessments']['draft']}, "
                                 f"decided this quarter {data['risk_assessments']['decided_in_quarter']}"]),
        ("8. Ledger verification", [f"{'intact' if lv['ok'] else 'BROKEN'}: {lv['entries']} entries, head {lv['head_seq']} "
                                    f"{lv['head_hash'][:16]}, verified {lv['verified_at']}"]),
        ("9. Security self-test", [f"{'pass' if c['ok'] else 'FAIL'}: {c['check']}: {c['detail']}" for c in data["security"]["checks"]]),
        ("Findings for the reviewer", findings(data) or ["none"]),
    ]
    if signoff:
        secs.append(("Sign-off", [f"Signed off by {signoff['reviewer']} at {signoff['at']} (ledger entry {signoff['seq']})",
                                  f"report data SHA-256 {signoff['report_sha256']}",
                                  f"note: {signoff['note']}" if signoff.get("note") else ""]))
    else:
        secs.append(("Sign-off", ["Not signed yet. A reviewer signs it: mailer review sign " + data["quarter"]]))
    return secs


def data_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, indent=2).encode()


def to_html(data: dict[str, Any], signoff: dict[str, Any] | None = None) -> str:
    parts = [f"<h1>Quarterly compliance review {html.escape(data['quarter'])}</h1>",
             f"<p>{data['start']} to {data['end_exclusive']} (exclusive), as of {data['as_of']}</p>"]
    for title, lines in _sections(data, signoff):
        parts.append(f"<h2>{html.escape(title)}</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines if x) + "</ul>")
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Quarterly review '
            f"{html.escape(data['quarter'])}</title></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def to_pdf(data: dict[str, Any], signoff: dict[str, Any] | None = None) -> bytes:
    from fpdf import FPDF

    def latin(s: str) -> str:
        return s.encode("latin-1", "replace").decode("latin-1")

    pdf = FPDF(format="Letter")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, f"Quarterly compliance review {data['quarter']}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(0, 5, f"{data['start']} to {data['end_exclusive']} (exclusive), as of {data['as_of']}",
                   new_x="LMARGIN", new_y="NEXT")
    for title, lines in _sections(data, signoff):
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 11)
        pdf.multi_cell(0, 6, latin(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        for line in lines:
            if line:
                pdf.multi_cell(0, 5, latin("- " + line), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _paths(folder: Path, quarter: str) -> dict[str, Path]:
    return {ext: folder / f"quarterly-review-{quarter}.{ext}" for ext in ("json", "html", "pdf")}


def produce(rt: Runtime, by: Principal | None, quarter: str, folder: Path) -> tuple[dict[str, Path], str]:
    """Write the unsigned report (data, HTML, PDF); returns the files and the data's SHA-256."""
    by = acting(by, Action.COMPLIANCE_READ)
    data = gather(rt, quarter)
    folder.mkdir(parents=True, exist_ok=True)
    paths = _paths(folder, data["quarter"])
    raw = data_bytes(data)
    write_private(paths["json"], raw)  # ids and counts of complaints and access: private
    write_private(paths["html"], to_html(data).encode())
    write_private(paths["pdf"], to_pdf(data))
    sha = hashlib.sha256(raw).hexdigest()
    with writing(rt.engine) as conn:
        record_event(rt, conn, by, "review-produced", rules=(RULE,),
                     detail={"quarter": data["quarter"], "report_sha256": sha, "findings": len(findings(data))})
    return paths, sha


def sign(rt: Runtime, by: Principal | None, quarter: str, folder: Path, *, note: str = "") -> dict[str, Any]:
    """A reviewer signs off the report in `folder`: a ledger entry bound to its data hash; the
    HTML and PDF are re-rendered with the sign-off."""
    from mailer.ledger_report import parse_quarter

    by = acting(by, Action.REVIEW_SIGN)
    name, _s, _e = parse_quarter(quarter)
    paths = _paths(folder, name)
    try:
        raw = paths["json"].read_bytes()
    except OSError:
        raise InputError(f"no report for {name} in {folder}", hint=f"produce it first: mailer review quarterly {name} --out {folder}") from None
    data = json.loads(raw)
    sha = hashlib.sha256(raw).hexdigest()
    at = utcnow()
    with writing(rt.engine) as conn:
        seqs = rt.ledger.append_in(conn, [_signed_event(by, name, sha, note)])
    signoff = {"quarter": name, "reviewer": by.name, "at": iso(at), "seq": seqs[0], "report_sha256": sha,
               "note": note.strip()[:500]}
    write_private(paths["html"], to_html(data, signoff).encode())
    write_private(paths["pdf"], to_pdf(data, signoff))
    write_private(folder / f"quarterly-review-{name}.signoff.json", (json.dumps(signoff, indent=2) + "\n").encode())
    return signoff


def _signed_event(by: Principal, quarter: str, sha: str, note: str) -> Any:
    from mailer.ledger import Event

    return Event(kind=COMPLIANCE, outcome=SIGNED, actor=by.name, rule_ids=(RULE,),
                 detail={"quarter": quarter, "report_sha256": sha, "note": note.strip()[:500], "by": by.ledger_detail()})


def evidence(rt: Runtime, by: Principal | None, quarter: str, folder: Path, out: Path) -> dict[str, Any]:
    """The quarter's evidence zip: the report files, the sign-off entries from the ledger,
    the ledger's quarterly report, and a manifest of SHA-256s."""
    from mailer.compliance.complaints import quarter_summary
    from mailer.ledger_query import Filters, entries, record
    from mailer.ledger_report import build_report, parse_quarter

    by = acting(by, Action.LEDGER_EVIDENCE)
    name, start, end = parse_quarter(quarter)
    signs = [record(r) for r in entries(rt.ledger, Filters(kinds=(COMPLIANCE,), outcomes=(SIGNED,)))
             if (r.detail if isinstance(r.detail, dict) else json.loads(r.detail or "{}")).get("quarter") == name]
    rep = build_report(rt.ledger, name)
    rep.complaints = quarter_summary(rt, start, end)
    manifest: dict[str, str] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def put(arc: str, data: bytes) -> None:
            zf.writestr(arc, data)
            manifest[arc] = hashlib.sha256(data).hexdigest()

        for f in sorted(folder.glob(f"quarterly-review-{name}*")):
            put(f"report/{f.name}", f.read_bytes())
        put("signoff-entries.json", json.dumps(signs, indent=2, default=str).encode())
        put("ledger-report.json", json.dumps(rep.as_dict(), indent=2, default=str).encode())
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    zsha = hashlib.sha256(out.read_bytes()).hexdigest()
    with writing(rt.engine) as conn:
        record_event(rt, conn, by, "review-evidence", rules=(RULE,),
                     detail={"quarter": name, "sha256": zsha, "signoffs": len(signs)})
    return {"path": str(out), "sha256": zsha, "signoffs": len(signs), "files": sorted(manifest)}
