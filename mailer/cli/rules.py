"""`mailer rules [ID]`: the rule reference (what each rule ID means, where it comes from, how to pass)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from mailer.errors import EXIT_USAGE


class RulesFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def rules(
    rule_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="A rule ID, e.g. SEC-6; all rules when omitted.")] = None,
    fmt: Annotated[RulesFormat, typer.Option("--format", help="text, json, or markdown (docs/rules.md).")] = RulesFormat.text,
) -> None:
    """List the rules mailer enforces, or explain one: its source, what is checked, how to satisfy it."""
    from mailer import rules as reference

    if rule_id is None:
        everything = list(reference.load().values())
        if fmt is RulesFormat.json:
            typer.echo(json.dumps([r.as_dict() for r in everything], indent=2))
        elif fmt is RulesFormat.markdown:
            typer.echo(reference.render_markdown(), nl=False)
        else:
            family = None
            for r in everything:
                if r.family != family:
                    typer.echo(("" if family is None else "\n") + r.family)
                    family = r.family
                typer.echo(f"  {r.id:7} {r.title}")
            typer.echo("\nmailer rules ID explains one (source, what is enforced, how to satisfy it).")
        return
    rule = reference.get(rule_id)
    if rule is None:
        near = reference.nearest(rule_id)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        typer.echo(f"mailer rules: no rule {rule_id!r}{hint} (mailer rules lists them all)", err=True)
        raise typer.Exit(EXIT_USAGE)
    if fmt is RulesFormat.json:
        typer.echo(json.dumps(rule.as_dict(), indent=2))
    else:
        typer.echo(reference.render_text(rule), nl=False)


def register(app: typer.Typer) -> None:
    """Called by mailer/cli/app.py's auto-discovery."""
    app.command("rules")(rules)
