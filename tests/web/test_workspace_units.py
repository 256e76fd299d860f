"""The workspace's pure pieces: which actions a page offers, run-time previews, CSRF and
the sign-in rate limit; plus the sign-in limit and routing through the real app."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.accounts.permissions import ROLES, Principal, allowed
from mailer.campaigns import STATES
from mailer.models import Campaign
from mailer.web.guard import MAX_BODY
from mailer.web.workspace.campaign_pages import ACTIONS, available_actions, next_runs
from mailer.web.workspace.security import RateLimiter, csrf_ok


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("is_author", [True, False])
def test_offered_actions_follow_the_permission_table_and_four_eyes(role: str, state: str, is_author: bool) -> None:
    p = Principal(1, "pat", frozenset({role}), "session")
    c = Campaign(id=1, name="n", purpose="newsletter", template="t", segment="s", status=state,
                 author="pat" if is_author else "someone-else")
    offered = set(available_actions(p, c))
    for name, (action, states) in ACTIONS.items():
        expect = state in states and allowed({role}, action) and not (name in ("approve", "reject") and is_author)
        assert (name in offered) == expect, (role, state, name)
    assert not ({"approve", "reject"} & offered) or role == "reviewer"


def test_next_three_runs_in_the_center_time_zone() -> None:
    runs = next_runs(at=None, cron="0 9 * * MON", tz="America/Chicago", now=datetime(2026, 3, 1, 12, 0))
    # 2026-03-08 is the switch to daylight time in Chicago: 09:00 stays 09:00 on the wall clock
    assert runs == ["Mon 2026-03-02 09:00 CST", "Mon 2026-03-09 09:00 CDT", "Mon 2026-03-16 09:00 CDT"]
    one = next_runs(at=datetime(2026, 3, 2, 15, 0), cron=None, tz="America/Chicago", now=datetime(2026, 3, 1))
    assert one == ["Mon 2026-03-02 09:00 CST"]


def test_rate_limiter_window() -> None:
    rl = RateLimiter(3, window=60)
    assert [rl.allow("a", now=t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert rl.allow("b", now=3)  # per client
    assert rl.allow("a", now=60.5)  # the first hit left the window


@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=40), st.integers()))
def test_csrf_matches_only_the_same_nonempty_string(expected: str, given_: Any) -> None:
    assert csrf_ok(expected, given_) == (bool(expected) and given_ == expected)


def test_sign_in_is_rate_limited_per_client(runtime_factory: Any) -> None:
    from starlette.testclient import TestClient

    from mailer.web.server import build_app

    rt = runtime_factory(None, web={"signin_per_minute": 3})
    client = TestClient(build_app(rt))
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    codes = [client.post("/login", data={"csrf_token": token, "name": "nobody", "password": "x" * 12}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert client.post("/login", data={"name": "nobody", "password": "x"}).status_code == 403  # no CSRF token


def test_unsubscribe_and_workspace_are_routed_apart(runtime_factory: Any) -> None:
    from starlette.testclient import TestClient

    from mailer.web.server import build_app

    rt = runtime_factory(None)
    public = "https://" + (urlsplit(rt.settings.unsubscribe.base_url).hostname or "")
    both = TestClient(build_app(rt, "both"), base_url=public, follow_redirects=False)
    assert both.get("/healthz").text == "ok\n"
    # beside the workspace, /u/ keeps its guard (mailer.web.guard): other hosts, big bodies, headers
    other = TestClient(build_app(rt, "both"), base_url="https://evil.example", follow_redirects=False)
    assert other.get("/u/nope").status_code == 400
    big = both.post("/u/nope", content=b"x" * (MAX_BODY + 1))
    assert big.status_code == 413 and big.headers["x-frame-options"] == "DENY"
    assert both.get("/").status_code == 303 and both.get("/").headers["location"] == "/login"
    assert both.get("/u/nope").status_code == 404 and "set-cookie" not in both.get("/u/nope").headers
    only_unsub = TestClient(build_app(rt, "unsubscribe"), base_url=public, follow_redirects=False)
    assert only_unsub.get("/login").status_code == 404
    only_ws = TestClient(build_app(rt, "workspace"), follow_redirects=False)
    assert only_ws.get("/healthz").status_code in (303, 404)


@pytest.mark.parametrize("reason", ["", "   ", "because", "x" * 301])
def test_a_recipient_view_without_a_real_reason_is_refused_with_sec5(reason: str) -> None:
    from mailer.errors import InputError
    from mailer.recipients import check_reason

    with pytest.raises(InputError) as exc:
        check_reason(reason)
    assert exc.value.rules == ("SEC-5",) and exc.value.hint


def test_a_recipient_view_reason_keeps_no_address_or_long_number() -> None:
    from mailer.recipients import check_reason

    got = check_reason("  call from  kenji.evans1@example.com  about MRN 123456789 ")
    assert got == "call from <address> about MRN <digits>"


def test_verify_progress_never_claims_done_early() -> None:
    from mailer.web.workspace.verify_jobs import Job

    job = Job("j", "rita", total=1000)
    assert job.percent == 0
    job.checked = 1000  # every entry read, result not recorded yet
    assert job.percent == 99
    job.done = True
    assert job.percent == 100
    assert Job("e", "rita", total=0).percent == 0


def test_recipient_view_needs_contacts_view(runtime_factory: Any) -> None:
    from mailer.accounts.permissions import PermissionDenied
    from mailer.recipients import view_recipient

    rt = runtime_factory(None)
    with pytest.raises(PermissionDenied):
        view_recipient(rt, Principal(1, "mara", frozenset({"marketer"}), "session"), 1, "ticket 4411 call back")
