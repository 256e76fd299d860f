"""`mailer init`: the database and the key file, created once."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.common import actor, out, runtime
from mailer.crypto import Keyring
from mailer.ledger import SYSTEM, Event


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(ctx: typer.Context,
             dkim: Annotated[bool, typer.Option(help="Also create an Ed25519 DKIM key in the key file.")] = False) -> None:
        """Create the key file (mode 0600, never overwritten) and migrate the database."""
        rt = runtime(ctx)
        path = rt.settings.keys.file
        keyring = Keyring.generate()
        if dkim:
            from mailer.dkim import generate_key

            keyring.dkim_private_pem = generate_key()
        keyring.save(path)  # refuses to overwrite an existing key file
        rt._keyring = keyring
        rt.migrate()
        rt.ledger.append([Event(kind=SYSTEM, outcome="init", actor=actor(ctx),
                                detail={"key_ids": sorted(keyring.field_keys)})])
        out.print(f"created key file {path} (mode 0600) and migrated the database")
