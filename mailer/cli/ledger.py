"""`mailer ledger ...`: verify, read, export and report on the tamper-evident send ledger."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from mailer.accounts.permissions import Action
from mailer.cli.common import FormatOpt, act, check_format, new_app, out, print_json, runtime
from mailer.errors import EXIT_FAILURE, InputError
from mailer.ledger import KINDS
from mailer.ledger_query import FORMATS, Filters
from mailer.models import LedgerEntry

ledger_app = new_app("The send ledger: verify the chain, show, export and report entries.")

CampaignOpt = Annotated[int | None, typer.Option("--campaign", help="Campaign id.")]
ContactOpt = Annotated[int | None, typer.Option("--contact", help="Contact id (ids only: never an address).")]
KindOpt = Annotated[list[str] | None, typer.Option("--kind", help=f"Entry kind(s), repeat or comma-separate: {', '.join(KINDS)}.")]
OutcomeOpt = Annotated[list[str] | None, typer.Option("--outcome", help="Outcome(s): sent, failed, deferred, uncertain, approved, revoked, ...")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="From this UTC date or date-time (inclusive).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Up to this UTC date (the whole day) or date-time (exclusive).")]


def _filters(campaign: int | None, contact: int | None, kind: list[str] | None, outcome: list[str] | None,
             since: str | None, until: str | None) -> Filters:
    f = Filters.build(campaign=campaign, contact=contact, kind=kind, outcome=outcome, since=since, until=until)
    unknown = [k for k in f.kinds if k not in KINDS]
    if unknown:
        raise InputError(f"unknown entry kind(s) {unknown}", hint=f"one of {', '.join(KINDS)}")
    return f


@ledger_app.command("verify")
def verify(ctx: typer.Context, fmt: FormatOpt = "text",
           as_json: Annotated[bool, typer.Option("--json", hidden=True, help="Same as --format json.")] = False,
           anchor: Annotated[Path | None, typer.Option(
               "--anchor", help="Compare with this copy of the anchor file (default: the one beside the key file).")] = None,
           ) -> None:
    """Walk the hash chain, signatures and head, compare with the head anchored outside the
    database, and check every delivery row against its ledger outcome; exit 1 on any problem."""
    from mailer.ledger_crosscheck import cross_check

    check_format(fmt)
    as_json = as_json or fmt == "json"
    rt = runtime(ctx)
    if anchor is not None and not anchor.is_file():
        raise InputError(f"{anchor}: no such anchor file", hint="pass a copy of the file written beside the key file")
    v = rt.ledger.verify(anchor_file=anchor)
    mismatches = cross_check(rt.engine, rt.ledger) if v.ok else None
    if as_json:
        print_json({**v.as_dict(), "delivery_mismatches": [m.as_dict() for m in (mismatches or [])]})
    elif v.ok:
        start = f" (entries 1..{v.anchor_seq} purged under AUTH-9; chain anchored there)" if v.anchor_seq else ""
        out.print(f"ledger intact: {v.entries} entries verified in {v.seconds:.2f}s; head is entry "
                  f"{v.last_seq} {v.last_hash}{start}", markup=False)
        if v.anchored_seq:
            out.print(f"  matches the anchor outside the database ({v.anchor_file}): entry {v.anchored_seq}, "
                      f"written {v.anchored_at}", markup=False)
        else:
            out.print("  no anchor outside the database yet: a restored older copy could not be told apart "
                      "(one is written after each command that records something)", markup=False)
    else:
        out.print(f"ledger BROKEN at entry {v.first_bad_seq}: {v.problem}", markup=False)
        out.print(f"  ({v.entries} entries checked; reason: {v.reason})", markup=False)
    if mismatches and not as_json:
        out.print(f"{len(mismatches)} delivery row(s) disagree with the ledger (SEC-5):", markup=False)
        for m in mismatches[:50]:
            out.print(f"  campaign {m.campaign_id} run {m.run} delivery {m.delivery_id} (contact {m.contact_id}): "
                      f"row says {m.row_status}, ledger says {m.ledger_outcome}", markup=False)
        if len(mismatches) > 50:
            out.print(f"  ... and {len(mismatches) - 50} more (`--json` lists all)", markup=False)
    if not v.ok or mismatches:
        raise typer.Exit(EXIT_FAILURE)


def reason_of(r: Any) -> str:
    """Why an entry ended as it did: the relay's reply (code and scrubbed text), else the
    reason the entry's detail gives. Ids and rule IDs only, never PHI."""
    import json

    if r.smtp_code or r.smtp_text:
        return " ".join(x for x in (str(r.smtp_code or ""), r.smtp_text or "") if x)
    try:
        detail = json.loads(r.detail or "{}")
    except ValueError:
        return ""
    return str(detail.get("reason", "")) if isinstance(detail, dict) else ""


def entries_table(rows: Iterable[Any], width: int | None = None) -> Table:
    """Readable at 80 columns: seq, time, kind/outcome, ids, rules, reason; TLS, auth and
    actor join when the terminal is wide (everything is in `--format json`)."""
    wide = (width or out.width or 80) >= 140
    t = Table(box=None, pad_edge=False)
    cols = ["seq", "at (UTC)", "kind", "campaign", "contact", "rules", "reason"]
    if wide:
        cols[6:6] = ["auth", "tls", "actor"]
    for col in cols:
        t.add_column(col, overflow="fold", no_wrap=col in ("seq", "at (UTC)"))
    for r in rows:
        kind = r.kind + (f"/{r.outcome}" if r.outcome else "")
        cells = [str(r.seq), r.at.strftime("%Y-%m-%d %H:%M:%S"), kind, str(r.campaign_id or ""),
                 str(r.contact_id or ""), r.rule_ids, reason_of(r)]
        if wide:
            cells[6:6] = [str(r.authorization_id or ""), r.tls_version or "", r.actor or ""]
        t.add_row(*(Text(c) for c in cells))
    return t


def _records(rows: Iterable[Any]) -> list[dict[str, Any]]:
    from mailer.ledger_query import record

    return [{**record(r), "reason": reason_of(r)} for r in rows]


@ledger_app.command("tail")
def tail(ctx: typer.Context, n: Annotated[int, typer.Option("-n", help="How many entries.")] = 10,
         fmt: FormatOpt = "text") -> None:
    """The newest entries."""
    check_format(fmt)
    rt = runtime(ctx)
    act(ctx, Action.LEDGER_READ)
    t = LedgerEntry.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        rows = list(reversed(conn.execute(select(t).order_by(t.c.seq.desc()).limit(n)).all()))
    if fmt == "json":
        print_json(_records(rows))
        return
    out.print(entries_table(rows))


@ledger_app.command("show")
def show(ctx: typer.Context, campaign: CampaignOpt = None, contact: ContactOpt = None, kind: KindOpt = None,
         outcome: OutcomeOpt = None, since: SinceOpt = None, until: UntilOpt = None,
         limit: Annotated[int, typer.Option("--limit", help="At most this many entries (0: all, printed in pages).")] = 200,
         fmt: FormatOpt = "text") -> None:
    """Matching entries as a table with the reason for each outcome, oldest first."""
    from mailer.ledger_query import entries

    check_format(fmt)
    rt = runtime(ctx)
    act(ctx, Action.LEDGER_READ)
    f = _filters(campaign, contact, kind, outcome, since, until)
    if fmt == "json":
        got: list[Any] = []
        for r in entries(rt.ledger, f):
            if limit and len(got) >= limit:
                break
            got.append(r)
        print_json(_records(got))
        return
    page: list[Any] = []
    bounce_counts: dict[int | None, dict[str, int]] = {}
    shown = 0
    more = False
    for r in entries(rt.ledger, f):
        if limit and shown >= limit:
            more = True
            break
        page.append(r)
        shown += 1
        if r.kind == "bounce":
            per = bounce_counts.setdefault(r.campaign_id, {})
            per[r.outcome or "-"] = per.get(r.outcome or "-", 0) + 1
        if len(page) >= 500:
            out.print(entries_table(page))
            page = []
    if page or not shown:
        out.print(entries_table(page))
    if bounce_counts:  # issue 19: bounces and complaints per campaign among the entries shown
        out.print("bounces and complaints per campaign: " + "; ".join(
            f"{cid or '-'}: " + ", ".join(f"{k} {n}" for k, n in sorted(v.items()))
            for cid, v in sorted(bounce_counts.items(), key=lambda kv: kv[0] or 0)), markup=False)
    tail_note = "; more match: raise --limit or use `mailer ledger export`" if more else ""
    out.print(f"{shown} entr{'y' if shown == 1 else 'ies'} shown{tail_note}", markup=False)


@ledger_app.command("export")
def export(ctx: typer.Context,
           fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "jsonl",
           out_file: Annotated[Path | None, typer.Option("--out", help="Write here (default: standard output).")] = None,
           campaign: CampaignOpt = None, contact: ContactOpt = None, kind: KindOpt = None,
           outcome: OutcomeOpt = None, since: SinceOpt = None, until: UntilOpt = None) -> None:
    """Stream matching entries as CSV or JSON Lines; the export is itself a ledger entry."""
    from mailer.ledger_query import export as do_export

    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not supported", hint=f"one of {', '.join(FORMATS)}")
    rt = runtime(ctx)
    f = _filters(campaign, contact, kind, outcome, since, until)
    who = act(ctx, Action.LEDGER_EXPORT)
    if out_file is None:
        res = do_export(rt.ledger, f, fmt, sys.stdout, actor=who, destination="stdout")
        sys.stdout.flush()
        return
    partial = out_file.with_name(out_file.name + ".partial")
    import os

    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # entries carry ids and hashes: private
    os.chmod(partial, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        res = do_export(rt.ledger, f, fmt, fh, actor=who, destination="file")
    partial.replace(out_file)
    out.print(f"exported {res.entries} entries to {out_file} (sha256 {res.sha256}); recorded as ledger entry {res.seq}",
              markup=False)


@ledger_app.command("report")
def report(ctx: typer.Context,
           quarter: Annotated[str, typer.Option("--quarter", help="e.g. 2026Q3.")],
           fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
           check: Annotated[bool, typer.Option("--verify/--no-verify", help="Verify the chain too.")] = True) -> None:
    """The quarterly review: campaigns, sends, skips and refusals by rule, unsubscribes,
    authorization events, approvals."""
    from mailer.ledger_report import build_report, render_text

    if fmt not in ("text", "json"):
        raise InputError(f"format {fmt!r} is not supported", hint="text or json")
    rt = runtime(ctx)
    act(ctx, Action.LEDGER_READ)
    rep = build_report(rt.ledger, quarter, verify=check)
    from mailer.compliance.complaints import quarter_summary

    rep.complaints = quarter_summary(rt, rep.start, rep.end)  # CMP-1 (issue 17)
    if fmt == "json":
        print_json(rep.as_dict())
    else:
        sys.stdout.write(render_text(rep))
    if rep.verification is not None and not rep.verification.ok:
        raise typer.Exit(EXIT_FAILURE)


@ledger_app.command("evidence")
def evidence(ctx: typer.Context,
             campaign: Annotated[int, typer.Option("--campaign", help="Campaign id.")],
             out_file: Annotated[Path, typer.Option("--out", help="The zip file to write.")]) -> None:
    """Everything an auditor needs for one campaign, in a zip with a SHA-256 manifest."""
    from mailer.evidence import write_evidence

    rt = runtime(ctx)
    res = write_evidence(rt, campaign, out_file, actor=act(ctx, Action.LEDGER_EVIDENCE))
    out.print(f"wrote {res.path}: {res.files} files, {res.entries} entries of campaign {campaign}, "
              f"chain {'intact' if res.verified else 'BROKEN'}; sha256 {res.sha256}; "
              f"recorded as ledger entry {res.seq}", markup=False)
    if res.head_hash:
        out.print(f"ledger head when packaged: entry {res.head_seq} {res.head_hash} (keep it: `mailer ledger "
                  "verify` must later show this entry unchanged)", markup=False)
    for m in res.missing:
        out.print(f"INCOMPLETE: missing {m}", markup=False)
    if not res.complete:
        raise typer.Exit(EXIT_FAILURE)


@ledger_app.command("purge")
def purge(ctx: typer.Context,
          before: Annotated[str, typer.Option("--before", help="Remove entries older than this UTC date.")],
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False) -> None:
    """Remove entries past retention (six years, AUTH-9); anything younger is refused (exit 3)."""
    from mailer.ledger_query import parse_when
    from mailer.retention import purge as do_purge

    rt = runtime(ctx)
    plan = do_purge(rt.ledger, parse_when(before), actor=act(ctx, Action.LEDGER_PURGE), dry_run=dry_run)
    if plan.entries == 0:
        out.print(f"nothing to purge before {before}", markup=False)
    elif dry_run:
        out.print(f"would remove entries {plan.first_seq}..{plan.through_seq} ({plan.entries}); "
                  f"the chain would be anchored at entry {plan.through_seq}", markup=False)
    else:
        out.print(f"removed entries {plan.first_seq}..{plan.through_seq} ({plan.entries}); "
                  f"the chain is anchored at entry {plan.through_seq}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
