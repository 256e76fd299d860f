"""`mailer risk ...`: risk assessments for new marketing initiatives (RSK-1, RSK-2)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailer import campaigns
from mailer.accounts.permissions import Action
from mailer.cli.common import new_app, out, print_json, runtime, signed_in
from mailer.compliance import risk

risk_app = new_app("Risk assessments: a new purpose, vendor, channel or data field needs one, approved by "
                   "a reviewer other than its author, before its first campaign passes preflight (RSK-1, RSK-2).")
Fmt = Annotated[str, typer.Option("--format", help="text or json.")]


def _show(a: risk.Assessment, fmt: str) -> None:
    if fmt == "json":
        print_json(a.as_dict())
        return
    out.print(f"risk assessment {a.id} ({a.status}): {a.title}; covers {', '.join(a.covers)}; residual risk "
              f"{a.residual_risk}; decision {a.decision}; author {a.author}"
              + (f", reviewer {a.reviewer}" if a.reviewer else ""), markup=False)


@risk_app.command("check")
def check(ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(help="Campaign id.")], fmt: Fmt = "text") -> None:
    """What makes a campaign a new initiative, and whether an approved assessment covers it."""
    signed_in(ctx, Action.CAMPAIGN_CHECK)
    rt = runtime(ctx)
    new, refusals = risk.campaign_refusals(rt, campaigns.get(rt, campaign_id))
    if fmt == "json":
        print_json({"campaign": campaign_id, "new_elements": sorted(new), "refusals": [r.as_dict() for r in refusals]})
    else:
        out.print(f"campaign {campaign_id}: new elements: {', '.join(sorted(new)) or 'none'}; "
                  f"{'NOT covered (RSK-1)' if refusals else 'covered'}", markup=False)
    if refusals:
        raise typer.Exit(3)


@risk_app.command("draft")
def draft(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title", help="The initiative, in a few words.")],
    phi: Annotated[str, typer.Option("--phi", help="What PHI the initiative uses.")],
    recipients: Annotated[str, typer.Option("--recipients", help="Who receives or handles it (vendors, the center).")],
    safeguards: Annotated[str, typer.Option("--safeguards", help="The safeguards in place.")],
    residual_risk: Annotated[str, typer.Option("--residual-risk", help="low, medium or high.")],
    decision: Annotated[str, typer.Option("--decision", help="proceed or do-not-proceed.")] = "proceed",
    campaign: Annotated[int | None, typer.Option("--campaign", help="Cover this campaign's new elements.")] = None,
    covers: Annotated[str, typer.Option("--covers", help="Elements, comma-separated: purpose:X, vendor:HOST, field:NAME ...")] = "",
    fmt: Fmt = "text",
) -> None:
    """Draft an assessment (narrative stored encrypted); a different reviewer approves it."""
    p = signed_in(ctx, Action.RISK_DRAFT)
    rt = runtime(ctx)
    items = [c for c in covers.split(",") if c.strip()]
    if campaign is not None:
        new, _ = risk.campaign_refusals(rt, campaigns.get(rt, campaign))
        items += sorted(new)
    _show(risk.draft(rt, p, title=title, covers=items, phi=phi, recipients=recipients, safeguards=safeguards,
                     residual_risk=residual_risk, decision=decision), fmt)


@risk_app.command("approve")
def approve(ctx: typer.Context, risk_id: Annotated[int, typer.Argument(help="Assessment id.")], fmt: Fmt = "text") -> None:
    """Approve an assessment (a reviewer other than its author, RSK-2)."""
    p = signed_in(ctx, Action.RISK_APPROVE)
    _show(risk.decide(runtime(ctx), p, risk_id, approve=True), fmt)


@risk_app.command("reject")
def reject(ctx: typer.Context, risk_id: Annotated[int, typer.Argument(help="Assessment id.")], fmt: Fmt = "text") -> None:
    """Reject an assessment: the initiative stays refused."""
    p = signed_in(ctx, Action.RISK_APPROVE)
    _show(risk.decide(runtime(ctx), p, risk_id, approve=False), fmt)


@risk_app.command("show")
def show(ctx: typer.Context, risk_id: Annotated[int, typer.Argument(help="Assessment id.")]) -> None:
    """One assessment with its narrative (JSON; the view is recorded)."""
    p = signed_in(ctx, Action.COMPLIANCE_READ)
    print_json(risk.details(runtime(ctx), p, risk_id))


@risk_app.command("list")
def list_cmd(ctx: typer.Context, fmt: Fmt = "text") -> None:
    """Every assessment, its coverage and decision."""
    p = signed_in(ctx, Action.COMPLIANCE_READ)
    rows = risk.list_risk(runtime(ctx), p)
    if fmt == "json":
        print_json([a.as_dict() for a in rows])
        return
    t = Table()
    for col in ("id", "status", "title", "covers", "risk", "decision", "author", "reviewer"):
        t.add_column(col)
    for a in rows:
        t.add_row(str(a.id), a.status, a.title, ", ".join(a.covers), a.residual_risk, a.decision, a.author, a.reviewer or "")
    out.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(risk_app, name="risk")
