"""Account services against a real database: sign-in, lockout, TOTP replay, tokens, disabling.

What a user (or an auditor) would check: the same one-line refusal for every sign-in
failure, the cause in the ledger, no secret anywhere in the ledger, a disabled account's
token dead at once.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, text

from mailer.accounts import service as accounts
from mailer.accounts.models import AccessToken, Account
from mailer.accounts.permissions import Action, PermissionDenied, Principal, require
from mailer.accounts.service import SIGN_IN_FAILED, TOKEN_REJECTED, AuthenticationFailed
from mailer.errors import EXIT_REFUSED, EXIT_USAGE, StateError
from mailer.ledger import ACCESS
from mailer.models import utcnow

GOOD = "correct horse battery staple"


@pytest.fixture
def art(runtime_factory: Any) -> Any:
    return runtime_factory()


def code(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def access(rt: Any) -> list[Any]:
    return [r for r in rt.ledger.rows() if r.kind == ACCESS]


def first_admin(rt: Any) -> tuple[Principal, str]:
    """Bootstrap, sign in with the one-time password + TOTP, change the password."""
    _info, otp, enrol = accounts.bootstrap_admin(rt)
    s = accounts.authenticate(rt, "admin", otp, code(enrol.secret), os_user="ops")
    assert s.must_change_password
    accounts.change_password(rt, s.principal, otp, GOOD)
    return s.principal, enrol.secret


def person(rt: Any, admin: Principal, name: str, *roles: str) -> tuple[str, Any]:
    """An account with a known password (set through the first-sign-in change)."""
    _info, otp, enrol = accounts.create_account(rt, admin, name, roles)
    s = accounts.authenticate(rt, name, otp, code(enrol.secret) if enrol else None)
    accounts.change_password(rt, s.principal, otp, GOOD + " " + name[::-1])
    return GOOD + " " + name[::-1], enrol


def test_first_admin_one_time_password_must_change_then_session(art: Any) -> None:
    info, otp, enrol = accounts.bootstrap_admin(art)
    assert info.roles == ("admin",) and info.must_change_password and info.has_totp
    with pytest.raises(StateError):
        accounts.bootstrap_admin(art, "admin2")
    s = accounts.authenticate(art, "Admin", otp, code(enrol.secret))
    assert s.must_change_password and s.principal.via == "password" and s.principal.name == "admin"
    with pytest.raises(StateError, match="changed"):
        accounts.open_session(art, s)
    with pytest.raises(accounts.PasswordPolicyError, match="commonly used"):
        accounts.change_password(art, s.principal, otp, "password1234")
    with pytest.raises(accounts.PasswordPolicyError, match="at least 12"):
        accounts.change_password(art, s.principal, otp, "short")
    with pytest.raises(accounts.PasswordPolicyError, match="account name"):
        accounts.change_password(art, s.principal, otp, "my admin passphrase!")
    accounts.change_password(art, s.principal, otp, GOOD)
    s2 = accounts.authenticate(art, "admin", GOOD, code(enrol.secret, 1))
    assert not s2.must_change_password
    tok = accounts.open_session(art, s2, os_user="ops")
    p = accounts.resolve_token(art, tok.token, os_user="ops")
    assert (p.name, p.via, p.roles, p.account_id) == ("admin", "session", frozenset({"admin"}), info.id)


def test_unknown_user_and_wrong_password_are_indistinguishable(art: Any) -> None:
    admin, _ = first_admin(art)
    person(art, admin, "mia", "marketer")
    errors = []
    for name, pw in (("nobody", GOOD), ("mia", "wrong password here"), ("bad name!", "x")):
        with pytest.raises(AuthenticationFailed) as exc:
            accounts.authenticate(art, name, pw)
        errors.append((exc.value.message, exc.value.hint, exc.value.rules, exc.value.exit_code))
    assert len(set(errors)) == 1
    assert errors[0][0] == SIGN_IN_FAILED and errors[0][3] == EXIT_REFUSED
    reasons = [json.loads(r.detail).get("reason") for r in access(art) if r.outcome == "sign-in-failed"]
    assert reasons == ["unknown-account", "bad-password", "unknown-account"]


def test_five_failures_lock_for_fifteen_minutes_then_unlock(art: Any) -> None:
    admin, _ = first_admin(art)
    pw, _ = person(art, admin, "mia", "marketer")
    now = utcnow()
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            accounts.authenticate(art, "mia", "not the password", now=now)
    with pytest.raises(AuthenticationFailed) as exc:  # the right password, but locked
        accounts.authenticate(art, "mia", pw, now=now + timedelta(minutes=14))
    assert exc.value.message == SIGN_IN_FAILED
    assert accounts.account_info(art, "mia").locked
    outcomes = [r.outcome for r in access(art)][-3:]
    assert outcomes == ["sign-in-failed", "locked-out", "sign-in-failed"]
    assert json.loads(access(art)[-1].detail)["reason"] == "locked"
    s = accounts.authenticate(art, "mia", pw, now=now + timedelta(minutes=15, seconds=1))
    assert s.principal.name == "mia"


def test_lockout_is_configurable(runtime_factory: Any) -> None:
    rt = runtime_factory(accounts={"lockout_attempts": 2, "lockout_minutes": 60})
    admin, _ = first_admin(rt)
    pw, _ = person(rt, admin, "mia", "marketer")
    now = utcnow()
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            accounts.authenticate(rt, "mia", "nope nope nope", now=now)
    with pytest.raises(AuthenticationFailed):
        accounts.authenticate(rt, "mia", pw, now=now + timedelta(minutes=59))
    accounts.authenticate(rt, "mia", pw, now=now + timedelta(minutes=61))


def test_totp_required_for_reviewer_wrong_missing_and_replayed(art: Any) -> None:
    admin, _ = first_admin(art)
    pw, enrol = person(art, admin, "rita", "reviewer")
    assert enrol is not None  # reviewers get a second factor at creation (SEC-7)
    for bad in (None, "", "000000" if code(enrol.secret) != "000000" else "111111", "12345a"):
        with pytest.raises(AuthenticationFailed) as exc:
            accounts.authenticate(art, "rita", pw, bad)
        assert exc.value.message == SIGN_IN_FAILED
    good = code(enrol.secret, 1)  # a step no earlier sign-in used
    accounts.authenticate(art, "rita", pw, good)
    with pytest.raises(AuthenticationFailed) as exc:
        accounts.authenticate(art, "rita", pw, good)  # the same code again: replay
    assert exc.value.message == SIGN_IN_FAILED
    with pytest.raises(AuthenticationFailed):  # an older code than the last one used
        accounts.authenticate(art, "rita", pw, code(enrol.secret, 0))
    reasons = [json.loads(r.detail)["reason"] for r in access(art)
               if r.outcome == "sign-in-failed" and r.actor == "rita"]
    assert reasons == ["totp-missing", "totp-missing", "bad-totp", "bad-totp", "replayed-totp", "replayed-totp"]


def test_totp_secret_is_encrypted_at_rest(art: Any) -> None:
    _info, _otp, enrol = accounts.bootstrap_admin(art)
    with art.engine.connect() as conn:
        blob = conn.execute(select(Account.__table__.c.totp_enc)).scalar_one()
    assert enrol.secret.encode() not in blob
    assert enrol.uri.startswith("otpauth://totp/") and "admin" in enrol.uri


def test_api_token_resolves_is_recorded_and_revocation_is_immediate(art: Any) -> None:
    admin, _ = first_admin(art)
    accounts.create_account(art, admin, "worker", ["service"])
    tok = accounts.issue_api_token(art, admin, "worker", label="worker host")
    assert tok.token.startswith("mlt_")
    p = accounts.resolve_token(art, tok.token)
    assert (p.name, p.via, p.roles) == ("worker", "token", frozenset({"service"}))
    assert access(art)[-1].outcome == "token-used"
    with art.engine.connect() as conn:  # only the hash is stored
        stored = [r.token_hash for r in conn.execute(select(AccessToken.__table__))]
    assert tok.token not in stored and len(stored) == 1
    assert accounts.revoke_tokens(art, admin, "worker", token_id=tok.id) == 1
    with pytest.raises(AuthenticationFailed) as exc:
        accounts.resolve_token(art, tok.token)
    assert exc.value.message == TOKEN_REJECTED
    assert json.loads(access(art)[-1].detail)["reason"] == "revoked"
    with pytest.raises(AuthenticationFailed):  # a service account never signs in with a password
        accounts.authenticate(art, "worker", "")


def test_expired_and_unknown_tokens_give_the_same_line(art: Any) -> None:
    admin, _ = first_admin(art)
    tok = accounts.issue_api_token(art, admin, "admin", days=1)
    msgs = []
    for token, now in ((tok.token, utcnow() + timedelta(days=1, seconds=1)), ("mlt_made-up", None)):
        with pytest.raises(AuthenticationFailed) as exc:
            accounts.resolve_token(art, token, now=now)
        msgs.append(exc.value.message)
    assert msgs == [TOKEN_REJECTED, TOKEN_REJECTED]
    assert [json.loads(r.detail)["reason"] for r in access(art)[-2:]] == ["expired", "unknown"]


def test_session_idles_out_and_is_bound_to_its_os_user(art: Any) -> None:
    admin, secret = first_admin(art)
    s = accounts.authenticate(art, "admin", GOOD, code(secret, 1))
    now = utcnow()
    tok = accounts.open_session(art, s, os_user="ops", now=now)
    accounts.resolve_token(art, tok.token, os_user="ops", now=now + timedelta(minutes=10))  # slides
    accounts.resolve_token(art, tok.token, os_user="ops", now=now + timedelta(minutes=24))
    with pytest.raises(AuthenticationFailed):
        accounts.resolve_token(art, tok.token, os_user="mallory", now=now + timedelta(minutes=25))
    with pytest.raises(AuthenticationFailed):  # idle for more than 15 minutes (SEC-3)
        accounts.resolve_token(art, tok.token, os_user="ops", now=now + timedelta(minutes=40))
    pw, _ = person(art, admin, "mia", "marketer")
    tok2 = accounts.open_session(art, accounts.authenticate(art, "mia", pw), os_user="ops")
    assert accounts.close_session(art, tok2.token)
    with pytest.raises(AuthenticationFailed):
        accounts.resolve_token(art, tok2.token, os_user="ops")
    assert "signed-out" in [r.outcome for r in access(art)]


def test_disabled_account_token_stops_at_once_and_cannot_sign_in(art: Any) -> None:
    admin, _ = first_admin(art)
    pw, _ = person(art, admin, "mia", "marketer")
    tok = accounts.issue_api_token(art, admin, "mia")
    assert accounts.resolve_token(art, tok.token).name == "mia"
    accounts.set_disabled(art, admin, "mia", True)
    with pytest.raises(AuthenticationFailed):
        accounts.resolve_token(art, tok.token)
    with pytest.raises(AuthenticationFailed) as exc:
        accounts.authenticate(art, "mia", pw)
    assert exc.value.message == SIGN_IN_FAILED
    accounts.set_disabled(art, admin, "mia", False)
    with pytest.raises(AuthenticationFailed):  # tokens revoked when disabled stay revoked
        accounts.resolve_token(art, tok.token)
    assert accounts.authenticate(art, "mia", pw).principal.name == "mia"


def test_disabled_flag_alone_stops_a_token(art: Any) -> None:
    """Even if a token row were not revoked (another process, a restore), the account check stops it."""
    admin, _ = first_admin(art)
    accounts.create_account(art, admin, "worker", ["service"])
    tok = accounts.issue_api_token(art, admin, "worker")
    with art.engine.begin() as conn:
        conn.execute(text("UPDATE account SET disabled = :t WHERE name = 'worker'"), {"t": True})
    with pytest.raises(AuthenticationFailed):
        accounts.resolve_token(art, tok.token)
    assert json.loads(access(art)[-1].detail)["reason"] == "disabled"


def test_only_admins_manage_accounts_and_the_last_admin_stays(art: Any) -> None:
    admin, _ = first_admin(art)
    person(art, admin, "mia", "marketer")
    mia = Principal(2, "mia", frozenset({"marketer"}), "session")
    for call in (lambda: accounts.create_account(art, mia, "eve", ["admin"]),
                 lambda: accounts.set_roles(art, mia, "mia", ["admin"]),
                 lambda: accounts.issue_api_token(art, mia, "mia"),
                 lambda: accounts.set_disabled(art, mia, "admin", True)):
        with pytest.raises(PermissionDenied):
            call()
    with pytest.raises(StateError, match="last enabled administrator"):
        accounts.set_disabled(art, admin, "admin", True)
    with pytest.raises(StateError, match="last enabled administrator"):
        accounts.set_roles(art, admin, "admin", ["reviewer"])
    info, enrol = accounts.set_roles(art, admin, "mia", ["marketer", "reviewer"])
    assert info.roles == ("marketer", "reviewer") and enrol is not None and info.has_totp
    with pytest.raises(accounts.AccountError) as exc:
        accounts.create_account(art, admin, "mia", ["staff"])
    assert exc.value.exit_code == EXIT_USAGE
    with pytest.raises(accounts.AccountError):
        accounts.create_account(art, admin, "svc", ["service", "admin"])
    with pytest.raises(accounts.AccountError):
        accounts.create_account(art, admin, "x", ["root"])


def test_reset_password_unlocks_and_forces_a_change(art: Any) -> None:
    admin, _ = first_admin(art)
    person(art, admin, "mia", "marketer")
    now = utcnow()
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            accounts.authenticate(art, "mia", "wrong wrong wrong", now=now)
    otp = accounts.reset_password(art, admin, "mia")
    s = accounts.authenticate(art, "mia", otp)
    assert s.must_change_password


def test_ledger_names_the_principal_and_holds_no_secret(art: Any) -> None:
    admin, secret = first_admin(art)
    _info, otp, enrol = accounts.create_account(art, admin, "rita", ["reviewer"])
    tok = accounts.issue_api_token(art, admin, "rita")
    art.act_as(admin)
    from mailer.ledger import SYSTEM, Event

    art.ledger.append([Event(kind=SYSTEM, outcome="probe")])
    art.act_as(None)
    rows = list(art.ledger.rows())
    probe = rows[-1]
    assert probe.actor == "admin"
    assert json.loads(probe.detail)["by"] == {"account_id": admin.account_id, "via": "password", "os_user": "ops"}
    created = next(r for r in rows if r.outcome == "account-created" and "rita" in r.detail)
    assert created.actor == "admin"
    dump = "\n".join(f"{r.actor} {r.detail} {r.outcome}" for r in rows)
    for s in (GOOD, otp, enrol.secret, secret, tok.token, tok.token[4:]):
        assert s not in dump
    assert art.ledger.verify().ok


def test_require_uses_roles_of_the_resolved_token(art: Any) -> None:
    admin, _ = first_admin(art)
    person(art, admin, "mia", "marketer")
    p = accounts.resolve_token(art, accounts.issue_api_token(art, admin, "mia").token)
    require(p, Action.CAMPAIGN_CREATE)
    with pytest.raises(PermissionDenied):
        require(p, Action.CAMPAIGN_APPROVE)
    accounts.set_roles(art, admin, "mia", ["staff"])  # the next resolve carries the new roles
