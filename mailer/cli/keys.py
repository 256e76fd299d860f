"""`mailer keys ...`: field-key rotation (resumable) and status: key ids and counts only."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.accounts.permissions import Action
from mailer.cli.common import act, new_app, out, print_json, runtime

keys_app = new_app("Encryption keys (SEC-4): rotate the field key, show which key encrypts how many rows.")


@keys_app.command("rotate")
def rotate_cmd(ctx: typer.Context) -> None:
    """Add a new field key to the key file and re-encrypt every row under it.

    Resumable: if interrupted, run it again and it continues the unfinished rotation.
    Old keys stay in the key file (backups and unmoved rows name them). Restart running
    workers afterwards so they load the new key.
    """
    from sqlalchemy import func, select

    from mailer.cli.contacts import progress_bar
    from mailer.models import Authorization, Contact
    from mailer.store.rotation import rotate

    rt = runtime(ctx)
    who = act(ctx, Action.KEYS_ROTATE)
    with rt.engine.connect() as conn:
        total = 0
        for table in (Contact.__table__, Authorization.__table__):  # type: ignore[attr-defined]
            total += conn.execute(select(func.count()).select_from(table)).scalar() or 0
    done = 0

    with progress_bar("re-encrypting", total) as advance:
        def step(n: int) -> None:
            nonlocal done
            done += n
            if advance:
                advance(done)

        res = rotate(rt.engine, rt.keyring, rt.ledger, actor=who, progress=step)
    verb = "resumed and finished" if res.resumed else "finished"
    out.print(f"rotation {res.rotation_id} {verb}: {res.rewritten} row(s) re-encrypted from key {res.from_key_id} "
              f"to {res.to_key_id}", markup=False)


@keys_app.command("status")
def status_cmd(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Active key, the key file's key ids, rows per key id (a sample of each decrypted), last rotation.

    Exits 1 when a key id the rows name is missing or its sample does not decrypt."""
    from mailer.store.rotation import key_status

    rt = runtime(ctx)
    st = key_status(rt.engine, rt.keyring)
    bad = bool(st["missing_keys"]) or not all(s["ok"] for s in st["samples"].values())
    if fmt == "json":
        print_json(st)
        if bad:
            raise typer.Exit(1)
        return
    out.print(f"active key {st['active_key_id']}; key file holds {', '.join(st['key_ids'])}", markup=False)
    for kid in sorted({*st["contacts_per_key"], *st["authorizations_per_key"]}):
        mark = " (MISSING from the key file)" if kid in st["missing_keys"] else ""
        sample = st["samples"].get(kid, {})
        if sample and not mark:
            mark = (f"; sample of {sample['checked']} decrypts" if sample["ok"] else
                    f"; {sample['failed']} of {sample['checked']} sampled row(s) do NOT decrypt with this key file")
        out.print(f"  {kid}: {st['contacts_per_key'].get(kid, 0)} contact row(s), "
                  f"{st['authorizations_per_key'].get(kid, 0)} authorization row(s){mark}", markup=False)
    last = st["last_rotation"]
    if last:
        state = "done" if last["done"] else (f"UNFINISHED after contact {last['last_contact_id']}, authorization "
                                             f"{last['last_authorization_id']}; run `mailer keys rotate` to resume")
        out.print(f"last rotation {last['id']}: {last['from']} -> {last['to']}, {state}", markup=False)
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
