"""`mailer sink`: a local STARTTLS sink that keeps every message as an .eml file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.stopping import stop_on_signals
from mailer.errors import EXIT_USAGE


def sink(
    out: Annotated[Path, typer.Option("--out", help="Folder for the received messages (created 0700; files 0600).")] = Path(".sink"),
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 inside a container network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 2525,
    hostname: Annotated[str, typer.Option(help="Name clients connect with (smtp.host); put in the certificate.")] = "localhost",
    certs: Annotated[Path | None, typer.Option(help="Folder for the throwaway CA and certificate (default: OUT/tls).")] = None,
) -> None:
    """Receive mail over required STARTTLS with a throwaway CA, for trying mailer locally.

    Prints the [smtp] settings to paste into your config, then one line per message
    (Message-ID, size, file name; never an address). The certificate is renewed on every
    start; the CA is kept while it is valid, so a config that trusts it keeps working.
    Stop with Ctrl-C or SIGTERM.
    """
    from mailer.sink import LocalSink, PortInUse

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    server = LocalSink(out=out, host=host, port=port, hostname=hostname, certs_dir=certs, report=say)
    try:
        bound = server.start()
    except PortInUse as e:
        typer.echo(f"mailer sink: {e.strerror}; stop the other server or pick another port with --port", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as e:
        typer.echo(f"mailer sink: cannot listen on {host}:{port}: {e.strerror or e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    say(f"mailer sink: STARTTLS on {host}:{bound}; messages go to {out.resolve()}/ (0700, files 0600)")
    say("paste into your mailer config:\n")
    say(server.settings())
    stop = stop_on_signals()  # before the line a supervisor waits for
    say("waiting for messages (Ctrl-C to stop)")
    try:
        stop.wait()
    finally:
        server.stop()
        stats = server.writer.stats if server.writer else None
        if stats is not None:
            say(f"mailer sink: stopped after {stats.messages} message(s)")


def register(app: typer.Typer) -> None:
    """Called by mailer/cli/app.py's auto-discovery."""
    app.command("sink")(sink)
