"""`mailer init`: the database, the key file and the first administrator, created once."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.common import out, runtime
from mailer.crypto import Keyring
from mailer.ledger import SYSTEM, Event


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(ctx: typer.Context,
             dkim: Annotated[bool, typer.Option(help="Also create an Ed25519 DKIM key in the key file.")] = False,
             admin: Annotated[str, typer.Option("--admin", help="Name of the first administrator account.")] = "admin",
             ) -> None:
        """Create the key file (mode 0600, never overwritten), migrate the database, and on a
        fresh database create the first administrator with a one-time password (to change at
        first sign-in) and a TOTP second factor."""
        from mailer.accounts import service as accounts
        from mailer.cli.users import show_one_time_password, show_totp

        rt = runtime(ctx)
        path = rt.settings.keys.file
        keyring = Keyring.generate()
        if dkim:
            from mailer.dkim import generate_key

            keyring.dkim_private_pem = generate_key()
        keyring.save(path)  # refuses to overwrite an existing key file
        rt._keyring = keyring
        rt.migrate()
        rt.ledger.append([Event(kind=SYSTEM, outcome="init", actor=None,
                                detail={"key_ids": sorted(keyring.field_keys), "os_user": accounts.real_os_user()})])
        out.print(f"created key file {path} (mode 0600) and migrated the database")
        if accounts.count_accounts(rt) == 0:
            info, otp, enrol = accounts.bootstrap_admin(rt, admin)
            out.print(f"created the first administrator account: {info.name}", markup=False)
            show_one_time_password(info.name, otp)
            show_totp(enrol)
            out.print(f"next: mailer login --user {info.name}   (then: mailer users add NAME --role ROLE)",
                      markup=False)
