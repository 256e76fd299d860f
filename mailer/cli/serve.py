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
        trusted_host: Annotated[list[str] | None, typer.Option(
            "--trusted-host", help="A Host name the unsubscribe endpoint answers (repeat). Default: the host of "
                                   "unsubscribe.base_url, and localhost.")] = None,
        only: Annotated[str, typer.Option(help="both (default), unsubscribe (the public /u/ endpoint alone) "
                                               "or workspace (the signed-in web workspace alone).")] = "both",
    ) -> None:
        """Answer GET/POST /u/{token} (RFC 8058) and the workspace. Access logs are off: URLs carry tokens.

        On /u/: bodies over 4 KB get 413 unread, other Host names get 400, and no response is
        ever a redirect. Every request head must arrive within 10 s."""
        import uvicorn

        from mailer.errors import InputError
        from mailer.web.guard import default_hosts, server_config
        from mailer.web.server import build_app

        if only not in ("both", "unsubscribe", "workspace"):
            raise InputError(f"--only {only!r} is not one of both, unsubscribe, workspace")
        rt = runtime(ctx)
        hosts = [*default_hosts(rt.settings.unsubscribe.base_url), *(trusted_host or [])]
        web = build_app(rt, only, trusted_hosts=hosts)  # type: ignore[arg-type]
        uvicorn.Server(server_config(web, host=host, port=port)).run()
