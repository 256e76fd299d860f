"""`mailer demo`: the quick start's whole campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(folder: Annotated[Path, typer.Option("--dir", help="Scratch folder (replaced on each run).")] = Path(".demo")) -> None:
        """Run a whole campaign against an embedded STARTTLS sink: import, check, lint, send, ledger."""
        from mailer.demo import run_demo

        raise typer.Exit(run_demo(folder.resolve()))
