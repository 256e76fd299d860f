"""Sign-in (password + TOTP), the forced password change, and sign-out.

The sign-in form is protected by a double-submit CSRF token (no session exists yet) and a
per-client rate limit; failures show one message whatever the cause (SEC-1), so nobody
learns whether an account exists or is locked. The account service records every
attempt, failure and lockout in the ledger; this module records sessions opening and ending.
"""

from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mailer.accounts import service as accounts
from mailer.errors import MailerError
from mailer.web.workspace import sessions
from mailer.web.workspace.core import (
    Ctx,
    Workspace,
    clear_session_cookie,
    page,
    redirect,
    secure_cookie,
    set_session_cookie,
)
from mailer.web.workspace.security import CSRF_FIELD, PRE_COOKIE, SESSION_COOKIE, csrf_ok

ENDED = {
    "idle": "You were signed out after a period of inactivity. Sign in again to continue.",
    "absolute": "Your session reached its maximum length. Sign in again to continue.",
    "disabled": "Your session has ended.",
    "password-changed": "Your password was changed or reset. Sign in again to continue.",
    "signed-out": "You are signed out.",
}


def _login_page(ws: Workspace, request: Request, *, status: int = 200, error: str = "", name: str = "",
                notice: str = "") -> Response:
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)
    resp = ws.html("login.html", status, pre=pre, error=error, name=name, notice=notice, c=None)
    resp.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict", path="/login",
                    secure=secure_cookie(ws, request))
    return resp


async def login_form(request: Request) -> Response:
    ws: Workspace = request.app.state.ws
    got = await run_in_threadpool(sessions.resolve, ws.base, request.cookies.get(SESSION_COOKIE))
    if isinstance(got, sessions.WebSessionInfo):
        return redirect("/")
    return _login_page(ws, request, notice=ENDED.get(request.query_params.get("ended", ""), ""))


async def login_submit(request: Request) -> Response:
    ws: Workspace = request.app.state.ws
    form = await request.form()
    if not csrf_ok(request.cookies.get(PRE_COOKIE), form.get(CSRF_FIELD)):
        return ws.error(403, "Form refused", "The sign-in form expired or was not sent from this site.",
                        hint="reload the sign-in page and try again")
    client = request.client.host if request.client else "unknown"
    if not ws.limiter.allow(client):
        resp = _login_page(ws, request, status=429,
                           error="Too many sign-in attempts from this address. Wait a minute and try again.")
        resp.headers["Retry-After"] = "60"
        return resp
    name = str(form.get("name") or "").strip()
    password = str(form.get("password") or "")
    code = str(form.get("code") or "").strip() or None
    try:
        sign_in = await run_in_threadpool(accounts.authenticate, ws.base, name, password, code)
        token, _info = await run_in_threadpool(sessions.open_session, ws.base, sign_in)
    except MailerError:
        # One message for every cause (SEC-1): unknown name, wrong password or code, locked, disabled.
        return _login_page(ws, request, status=401, name=name[:64], error=(
            "Sign-in failed: the name, password or code is wrong, or the account cannot sign in now. "
            f"After {ws.base.settings.accounts.lockout_attempts} failures an account is locked for "
            f"{ws.base.settings.accounts.lockout_minutes} minutes."))
    resp = redirect("/password" if sign_in.must_change_password else "/")
    set_session_cookie(ws, request, resp, token)
    resp.delete_cookie(PRE_COOKIE, path="/login")
    return resp


@page(password_stage=True)
def logout(c: Ctx) -> Response:
    sessions.end(c.ws.base, c.session, "signed-out")
    resp = redirect("/login?ended=signed-out")
    clear_session_cookie(c.ws, c.request, resp)
    return resp


@page(password_stage=True)
def password(c: Ctx) -> Response:
    """The account's own password change; the first sign-in with a one-time password lands here."""
    forced = c.session.stage == sessions.PASSWORD
    errors: dict[str, str] = {}
    if c.request.method == "POST":
        current, new, again = c.form.get("current", ""), c.form.get("new", ""), c.form.get("again", "")
        if not current:
            errors["current"] = "enter your current password"
        if new != again:
            errors["again"] = "the two new passwords differ"
        if not errors:
            try:
                accounts.change_password(c.ws.base, c.principal, current, new)
            except accounts.AuthenticationFailed:
                errors["current"] = "the current password is wrong"
            except accounts.PasswordPolicyError as e:
                errors["new"] = e.message + (f" ({e.hint})" if e.hint else "")
        if not errors:
            resp = redirect("/?changed=1")
            set_session_cookie(c.ws, c.request, resp, sessions.rotate(c.ws.base, c.session))
            return resp
    return c.render("password.html", 400 if errors else 200, forced=forced, errors=errors)
