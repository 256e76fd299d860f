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
    ) -> None:
        """Answer GET/POST /u/{token} (RFC 8058). Access logs are off: URLs carry tokens."""
        import uvicorn

        from mailer.web import create_app

        rt = runtime(ctx)
        config = uvicorn.Config(create_app(rt), host=host, port=port, access_log=False, server_header=False,
                                log_level="warning", proxy_headers=True)
        uvicorn.Server(config).run()
