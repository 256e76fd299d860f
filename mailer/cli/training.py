"""`mailer training ...`: staff training records and the TRN-1 gate (issue 17)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mailer.accounts.permissions import Action
from mailer.cli.common import new_app, out, print_json, runtime, signed_in
from mailer.compliance import training
from mailer.compliance.common import parse_day
from mailer.models import utcnow

training_app = new_app("Staff training records; campaign authors and approvers need current training (TRN-1).")

Fmt = Annotated[str, typer.Option("--format", help="text or json.")]


@training_app.command("record")
def record(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="The account that completed the course.")],
    course: Annotated[str, typer.Option("--course", help="Course name; the gate asks for [compliance] training_course.")],
    completed: Annotated[str, typer.Option("--completed", help="Completion date, YYYY-MM-DD.")],
    certificate: Annotated[Path | None, typer.Option("--certificate", help="Certificate file: stored encrypted, listed by SHA-256.")] = None,
    fmt: Fmt = "text",
) -> None:
    """Record a completed course; it is current for [compliance] training_valid_days (365)."""
    p = signed_in(ctx, Action.TRAINING_RECORD)
    rt = runtime(ctx)
    t = training.record(rt, p, account, course=course, completed=parse_day(completed, "--completed"),
                        certificate=certificate)
    if fmt == "json":
        print_json(t.as_dict(utcnow()))
        return
    out.print(f"training {t.id}: {t.account} completed {t.course!r} on {t.completed_at.date()}; "
              f"current until {t.expires_at.date()}" + (f"; certificate sha256 {t.certificate_sha256[:12]}"
                                                        if t.certificate_sha256 else ""), markup=False)


@training_app.command("list")
def list_cmd(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    expiring: Annotated[bool, typer.Option("--expiring", help="Only lapsed records and those lapsing within [compliance] expiring_days.")] = False,
    fmt: Fmt = "text",
) -> None:
    """Training records with their status now: current, expiring, expired."""
    p = signed_in(ctx, Action.COMPLIANCE_READ)
    rt = runtime(ctx)
    now = utcnow()
    soon = dt.timedelta(days=rt.settings.compliance.expiring_days)
    rows = [t.as_dict(now, soon) for t in training.list_training(
        rt, p, account=account, expiring_within=soon if expiring else None, at=now)]
    if fmt == "json":
        print_json(rows)
        return
    t = Table()
    for col in ("id", "account", "course", "completed", "expires", "status", "certificate"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), r["account"], r["course"], r["completed"], r["expires"], r["status"],
                  (r["certificate_sha256"] or "")[:12])
    out.print(t)
    if not rows:
        out.print("no training records" + (" lapsing soon" if expiring else ""), markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(training_app, name="training")
