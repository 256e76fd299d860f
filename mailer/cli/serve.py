"""`mailer serve`: the one-click unsubscribe endpoint (Starlette under uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.common import runtime


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="Interface to listen on (put TLS in front: the base URL is https).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8080,
        trusted_host: Annotated[list[str] | None, typer.Option(
            "--trusted-host", help="A Host name to answer (repeat). Default: the host of unsubscribe.base_url, "
                                   "and localhost.")] = None,
    ) -> None:
        """Answer GET/POST /u/{token} (RFC 8058). Access logs are off: URLs carry tokens.

        Bodies over 4 KB get 413 unread, request heads must arrive within 10 s, other Host
        names get 400, and no response is ever a redirect."""
        import uvicorn

        from mailer.web import create_app
        from mailer.web.guard import default_hosts, server_config

        rt = runtime(ctx)
        hosts = [*default_hosts(rt.settings.unsubscribe.base_url), *(trusted_host or [])]
        uvicorn.Server(server_config(create_app(rt, trusted_hosts=hosts), host=host, port=port)).run()
