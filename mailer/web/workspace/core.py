"""The workspace's request plumbing: who is signed in, CSRF, permission, errors, rendering.

Every page handler is a plain function `(c: Ctx) -> Response` run in a thread, wrapped by
`page(...)`, which resolves the server-side session (ending idle, expired or disabled ones),
refuses a POST without the session's CSRF token, checks the permission table with
`require` (a refusal is a 403 page and an `access` entry), and turns MailerError into a
page that says what happened and how to fix it: never a stack trace.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mailer.accounts.permissions import Action, PermissionDenied, Principal, require, roles_for
from mailer.errors import ComplianceRefusal, InputError, MailerError
from mailer.runtime import Runtime
from mailer.web.workspace import sessions
from mailer.web.workspace.security import CSRF_FIELD, HEADERS, SESSION_COOKIE, RateLimiter, csrf_ok
from mailer.web.workspace.verify_jobs import VerifyJobs

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


class NotFound(MailerError):
    """An unknown id in a URL: 404, nothing else said."""


class Workspace:
    """What every request shares: the base runtime (engine, keys), templates, the limiter."""

    def __init__(self, rt: Runtime) -> None:
        self.base = rt
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
        self.env.globals["Action"] = Action
        self.limiter = RateLimiter(rt.settings.web.signin_per_minute)
        self.jobs = VerifyJobs()

    def runtime_for(self, principal: Principal) -> Runtime:
        """A per-request Runtime acting as the signed-in account (the ledger names it)."""
        r = Runtime(self.base.settings, _engine=self.base.engine, _keyring=self.base.keyring)
        r.act_as(principal)
        return r

    def html(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(center=self.base.settings.center.name, **values)
        return HTMLResponse(body, status_code=status, headers=HEADERS)

    def error(self, status: int, title: str, message: str, *, hint: str = "", rules: tuple[str, ...] = (),
              refusals: list[Any] | None = None, c: Ctx | None = None) -> HTMLResponse:
        return self.html("error.html", status, title=title, message=message, hint=hint, rules=rules,
                         refusals=refusals or [], c=c)


@dataclass
class Ctx:
    """One request as a handler sees it: the account, its runtime, the form, the CSRF token."""

    ws: Workspace
    request: Request
    session: sessions.WebSessionInfo
    rt: Runtime
    form: dict[str, str] = field(default_factory=dict)

    @property
    def principal(self) -> Principal:
        return self.session.principal

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def can(self, action: Action) -> bool:
        return self.principal.can(action)

    def q(self, name: str, default: str = "") -> str:
        return (self.request.query_params.get(name) or default).strip()

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return self.ws.html(template, status, c=self, **values)

    def require(self, action: Action) -> None:
        require(self.principal, action)


def secure_cookie(ws: Workspace, request: Request) -> bool:
    mode = ws.base.settings.web.secure_cookies
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def set_session_cookie(ws: Workspace, request: Request, resp: Response, token: str) -> None:
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
                    secure=secure_cookie(ws, request))


def clear_session_cookie(ws: Workspace, request: Request, resp: Response) -> None:
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure_cookie(ws, request))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def page(action: Action | None = None, *, password_stage: bool = False) -> Callable[..., Any]:
    """Wrap a handler `(Ctx) -> Response` with the session, CSRF, permission and error checks."""

    def deco(fn: Callable[[Ctx], Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            ws: Workspace = request.app.state.ws
            raw: dict[str, str] | None = None
            if request.method == "POST":
                raw = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            # One trip to the thread pool: the session, the CSRF check and the handler.
            return await run_in_threadpool(_serve, ws, request, fn, action, raw, password_stage)

        endpoint.__name__ = fn.__name__
        return endpoint

    return deco


def _serve(ws: Workspace, request: Request, fn: Callable[[Ctx], Response], action: Action | None,
           form: dict[str, str] | None, password_stage: bool) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    got = sessions.resolve(ws.base, token)
    if isinstance(got, sessions.Ended):
        resp = redirect("/login" + (f"?ended={got.reason}" if got.reason else ""))
        if token:
            clear_session_cookie(ws, request, resp)
        return resp
    if got.stage == sessions.PASSWORD and not password_stage:
        return redirect("/password")
    if form is not None and not csrf_ok(got.csrf, form.get(CSRF_FIELD)):
        return ws.error(403, "Form refused", "This form was not sent from a page of this workspace "
                        "(its security token is missing or wrong).",
                        hint="go back, reload the page and send the form again")
    c = Ctx(ws, request, got, ws.runtime_for(got.principal), form or {})
    return _guarded(fn, c, action)


def _guarded(fn: Callable[[Ctx], Response], c: Ctx, action: Action | None) -> Response:
    from mailer.accounts import service as accounts

    try:
        if action is not None:
            c.require(action)
        return fn(c)
    except PermissionDenied as e:
        accounts.record_denied(c.rt, c.principal, Action(e.action) if e.action else Action.LEDGER_READ,
                               (e.rules or ("SEC-10",))[0])
        # SEC-6 (four eyes) suggests no way around it; other refusals say who may grant the role.
        may = ", ".join(roles_for(Action(e.action))) \
            if e.action in {a.value for a in Action} and "SEC-6" not in e.rules else ""
        hint = e.hint or (f"an administrator can give this account one of these roles: {may}" if may else "")
        return c.ws.error(403, "Not allowed", e.message, rules=e.rules, hint=hint, c=c)
    except NotFound:
        return c.ws.error(404, "Not found", "There is nothing at this address.", c=c)
    except ComplianceRefusal as e:
        return c.ws.error(422, "Refused by a compliance rule", e.message, refusals=list(e.refusals), c=c)
    except InputError as e:
        if "does not exist" in e.message:
            return c.ws.error(404, "Not found", e.message, hint=e.hint, c=c)
        return c.ws.error(400, "Cannot do that", e.message, hint=e.hint, rules=e.rules, c=c)
    except MailerError as e:
        status = 409 if type(e).__name__ == "StateError" else 400 if e.exit_code == 2 else 422 if e.exit_code == 3 else 500
        return c.ws.error(status, "Cannot do that", e.message, hint=e.hint, rules=e.rules, c=c)


def new_reference() -> str:
    return secrets.token_hex(4)


def field_errors() -> dict[str, str]:
    return {}


def int_param(value: str | None, name: str, *, required: bool = False) -> int | None:
    if value in (None, ""):
        if required:
            raise InputError(f"{name} is required")
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise InputError(f"{name} must be a whole number", hint=f"e.g. {name}=12") from None
