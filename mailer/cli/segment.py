"""`mailer segment check`: what a reviewer needs to know about a segment, as counts only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from mailer.cli.common import new_app, out, print_json, runtime
from mailer.errors import EXIT_REFUSED, InputError
from mailer.models import utcnow
from mailer.refusal import Refusal
from mailer.segments import SegmentCounts, SegmentPlan, describe
from mailer.sending import check_segment
from mailer.store.auth_records import parse_time

segment_app = new_app("Segments: who a campaign reaches, checked against SEG-1..SEG-5.")

FORMATS = ("text", "json")


def _evaluation_time(value: str | None) -> datetime:
    if value is None:
        return utcnow()
    try:
        at = parse_time(value)
    except ValueError:
        at = None
    if at is None:
        raise InputError("--at must be an ISO date or date-time", hint="e.g. --at 2026-07-01T00:00:00Z")
    return at


def plan_summary(plan: SegmentPlan) -> dict[str, Any]:
    """The plan as data: which conditions run in SQL, which after decryption (segment
    values are the marketer's, never a patient's)."""
    seg = plan.segment
    return {
        "in_sql": describe(plan.sql_filter) if plan.sql_filter is not None else None,
        "after_decryption": describe(plan.clinical_filter) if plan.clinical_filter is not None else None,
        "clinical_fields": sorted(plan.clinical_fields),
        "requires_authorization": plan.requires_authorization,
        "authorization_scope": seg.scope,
        "third_party": seg.third_party,
        "lines": plan.explain(),
    }


def report(plan: SegmentPlan, counts: SegmentCounts, refusals: list[Refusal], at: datetime,
           *, explain: bool) -> dict[str, Any]:
    data = counts.as_dict()
    data["refused"] = bool(refusals)
    data["rules"] = sorted({r.rule for r in refusals})
    data["refusals"] = [r.as_dict() for r in refusals]
    data["segment_sha256"] = plan.segment.content_hash
    data["authorization_scope"] = plan.segment.scope
    data["evaluated_at"] = at.isoformat(timespec="seconds")
    if explain:
        data["plan"] = plan_summary(plan)
    return data


@segment_app.command("check")
def check(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A segments/*.toml file.")],
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    explain: Annotated[bool, typer.Option("--explain", help="Show which conditions run in SQL and which after decryption.")] = False,
    at: Annotated[str | None, typer.Option("--at", help="Evaluate authorizations as of this time (ISO, UTC; default now), e.g. a send date.")] = None,
) -> None:
    """Count considered, excluded (by authorization reason), suppressed and matched contacts. Exit 3 when refused."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"expected one of: {', '.join(FORMATS)}", param_hint="--format")
    when = _evaluation_time(at)
    rt = runtime(ctx)
    plan, counts, refusals = check_segment(rt, file, when)
    data = report(plan, counts, refusals, when, explain=explain)
    if fmt == "json":
        print_json(data)
    else:
        _print_text(plan, data, refusals, explain=explain)
    if refusals:
        raise typer.Exit(EXIT_REFUSED)


def _print_text(plan: SegmentPlan, data: dict[str, Any], refusals: list[Refusal], *, explain: bool) -> None:
    out.print(f"segment {data['segment']} (evaluated at {data['evaluated_at']} UTC): considered {data['considered']}, "
              f"suppressed {data['suppressed']}, matched {data['matched']}", markup=False)
    if plan.requires_authorization:
        excl = ", ".join(f"{k} {v}" for k, v in data["excluded_no_authorization"].items() if v) or "none"
        out.print(f"  authorized ({plan.segment.scope}): {data['authorized']}; "
                  f"excluded for lack of authorization: {excl}", markup=False)
        if plan.clinical_filter is not None:
            out.print(f"  authorized but not matching the clinical rules: {data['unmatched']}", markup=False)
    else:
        out.print("  no authorization needed (no clinical rule, no scope)", markup=False)
    if explain:
        for line in plan.explain():
            out.print(f"  plan: {line}", markup=False)
    for r in refusals:
        out.print(f"  REFUSED by {r.rule}: {r.reason}", markup=False)
        if r.fix:
            out.print(f"    to satisfy it: {r.fix}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(segment_app, name="segment")
