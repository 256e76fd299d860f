"""`mailer preview`: render a template for a synthetic contact, for review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.common import out, state


def register(app: typer.Typer) -> None:
    @app.command("preview")
    def preview(
        ctx: typer.Context,
        template: Annotated[Path, typer.Argument(help="Template folder, e.g. templates/newsletter.")],
        out_dir: Annotated[Path, typer.Option("--out", help="Where to write NAME.eml and NAME.html.")] = Path("preview"),
    ) -> None:
        """Write the message a synthetic contact would get (.eml) and its HTML part (.html)."""
        from mailer.preview import render_preview, write_preview

        p = render_preview(state(ctx).runtime().settings, template)
        eml, html = write_preview(p, out_dir)
        out.print(f"wrote {eml} and {html} (template {p.template.content_hash[:12]}, synthetic contact)")
