"""`mailer serve`: the one-click unsubscribe endpoint and the web workspace (Starlette under uvicorn)."""

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
        only: Annotated[str, typer.Option(help="both (default), unsubscribe (the public /u/ endpoint alone) "
                                               "or workspace (the signed-in web workspace alone).")] = "both",
    ) -> None:
        """Answer GET/POST /u/{token} (RFC 8058) and the workspace. Access logs are off: URLs carry tokens."""
        import uvicorn

        from mailer.errors import InputError
        from mailer.web.server import build_app

        if only not in ("both", "unsubscribe", "workspace"):
            raise InputError(f"--only {only!r} is not one of both, unsubscribe, workspace")
        rt = runtime(ctx)
        config = uvicorn.Config(build_app(rt, only), host=host, port=port,  # type: ignore[arg-type]
                                access_log=False, server_header=False, log_level="warning", proxy_headers=True)
        uvicorn.Server(config).run()
