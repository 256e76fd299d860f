"""`mailer contacts ...`: import the patient list (encrypted at rest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.common import actor, new_app, out, runtime
from mailer.store.contacts import import_contacts

contacts_app = new_app("Patient contacts: import (addresses and clinical fields are encrypted at rest).")


@contacts_app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with email, first_name, last_name, language, newsletter_opt_in and the clinical columns config declares.")],
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows; report the bad ones.")] = False,
) -> None:
    """Import or update contacts; all-or-nothing unless --skip-invalid."""
    rt = runtime(ctx)
    f = rt.settings.fields
    report = import_contacts(rt.engine, rt.keyring, rt.ledger, file, dict(f.clinical), separator=f.list_separator,
                             skip_invalid=skip_invalid, actor=actor(ctx))
    out.print(f"imported {report.imported} contact(s) from {report.rows} row(s); skipped {report.skipped}")
    for p in report.problems:
        out.print(f"  {file}:{p.line}: {p.field}: {p.reason}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(contacts_app, name="contacts")
