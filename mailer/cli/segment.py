"""`mailer segment check`: what a reviewer needs to know about a segment, as counts only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.common import new_app, out, print_json, runtime
from mailer.errors import EXIT_REFUSED
from mailer.sending import check_segment

segment_app = new_app("Segments: who a campaign reaches, checked against SEG-1..SEG-5.")


@segment_app.command("check")
def check(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A segments/*.toml file.")],
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    explain: Annotated[bool, typer.Option("--explain", help="Show which conditions run in SQL and which after decryption.")] = False,
) -> None:
    """Count considered, excluded (by authorization reason), suppressed and matched contacts. Exit 3 when refused."""
    rt = runtime(ctx)
    plan, counts, refusals = check_segment(rt, file)
    data = counts.as_dict()
    data["refused"] = bool(refusals)
    data["rules"] = sorted({r.rule for r in refusals})
    data["refusals"] = [r.as_dict() for r in refusals]
    if explain:
        data["plan"] = plan.explain()
    if fmt == "json":
        print_json(data)
    else:
        out.print(f"segment {data['segment']}: considered {data['considered']}, matched {data['matched']}, "
                  f"suppressed {data['suppressed']}", markup=False)
        excl = ", ".join(f"{k} {v}" for k, v in data["excluded_no_authorization"].items() if v) or "none"
        out.print(f"  excluded for lack of authorization: {excl}", markup=False)
        if explain:
            for line in plan.explain():
                out.print(f"  plan: {line}", markup=False)
        for r in refusals:
            out.print(f"  REFUSED by {r.rule}: {r.reason}", markup=False)
            if r.fix:
                out.print(f"    to satisfy it: {r.fix}", markup=False)
    if refusals:
        raise typer.Exit(EXIT_REFUSED)


def register(app: typer.Typer) -> None:
    app.add_typer(segment_app, name="segment")
