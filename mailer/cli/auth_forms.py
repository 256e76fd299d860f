"""`mailer authorizations form`: the plain-language authorization form (FRM-1, issue 17).

Adds one command to the `authorizations` group defined in mailer/cli/authorizations.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.accounts.permissions import Action
from mailer.cli.authorizations import auth_app
from mailer.cli.common import out, runtime, signed_in
from mailer.compliance import forms


@auth_app.command("form")
def form(
    ctx: typer.Context,
    scope: Annotated[str, typer.Option("--scope", help="The authorization scope the form grants.")],
    out_path: Annotated[Path, typer.Option("--out", help="FILE.pdf or FILE.html.")],
    language: Annotated[str, typer.Option("--language", help="en or es.")] = "en",
    third_party: Annotated[str | None, typer.Option("--third-party", help="The paying third party (third-party-marketing).")] = None,
) -> None:
    """Print a plain-language authorization form with every 164.508(c) element, filled from
    the center's settings; import signed forms with their form_version."""
    signed_in(ctx, Action.FORMS_PRINT)
    rt = runtime(ctx)
    f = forms.build(rt.settings, scope, language, third_party=third_party)
    forms.write(f, out_path)
    out.print(f"wrote {out_path}: {scope} authorization form v{f.version} ({language}); record form_version="
              f"{f.version} when you import the signed forms", markup=False)
