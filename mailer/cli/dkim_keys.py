"""`mailer keys add-dkim` and `mailer dkim`: DKIM keys after setup, and the DNS records (STD-4)."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.common import FormatOpt, check_format, out, print_json, runtime
from mailer.cli.keys import keys_app
from mailer.errors import InputError

KINDS = ("rsa", "ed25519")


@keys_app.command("add-dkim")
def add_dkim(
    ctx: typer.Context,
    types: Annotated[list[str] | None, typer.Option(
        "--type", help="rsa (2048 bits) or ed25519; repeat for both (many receivers verify only RSA).")] = None,
) -> None:
    """Add (or rotate) DKIM keys in the key file; then publish the records `mailer dkim` prints (STD-4)."""
    from mailer.dkim import add_key, selectors

    kinds = list(dict.fromkeys(t.strip().lower() for t in (types or ["rsa", "ed25519"])))
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise InputError(f"DKIM key type {bad[0]!r} is not supported", hint="--type rsa and/or --type ed25519")
    rt = runtime(ctx)
    keyring = rt.keyring
    bundle = keyring.dkim_private_pem
    replaced = []
    for kind in kinds:
        bundle, was = add_key(bundle, kind)
        if was:
            replaced.append(kind)
    keyring.dkim_private_pem = bundle
    assert keyring.path is not None
    keyring.save(keyring.path, overwrite=True)
    d = rt.settings.dkim
    for sel, kind, _pem in selectors(bundle, d.selector or "mailer"):
        if kind in kinds:
            verb = "replaced" if kind in replaced else "added"
            out.print(f"{verb} a {kind} DKIM key (selector {sel})", markup=False)
    if replaced:
        out.print("a replaced key signs with the same selector: publish its new record before sending again",
                  markup=False)
    out.print("next: publish the records `mailer dkim` prints, then set dkim.enabled = true "
              "(with dkim.domain and dkim.selector)", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("dkim")
    def dkim_records(ctx: typer.Context, fmt: FormatOpt = "text") -> None:
        """Print the DNS TXT records to publish for the DKIM keys in the key file (STD-4)."""
        from mailer.dkim import dns_record, selectors

        check_format(fmt)
        rt = runtime(ctx)
        d = rt.settings.dkim
        keys = selectors(rt.keyring.dkim_private_pem, d.selector or "<selector>")
        if not keys:
            raise InputError("the key file holds no DKIM key",
                             hint="create them with `mailer keys add-dkim --type rsa --type ed25519`")
        records = [{"name": f"{sel}._domainkey.{d.domain or '<domain>'}", "type": "TXT", "key_type": kind,
                    "value": dns_record(pem)} for sel, kind, pem in keys]
        if fmt == "json":
            print_json(records)
            return
        for r in records:
            out.print(f"{r['name']} TXT \"{r['value']}\"", markup=False)
        if not d.domain or not d.selector:
            out.print("set dkim.domain and dkim.selector, then run this again for the exact names", markup=False)
