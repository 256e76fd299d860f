"""Starlette app for `mailer serve`: `/u/{token}` one-click unsubscribe (STD-3, SPAM-4..6, PHI-6).

    POST /u/{token}  body `List-Unsubscribe=One-Click` -> suppressed now; 200 and a short page.
                     No cookie, no login, no redirect (RFC 8058 §3.2). Idempotent.
    GET  /u/{token}  a confirmation page with one button (a form POSTing the same body to the
                     same URL). A GET alone never unsubscribes: mail scanners follow links.
    unknown, malformed or expired token -> 404 with no detail (nothing to probe).

The endpoint faces the internet (mailer.web.guard): bodies over MAX_BODY bytes get 413
before they are read, a request must arrive within a deadline, only the configured hosts
are served (no redirect is ever built from a Host header: there are none at all), and
every response, 404 and 405 included, carries the same security headers. A token answers
once: later POSTs are no-ops that say "already unsubscribed" (no ledger entry each time).

Pages show the center's name only: never the address or anything about the patient.
Database work runs in a thread; the app holds no session state at all.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from mailer.models import utcnow
from mailer.runtime import Runtime
from mailer.unsubscribe import ONE_CLICK_BODY, is_unsubscribed, one_click, resolve
from mailer.web.guard import Guard, default_hosts

log = logging.getLogger(__name__)

_HEADERS = {
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}
button{{font-size:1.1rem;padding:.6rem 1.4rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status, headers=_HEADERS)


def _not_found() -> Response:
    return PlainTextResponse("Not found\n", status_code=404, headers=_HEADERS)


def confirmation_page(center: str) -> HTMLResponse:
    c = html.escape(center)
    return _page("Unsubscribe", f"""<p>Stop receiving email from {c}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>""")


def done_page(center: str) -> HTMLResponse:
    return _page("You are unsubscribed",
                 f"<p>You will not receive further email from {html.escape(center)}. Nothing else is needed.</p>")


def already_page(center: str) -> HTMLResponse:
    return _page("You are already unsubscribed",
                 f"<p>You are already unsubscribed from email from {html.escape(center)}. Nothing else is needed.</p>")


def create_app(rt: Runtime, *, trusted_hosts: Sequence[str] | None = None) -> ASGIApp:
    """The app, wrapped in the guard. TRUSTED_HOSTS: Host values served (default: the host
    of `unsubscribe.base_url`, plus localhost for a proxy or health check on this machine)."""
    center = rt.settings.center.name
    days = rt.settings.unsubscribe.token_days

    async def get_token(request: Request) -> Response:
        token = request.path_params["token"]
        record = await run_in_threadpool(resolve, rt.engine, token, at=utcnow(), token_days=days)
        if record is None:
            return _not_found()
        if await run_in_threadpool(is_unsubscribed, rt.engine, record):
            return already_page(center)
        return confirmation_page(center)  # never unsubscribes by itself (STD-3)

    async def post_token(request: Request) -> Response:
        token = request.path_params["token"]
        record = await run_in_threadpool(resolve, rt.engine, token, at=utcnow(), token_days=days)
        if record is None:
            return _not_found()
        body = (await request.body()).decode("utf-8", "replace")
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            ok = form.get("List-Unsubscribe") == "One-Click"
        else:  # RFC 8058: application/x-www-form-urlencoded, exactly this pair
            ok = body.strip() == ONE_CLICK_BODY
        if not ok:
            return PlainTextResponse(f"Expected {ONE_CLICK_BODY}\n", status_code=400, headers=_HEADERS)
        opt = await run_in_threadpool(one_click, rt.ledger.engine, rt.ledger, record)
        return already_page(center) if opt.already else done_page(center)

    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok\n", headers=_HEADERS)

    app = Starlette(routes=[
        # "/u/TOKEN/" is served too: Starlette would otherwise redirect to a URL built from Host
        Route("/u/{token}", get_token, methods=["GET", "HEAD"]),
        Route("/u/{token}/", get_token, methods=["GET", "HEAD"]),
        Route("/u/{token}", post_token, methods=["POST"]),
        Route("/u/{token}/", post_token, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ])
    app.router.redirect_slashes = False
    hosts = list(trusted_hosts) if trusted_hosts is not None else default_hosts(rt.settings.unsubscribe.base_url)
    return Guard(app, hosts=hosts, headers=_HEADERS)
