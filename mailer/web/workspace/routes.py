"""The workspace's URL map, its security headers on every response, and its error pages.

No PHI in URLs: paths carry campaign ids, ledger sequence numbers and account names only;
query strings carry filters (ids, kinds, dates). Errors never show a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.runtime import Runtime
from mailer.web.workspace import (
    auth,
    authorization_pages,
    campaign_pages,
    ledger_pages,
    other_pages,
    recipient_pages,
)
from mailer.web.workspace.core import HERE, Workspace, new_reference
from mailer.web.workspace.security import HEADERS

log = logging.getLogger(__name__)


class SecurityHeaders:
    """Adds the security headers to every response that lacks them (static files, 404s, ...)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._raw = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self._raw if k not in have]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


def create_workspace(rt: Runtime) -> Starlette:
    ws = Workspace(rt)
    C, L, O = campaign_pages, ledger_pages, other_pages  # noqa: E741, N806
    AU, R = authorization_pages, recipient_pages  # noqa: N806
    routes: list[BaseRoute] = [
        Route("/", O.dashboard, methods=["GET"]),
        Route("/login", auth.login_form, methods=["GET"]),
        Route("/login", auth.login_submit, methods=["POST"]),
        Route("/logout", auth.logout, methods=["POST"]),
        Route("/password", auth.password, methods=["GET", "POST"]),
        Route("/campaigns", C.campaign_list, methods=["GET"]),
        Route("/campaigns/new", C.campaign_new, methods=["GET", "POST"]),
        Route("/campaigns/{campaign_id:int}", C.campaign_detail, methods=["GET"]),
        Route("/campaigns/{campaign_id:int}/preview", C.campaign_preview, methods=["GET"]),
        Route("/campaigns/{campaign_id:int}/evidence.zip", L.evidence_zip, methods=["GET"]),
        Route("/campaigns/{campaign_id:int}/{action:str}", C.campaign_action, methods=["POST"]),
        Route("/ledger", L.ledger_list, methods=["GET"]),
        Route("/ledger/verify", L.ledger_verify, methods=["POST"]),
        Route("/ledger/verify/{job:str}", L.ledger_verify_progress, methods=["GET"]),
        Route("/ledger/export.csv", L.ledger_export, methods=["GET"]),
        Route("/ledger/report", L.ledger_report, methods=["GET"]),
        Route("/ledger/{seq:int}", L.ledger_entry, methods=["GET"]),
        Route("/access", L.access_log, methods=["GET"]),
        Route("/authorizations", AU.authorizations_page, methods=["GET"]),
        Route("/authorizations/grant", AU.authorization_grant, methods=["POST"]),
        Route("/authorizations/revoke", AU.authorization_revoke, methods=["POST"]),
        Route("/recipients", R.recipient_lookup, methods=["GET", "POST"]),
        Route("/rules", O.rules_page, methods=["GET"]),
        Route("/users", O.users_page, methods=["GET", "POST"]),
        Route("/users/{name:str}/{action:str}", O.user_action, methods=["POST"]),
    ]
    routes.append(Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"))

    async def http_error(request: Request, exc: Any) -> Response:
        status = getattr(exc, "status_code", 500)
        titles = {404: ("Not found", "There is nothing at this address."),
                  405: ("Not allowed", "This address does not accept that kind of request.")}
        title, message = titles.get(status, ("Error", "The request could not be handled."))
        return ws.error(status, title, message)

    async def server_error(request: Request, exc: Exception) -> Response:
        ref = new_reference()
        # The type only: an exception's text could quote a value (never log PHI).
        log.error("workspace error %s: %s at %s", ref, type(exc).__name__, request.url.path)
        return ws.error(500, "Something went wrong", f"The request failed (reference {ref}). Nothing was changed "
                        "unless the page you come back to says so.", hint="try again; if it persists, tell an "
                        "administrator the reference")

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.ws = ws
    app.add_middleware(SecurityHeaders)
    return app
