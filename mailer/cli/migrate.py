"""`mailer migrate`: bring the database schema to the current version (idempotent)."""

from __future__ import annotations

import typer

from mailer.cli.common import out, runtime


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate(ctx: typer.Context) -> None:
        """Apply pending schema migrations; safe to run again. Needs no key file.

        Run it once before the worker and the web process start (the Docker stack's
        `migrate` service does); `mailer init` runs it too.
        """
        rt = runtime(ctx)
        rt.migrate()
        out.print("database schema is current", markup=False)
