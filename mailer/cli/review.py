"""`mailer review ...`: the quarterly compliance review, signed off in the ledger (QRV-1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.accounts.permissions import Action
from mailer.cli.common import new_app, out, print_json, runtime, signed_in
from mailer.compliance import quarterly

review_app = new_app("The quarterly compliance review: the seed's checklist as an HTML and PDF report "
                     "that a reviewer signs off (QRV-1).")
Dir = Annotated[Path, typer.Option("--out", help="Folder for the report files.")]


@review_app.command("quarterly")
def produce(ctx: typer.Context, quarter: Annotated[str, typer.Argument(help="e.g. 2026Q4.")], folder: Dir = Path("reviews"),
            fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text") -> None:
    """Walk the checklist and write the report (JSON data, HTML, PDF), unsigned."""
    p = signed_in(ctx, Action.COMPLIANCE_READ)
    rt = runtime(ctx)
    paths, sha = quarterly.produce(rt, p, quarter, folder)
    data = quarterly.gather(rt, quarter) if fmt == "json" else None
    if fmt == "json":
        print_json({"files": {k: str(v) for k, v in paths.items()}, "report_sha256": sha,
                    "findings": quarterly.findings(data or {})})
        return
    out.print(f"wrote {paths['html']} and {paths['pdf']} (data sha256 {sha[:16]}); "
              f"a reviewer signs it off: mailer review sign {quarter} --out {folder}", markup=False)


@review_app.command("sign")
def sign(ctx: typer.Context, quarter: Annotated[str, typer.Argument(help="e.g. 2026Q4.")], folder: Dir = Path("reviews"),
         note: Annotated[str, typer.Option("--note", help="The reviewer's remarks (no PHI).")] = "") -> None:
    """Sign off the quarter's report: a ledger entry bound to its SHA-256; HTML and PDF show it."""
    p = signed_in(ctx, Action.REVIEW_SIGN)
    s = quarterly.sign(runtime(ctx), p, quarter, folder, note=note)
    out.print(f"{s['quarter']} signed off by {s['reviewer']} (ledger entry {s['seq']}, report {s['report_sha256'][:16]})",
              markup=False)


@review_app.command("evidence")
def evidence(ctx: typer.Context, quarter: Annotated[str, typer.Argument(help="e.g. 2026Q4.")],
             zip_path: Annotated[Path, typer.Option("--zip", help="The evidence zip to write.")],
             folder: Dir = Path("reviews")) -> None:
    """The quarter's evidence zip: report, sign-off ledger entries, ledger report, manifest."""
    p = signed_in(ctx, Action.LEDGER_EVIDENCE)
    r = quarterly.evidence(runtime(ctx), p, quarter, folder, zip_path)
    out.print(f"wrote {r['path']} (sha256 {r['sha256'][:16]}): {len(r['files'])} file(s), {r['signoffs']} sign-off(s)",
              markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
