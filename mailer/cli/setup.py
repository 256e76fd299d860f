"""`mailer init`: the database, the key file and the first administrator, created once."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.common import out, state
from mailer.crypto import Keyring
from mailer.errors import KeyFileError
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

        st = state(ctx)
        st.initialising = True
        rt = st.runtime()
        path = rt.settings.keys.file
        if path.exists():
            raise KeyFileError(f"key file {path} already exists; refusing to overwrite it",
                               hint="this installation is initialised already: nothing to do. To start another "
                               "one, set keys.file and database.url to new paths in a separate config file")
        _private_database(rt.settings.database.url)  # created 0600 before SQLite writes to it
        rt.migrate()
        in_use = rt.key_ids_in_use()
        if in_use:  # new keys could never read this data: refuse before writing anything
            raise KeyFileError(
                f"this database ({rt.settings.database.url.split('@')[-1]}) was initialised with key ids "
                f"{', '.join(in_use)} and holds data; a new key file cannot read it",
                hint=f"restore that key file to {path} (or set keys.file to where it is)")
        keyring = Keyring.generate()
        if dkim:
            from mailer.dkim import generate_key

            keyring.dkim_private_pem = generate_key()
        keyring.save(path)  # refuses to overwrite an existing key file
        rt._keyring = keyring
        _private_database(rt.settings.database.url)
        rt.ledger.append([Event(kind=SYSTEM, outcome="init", actor=None,
                                detail={"key_ids": sorted(keyring.field_keys), "os_user": accounts.real_os_user()})])
        out.print(f"created key file {path} (mode 0600) and migrated the database", markup=False)
        if accounts.count_accounts(rt) == 0:
            info, otp, enrol = accounts.bootstrap_admin(rt, admin)
            out.print(f"created the first administrator account: {info.name}", markup=False)
            show_one_time_password(info.name, otp)
            show_totp(enrol)
            out.print(f"next: mailer login --user {info.name}   (then: mailer users add NAME --role ROLE)",
                      markup=False)


def _private_database(url: str) -> None:
    """A SQLite database holds PHI ciphertext and hashes: 0600, with its WAL and SHM files."""
    import os

    from mailer.db import normalize_url

    if not normalize_url(url).startswith("sqlite:///"):
        return
    db = url.split("sqlite:///", 1)[1]
    if not db or db == ":memory:":
        return
    if not os.path.exists(db):
        parent = os.path.dirname(db)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)  # a fresh folder for a fresh database
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.chmod(db + suffix, 0o600)
