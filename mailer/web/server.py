"""What `mailer serve` answers: the login-free unsubscribe endpoint, the workspace, or both.

The unsubscribe app (mailer.web.app) keeps `/u/...` and `/healthz`; everything else goes
to the workspace. The two never share state: the unsubscribe pages set no cookie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from mailer.runtime import Runtime

Which = Literal["both", "unsubscribe", "workspace"]


def _unsubscribe_path(path: str) -> bool:
    return path.startswith("/u/") or path == "/healthz"


def build_app(rt: Runtime, which: Which = "both", *, trusted_hosts: Sequence[str] | None = None) -> ASGIApp:
    """TRUSTED_HOSTS go to the unsubscribe app's guard (mailer.web.guard): it keeps its body
    limit, Host check and security headers whether it is served alone or beside the workspace."""
    from mailer.web.app import create_app
    from mailer.web.workspace import create_workspace

    if which == "unsubscribe":
        return create_app(rt, trusted_hosts=trusted_hosts)
    workspace = create_workspace(rt)
    if which == "workspace":
        return workspace
    unsubscribe = create_app(rt, trusted_hosts=trusted_hosts)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await workspace(scope, receive, send)
            return
        target = unsubscribe if _unsubscribe_path(scope.get("path", "")) else workspace
        await target(scope, receive, send)

    return app
