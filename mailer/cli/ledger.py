"""`mailer ledger ...`: read and verify the tamper-evident send ledger."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from mailer.cli.common import new_app, out, runtime
from mailer.errors import EXIT_FAILURE
from mailer.models import LedgerEntry

ledger_app = new_app("The send ledger: verify the chain, show entries.")


@ledger_app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Walk the hash chain and signatures; exit 1 at the first broken entry."""
    rt = runtime(ctx)
    v = rt.ledger.verify()
    if v.ok:
        out.print(f"ledger intact: {v.entries} entries verified")
        return
    out.print(f"ledger BROKEN at entry {v.first_bad_seq}: {v.problem}", markup=False)
    raise typer.Exit(EXIT_FAILURE)


def entries_table(rows: list) -> Table:  # type: ignore[type-arg]
    t = Table()
    for col in ("seq", "at (UTC)", "kind", "outcome", "campaign", "contact", "rules", "tls", "smtp"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r.seq), r.at.strftime("%Y-%m-%d %H:%M:%S"), r.kind, r.outcome or "",
                  str(r.campaign_id or ""), str(r.contact_id or ""), r.rule_ids, r.tls_version or "",
                  str(r.smtp_code or ""))
    return t


@ledger_app.command("tail")
def tail(ctx: typer.Context, n: Annotated[int, typer.Option("-n", help="How many entries.")] = 10) -> None:
    """The newest entries."""
    rt = runtime(ctx)
    t = LedgerEntry.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        rows = list(reversed(conn.execute(select(t).order_by(t.c.seq.desc()).limit(n)).all()))
    out.print(entries_table(rows))


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
