"""`mailer bounces ...`: take bounces and complaints in (SMTP receiver, Maildir, IMAP) and review what was kept aside."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from mailer.accounts.permissions import Action
from mailer.cli.common import act, new_app, out, print_json, runtime
from mailer.cli.stopping import stop_on_signals
from mailer.errors import ConfigError, InputError

bounces_app = new_app("Bounces (RFC 3464) and complaints (RFC 5965): receive, fetch, review (BNC-1, STD-7).")


def _print_totals(t: object, what: str) -> None:
    from mailer.bounces.process import Totals

    assert isinstance(t, Totals)
    out.print(f"{what}: {t.total} message(s): " + (", ".join(f"{k} {v}" for k, v in sorted(t.by_disposition.items()))
                                                     or "none"), markup=False)
    if t.by_class:
        out.print("  applied: " + ", ".join(f"{k} {v}" for k, v in sorted(t.by_class.items()))
                  + f"; addresses suppressed {t.suppressed}", markup=False)
    for reason, n in sorted(t.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        out.print(f"  kept aside ({n}): {reason}", markup=False)
    if t.reasons:
        out.print("  see them with `mailer bounces held`; they changed nothing", markup=False)


@bounces_app.command("fetch")
def fetch(ctx: typer.Context,
          maildir: Annotated[Path | None, typer.Option("--maildir", help="A local Maildir (default: bounces.maildir).")] = None,
          imap: Annotated[bool, typer.Option("--imap", help="The IMAP mailbox of bounces.imap_* (TLS required).")] = False) -> None:
    """Process the bounce mailbox once; processed messages move to mailer-processed, others to
    mailer-review or mailer-rejected (never deleted)."""
    from mailer.bounces.mailbox import fetch_imap, fetch_maildir
    from mailer.bounces.process import Processor

    rt = runtime(ctx)
    s = rt.settings.bounces
    proc = Processor(rt, actor=act(ctx, Action.BOUNCES_PROCESS))
    if imap:
        if maildir is not None:
            raise InputError("--imap and --maildir are exclusive", hint="pick one source")
        totals = fetch_imap(proc)
    else:
        path = maildir or s.maildir
        if path is None:
            raise ConfigError("no Maildir given", hint="pass --maildir PATH, set bounces.maildir, or use --imap")
        totals = fetch_maildir(proc, Path(path))
    _print_totals(totals, "fetched")


@bounces_app.command("receive")
def receive(ctx: typer.Context,
            host: Annotated[str | None, typer.Option("--host", help="Listen address (default: bounces.receiver_host).")] = None,
            port: Annotated[int | None, typer.Option("--port", help="Port (default: bounces.receiver_port; 0: a free one).")] = None) -> None:
    """Run the SMTP receiver for the bounce domain (STARTTLS required) until SIGTERM or Ctrl-C."""
    from mailer.bounces.process import Processor
    from mailer.bounces.receiver import start_receiver

    rt = runtime(ctx)
    s = rt.settings.bounces
    if not s.domain:
        raise ConfigError("bounces.domain is not set", hint="set the bounce domain the return paths use")
    if s.tls_cert_file is None or s.tls_key_file is None:
        raise ConfigError("the receiver needs a STARTTLS certificate",
                          hint="set bounces.tls_cert_file and bounces.tls_key_file (PEM)")
    proc = Processor(rt, actor=act(ctx, Action.BOUNCES_PROCESS))
    controller, bound, handler = start_receiver(proc, host=host or s.receiver_host,
                                                port=s.receiver_port if port is None else port,
                                                cert_file=s.tls_cert_file, key_file=s.tls_key_file)
    stop = stop_on_signals()
    out.print(f"receiving bounces for {s.domain} on {host or s.receiver_host}:{bound} (STARTTLS required)",
              markup=False)
    import sys

    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        controller.stop()
    _print_totals(handler.totals, "received")


@bounces_app.command("held")
def held(ctx: typer.Context,
         disposition: Annotated[str | None, typer.Option("--disposition", help="review or rejected.")] = None,
         fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text") -> None:
    """Messages kept aside (never acted on): ids, reasons, sizes and hashes; never content."""
    from mailer.bounces.models import BounceHeld

    if disposition not in (None, "review", "rejected"):
        raise InputError(f"disposition {disposition!r} is not known", hint="review or rejected")
    rt = runtime(ctx)
    t = BounceHeld.__table__  # type: ignore[attr-defined]
    q = select(t.c.id, t.c.at, t.c.disposition, t.c.reason, t.c.source, t.c.size, t.c.sha256).order_by(t.c.id)
    if disposition:
        q = q.where(t.c.disposition == disposition)
    with rt.engine.connect() as conn:
        rows = conn.execute(q).all()
    if fmt == "json":
        print_json([r._asdict() for r in rows])
        return
    table = Table()
    for col in ("id", "at (UTC)", "disposition", "reason", "source", "bytes", "sha256"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.at.strftime("%Y-%m-%d %H:%M:%S"), r.disposition, r.reason, r.source, str(r.size),
                      r.sha256[:16])
    out.print(table)
    out.print(f"{len(rows)} message(s) kept aside", markup=False)


@bounces_app.command("rates")
def rates(ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
          fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text") -> None:
    """A campaign's bounce and complaint rates over all its runs (STD-7 pauses at the threshold)."""
    from mailer.bounces.rates import campaign_rates

    rt = runtime(ctx)
    r = campaign_rates(rt.engine, campaign_id)
    if fmt == "json":
        print_json({"campaign": campaign_id, **r.as_dict()})
        return
    out.print(f"campaign {campaign_id}: {r.sent} sent; bounces {r.hard} hard, {r.soft} soft ({r.bounce_rate:.2%}); "
              f"complaints {r.complaints} ({r.complaint_rate:.2%}; threshold "
              f"{rt.settings.bounces.complaint_rate_threshold:.2%}, STD-7)", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(bounces_app, name="bounces")
