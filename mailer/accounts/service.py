"""Account services: sign-in, tokens and account changes, each one recorded as an `access` entry.

Callers (CLI, web, worker) hand in the Runtime and, for changes, the acting Principal; the
services check permissions with `require`, write in one transaction with their ledger
entry, and never put a password, code or token in a message, a log line or the ledger
(account ids and names only).

Sign-in failures are one exception with one message whatever the cause (unknown name,
wrong password, wrong, missing or replayed code, locked or disabled account): the caller
cannot tell whether an account exists. The cause is in the ledger for the auditors.
"""

from __future__ import annotations

import gzip
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, func, select

from mailer.accounts.models import AccessToken, Account
from mailer.accounts.permissions import MFA_ROLES, ROLES, Action, Principal, Role, require
from mailer.crypto import token_hash
from mailer.db import writing
from mailer.errors import EXIT_REFUSED, InputError, MailerError, StateError
from mailer.ledger import ACCESS, Event
from mailer.models import utcnow
from mailer.runtime import Runtime

_ACC = Account.__table__  # type: ignore[attr-defined]
_TOK = AccessToken.__table__  # type: ignore[attr-defined]

API, SESSION = "api", "session"
_NAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
_CODE = re.compile(r"\d{6}")
_HASHER = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (argon2-cffi defaults)
_PREFIX = {API: "mlt_", SESSION: "mls_"}

SIGN_IN_FAILED = "sign-in failed: the name, password or code is wrong, or the account cannot sign in now"
TOKEN_REJECTED = "the token was not accepted: it is unknown, expired or revoked, or its account is disabled"  # noqa: S105


class AuthenticationFailed(MailerError):
    """Sign-in or token refused. One message for every cause (SEC-1), exit 3."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str = SIGN_IN_FAILED, *, hint: str = "") -> None:
        super().__init__(message, rules=("SEC-1",), hint=hint)


class PasswordPolicyError(InputError):
    """A new password that the policy refuses: says which rule, never echoes the password."""


class AccountError(InputError):
    """An account operation with bad input (an unknown name for an administrator, a bad role)."""


@dataclass(frozen=True)
class TotpEnrolment:
    """The TOTP secret to hand to its owner once: as text and as an otpauth:// URI (QR code)."""

    account: str
    secret: str
    uri: str


@dataclass(frozen=True)
class SignIn:
    """A successful password sign-in. `must_change_password`: change it before anything else."""

    principal: Principal
    must_change_password: bool


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `token` is shown once and never stored (only its hash is)."""

    id: int
    token: str
    kind: str
    account: str
    expires_at: datetime | None


@dataclass(frozen=True)
class AccountInfo:
    """What lists and the web show about an account: no hash, no secret."""

    id: int
    name: str
    roles: tuple[str, ...]
    disabled: bool
    locked: bool
    must_change_password: bool
    has_totp: bool
    has_password: bool
    created_at: datetime
    active_tokens: int = 0


# -- names, roles, passwords --------------------------------------------------------------
def normalize_name(name: str) -> str:
    """Account names: lower case letters, digits, '.', '_' and '-', 2-64 characters."""
    key = (name or "").strip().lower()
    if not _NAME.fullmatch(key):
        raise AccountError(f"account name {name!r} is not valid",
                           hint="use 2-64 characters: a letter first, then letters, digits, '.', '_' or '-'")
    return key


def normalize_roles(roles: Any) -> tuple[str, ...]:
    got = tuple(sorted({str(r).strip().lower() for r in roles if str(r).strip()}))
    bad = [r for r in got if r not in ROLES]
    if bad:
        raise AccountError(f"unknown role(s): {', '.join(bad)}", hint=f"roles are: {', '.join(ROLES)}")
    if not got:
        raise AccountError("an account needs at least one role", hint=f"roles are: {', '.join(ROLES)}")
    if Role.SERVICE in got and len(got) > 1:
        raise AccountError("the service role stands alone (a service account is not a person)",
                           hint="create a separate account for the person")
    return got


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The 20,000 most common passwords (the list Django ships, BSD licence), lower case."""
    data = resources.files("mailer.accounts").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(line.strip() for line in gzip.decompress(data).decode().splitlines() if line.strip())


def password_problems(password: str, *, name: str = "", min_length: int = 12) -> list[str]:
    """Pure: why a new password is refused (empty list: acceptable)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"it must be at least {min_length} characters long")
    if len(password) > 1024:
        problems.append("it must be at most 1024 characters long")
    low = password.strip().lower()
    if low in common_passwords():
        problems.append("it is on the list of commonly used (breached) passwords")
    if name and len(name) >= 3 and name.lower() in low:
        problems.append("it must not contain the account name")
    return problems


def check_password(rt: Runtime, password: str, name: str = "") -> None:
    problems = password_problems(password, name=name, min_length=rt.settings.accounts.password_min_length)
    if problems:
        raise PasswordPolicyError("the new password is refused: " + "; ".join(problems),
                                  hint="choose a longer passphrase of several unrelated words")


def one_time_password(name: str = "") -> str:
    """A random password handed over once; it must be changed at first sign-in."""
    while True:
        pw = secrets.token_urlsafe(15)  # 20 characters, 120 bits
        if not password_problems(pw, name=name):
            return pw


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_hex(16))


def _verify(stored: str | None, password: str) -> bool:
    """Argon2id check; an unknown account or one without a password costs the same time."""
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def real_os_user() -> str:
    """The OS account of this process from its real uid, not from $USER (which anyone sets)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


# -- reading ------------------------------------------------------------------------------
def _row(conn: Connection, name: str) -> Any:
    return conn.execute(select(_ACC).where(_ACC.c.name == name)).first()


def _row_by_id(conn: Connection, account_id: int) -> Any:
    return conn.execute(select(_ACC).where(_ACC.c.id == account_id)).first()


def _roles(row: Any) -> tuple[str, ...]:
    return tuple(r for r in (row.roles or "").split(",") if r)


def _info(row: Any, now: datetime, tokens: int = 0) -> AccountInfo:
    return AccountInfo(id=row.id, name=row.name, roles=_roles(row), disabled=row.disabled,
                       locked=bool(row.locked_until and row.locked_until > now),
                       must_change_password=row.must_change_password, has_totp=row.totp_enc is not None,
                       has_password=row.password_hash is not None, created_at=row.created_at,
                       active_tokens=tokens)


def count_accounts(rt: Runtime) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(_ACC)).scalar() or 0)


def list_accounts(rt: Runtime, *, now: datetime | None = None) -> list[AccountInfo]:
    now = now or utcnow()
    with rt.engine.connect() as conn:
        active: dict[int, int] = dict(conn.execute(  # type: ignore[arg-type]
            select(_TOK.c.account_id, func.count()).where(
                _TOK.c.revoked_at.is_(None), (_TOK.c.expires_at.is_(None)) | (_TOK.c.expires_at > now))
            .group_by(_TOK.c.account_id)).all())
        return [_info(r, now, int(active.get(r.id, 0))) for r in conn.execute(select(_ACC).order_by(_ACC.c.name))]


def account_info(rt: Runtime, name: str) -> AccountInfo:
    key = normalize_name(name)
    with rt.engine.connect() as conn:
        row = _row(conn, key)
    if row is None:
        raise AccountError(f"no account named {key}", hint="see mailer users list")
    return _info(row, utcnow())


# -- ledger -------------------------------------------------------------------------------
def _record(rt: Runtime, conn: Connection, outcome: str, *, actor: str | None, detail: dict[str, Any],
            by: Principal | None = None, rules: tuple[str, ...] = ("SEC-5",)) -> None:
    d = dict(detail)
    if by is not None:
        d["by"] = by.ledger_detail()
    rt.ledger.append_in(conn, [Event(kind=ACCESS, outcome=outcome, actor=actor, rule_ids=rules, detail=d)])


def record_denied(rt: Runtime, principal: Principal | None, action: Action, rule: str) -> None:
    """A refused action (require said no) is an access entry too."""
    with writing(rt.engine) as conn:
        _record(rt, conn, "denied", actor=principal.name if principal else None, by=principal,
                detail={"action": action.value}, rules=(rule,))


# -- TOTP ---------------------------------------------------------------------------------
def _totp_aad(account_id: int) -> bytes:
    return f"mailer-account-totp|{account_id}".encode()


def _new_totp(rt: Runtime, conn: Connection, row: Any) -> TotpEnrolment:
    secret = pyotp.random_base32()  # 160 bits
    blob = rt.keyring.encrypt(secret.encode(), _totp_aad(row.id))
    conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(totp_enc=blob, totp_last_step=None,
                                                                  updated_at=utcnow()))
    uri = pyotp.TOTP(secret).provisioning_uri(name=row.name, issuer_name=rt.settings.accounts.totp_issuer)
    return TotpEnrolment(row.name, secret, uri)


def _totp_step(secret: str, code: str, now: float) -> int | None:
    """The time step (30 s) whose code this is, allowing one step of clock drift each way."""
    code = (code or "").replace(" ", "").strip()
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now) // totp.interval
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


# -- sign-in ------------------------------------------------------------------------------
def authenticate(rt: Runtime, name: str, password: str, totp_code: str | None = None, *,
                 os_user: str | None = None, now: datetime | None = None) -> SignIn:
    """Password (+ TOTP where enrolled or required) -> SignIn, or AuthenticationFailed.

    Lockout: `accounts.lockout_attempts` failures lock the account for
    `accounts.lockout_minutes`; a TOTP code is accepted once (replay refused)."""
    now = now or utcnow()
    cfg = rt.settings.accounts
    key = (name or "").strip().lower()
    with writing(rt.engine) as conn:
        row = _row(conn, key) if _NAME.fullmatch(key) else None
        base: dict[str, Any] = {"os_user": os_user} if os_user else {}
        cause = ""
        if row is None:
            _verify(None, password)
            _record(rt, conn, "sign-in-failed", actor=None, detail={**base, "reason": "unknown-account"})
        elif row.locked_until is not None and row.locked_until > now:
            _verify(None, password)
            cause = "locked"
        elif row.disabled:
            _verify(None, password)
            cause = "disabled"
        elif row.password_hash is None:  # a service account: tokens only
            _verify(None, password)
            cause = "no-password"
        elif not _verify(row.password_hash, password):
            cause = "bad-password"
        if row is not None and cause:
            _failure(rt, conn, row, cause, base, now, count=cause == "bad-password")
        elif row is not None:
            needs_totp = row.totp_enc is not None or bool(set(_roles(row)) & MFA_ROLES)
            if needs_totp:
                cause = _check_totp(rt, conn, row, totp_code)
                if cause:
                    _failure(rt, conn, row, cause, base, now, count=cause in ("bad-totp", "replayed-totp"))
            if not cause:
                values: dict[str, Any] = {"failed_attempts": 0, "locked_until": None}
                if _HASHER.check_needs_rehash(row.password_hash):
                    values["password_hash"] = _HASHER.hash(password)
                conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(**values))
                _record(rt, conn, "signed-in", actor=row.name,
                        detail={**base, "account_id": row.id, "via": "password", "second_factor": needs_totp})
                p = Principal(row.id, row.name, frozenset(_roles(row)), "password", os_user)
                return SignIn(p, bool(row.must_change_password))
    if row is not None and cause == "no-totp":
        raise AuthenticationFailed(hint="this account needs a second factor that is not enrolled: "
                                        "an administrator runs mailer users totp NAME")
    raise AuthenticationFailed(hint=f"check them and try again; after {cfg.lockout_attempts} failures "
                                    f"an account is locked for {cfg.lockout_minutes} minutes")


def _check_totp(rt: Runtime, conn: Connection, row: Any, code: str | None) -> str:
    """'' when the code is good and now used up, else why not."""
    if row.totp_enc is None:
        return "no-totp"
    if not code:
        return "totp-missing"
    secret = rt.keyring.decrypt(row.totp_enc, _totp_aad(row.id)).decode()
    step = _totp_step(secret, code, time.time())
    if step is None:
        return "bad-totp"
    # Atomic: a code is good once, even when two processes present it at the same moment.
    res = conn.execute(_ACC.update().where(
        _ACC.c.id == row.id, (_ACC.c.totp_last_step.is_(None)) | (_ACC.c.totp_last_step < step))
        .values(totp_last_step=step))
    return "" if res.rowcount == 1 else "replayed-totp"


def _failure(rt: Runtime, conn: Connection, row: Any, cause: str, base: dict[str, Any], now: datetime, *,
             count: bool) -> None:
    cfg = rt.settings.accounts
    detail = {**base, "account_id": row.id, "reason": cause}
    if count:
        n = (row.failed_attempts or 0) + 1
        if n >= cfg.lockout_attempts:
            until = now + timedelta(minutes=cfg.lockout_minutes)
            conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(failed_attempts=0, locked_until=until))
            _record(rt, conn, "sign-in-failed", actor=row.name, detail={**detail, "attempt": n})
            _record(rt, conn, "locked-out", actor=row.name,
                    detail={**base, "account_id": row.id, "until": until.isoformat(timespec="seconds"),
                            "after_failures": n})
            return
        conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(failed_attempts=n))
        detail["attempt"] = n
    _record(rt, conn, "sign-in-failed", actor=row.name, detail=detail)


def change_password(rt: Runtime, principal: Principal, current_password: str, new_password: str) -> None:
    """The account's own change (also the forced first-sign-in change). Ends its other sessions."""
    with writing(rt.engine) as conn:
        row = _row_by_id(conn, principal.account_id)
        if row is None or row.disabled or not _verify(row.password_hash, current_password):
            raise AuthenticationFailed("the current password is wrong")
        if hmac.compare_digest(current_password, new_password):
            raise PasswordPolicyError("the new password must differ from the current one")
        check_password(rt, new_password, row.name)
        now = utcnow()
        conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(
            password_hash=_HASHER.hash(new_password), must_change_password=False, password_changed_at=now,
            updated_at=now))
        conn.execute(_TOK.update().where(_TOK.c.account_id == row.id, _TOK.c.kind == SESSION,
                                         _TOK.c.revoked_at.is_(None)).values(revoked_at=now))
        _record(rt, conn, "password-changed", actor=row.name, by=principal, detail={"account_id": row.id})


# -- account administration ---------------------------------------------------------------
def create_account(rt: Runtime, by: Principal | None, name: str, roles: Any, *,
                   password: str | None = None) -> tuple[AccountInfo, str | None, TotpEnrolment | None]:
    """Create an account. People get a one-time password (returned, to hand over; changed at
    first sign-in) unless `password` is given; admin and reviewer get a TOTP secret (SEC-7).
    A service account has no password: it signs in with an API token only.

    `by` None is allowed only for the very first account (`bootstrap_admin`)."""
    key = normalize_name(name)
    got = normalize_roles(roles)
    if by is not None:
        require(by, Action.USERS_MANAGE)
    service = got == (Role.SERVICE,)
    otp: str | None = None
    if service:
        if password:
            raise AccountError("a service account has no password", hint="issue it a token: mailer users token NAME")
        pw_hash = None
    else:
        if password is None:
            otp = password = one_time_password(key)
        else:
            check_password(rt, password, key)
        pw_hash = _HASHER.hash(password)
    now = utcnow()
    with writing(rt.engine) as conn:
        if by is None and conn.execute(select(func.count()).select_from(_ACC)).scalar():
            raise StateError("accounts exist already; an administrator creates the next one",
                             hint="sign in as an administrator: mailer login")
        if _row(conn, key) is not None:
            raise AccountError(f"an account named {key} exists already",
                               hint="names are never reused; pick another, or see mailer users list")
        aid = conn.execute(_ACC.insert().values(
            name=key, roles=",".join(got), password_hash=pw_hash, must_change_password=otp is not None,
            disabled=False, failed_attempts=0, password_changed_at=now, created_at=now,
            updated_at=now)).inserted_primary_key[0]  # type: ignore[index]
        row = _row_by_id(conn, aid)
        enrol = _new_totp(rt, conn, row) if set(got) & MFA_ROLES else None
        _record(rt, conn, "account-created", actor=by.name if by else None, by=by,
                detail={"account_id": aid, "account": key, "roles": list(got), "totp": enrol is not None,
                        **({} if by else {"bootstrap": True, "os_user": real_os_user()})})
        row = _row_by_id(conn, aid)
    return _info(row, now), otp, enrol


def bootstrap_admin(rt: Runtime, name: str = "admin") -> tuple[AccountInfo, str, TotpEnrolment]:
    """The first administrator of a fresh database (`mailer init`): one-time password + TOTP."""
    info, otp, enrol = create_account(rt, None, name, [Role.ADMIN])
    assert otp is not None and enrol is not None
    return info, otp, enrol


def _target(conn: Connection, name: str) -> Any:
    row = _row(conn, normalize_name(name))
    if row is None:
        raise AccountError(f"no account named {name.strip().lower()}", hint="see mailer users list")
    return row


def _enabled_admins(conn: Connection, excluding: int) -> int:
    rows = conn.execute(select(_ACC.c.roles).where(_ACC.c.disabled.is_(False), _ACC.c.id != excluding)).all()
    return sum(1 for r in rows if Role.ADMIN in (r.roles or "").split(","))


def set_disabled(rt: Runtime, by: Principal, name: str, disabled: bool) -> AccountInfo:
    """Disable (every token and session stops working at once) or enable an account."""
    require(by, Action.USERS_MANAGE)
    now = utcnow()
    with writing(rt.engine) as conn:
        row = _target(conn, name)
        if disabled and Role.ADMIN in _roles(row) and _enabled_admins(conn, row.id) == 0:
            raise StateError(f"{row.name} is the last enabled administrator",
                             hint="enable or create another administrator first")
        conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(disabled=disabled, updated_at=now,
                                                                      failed_attempts=0, locked_until=None))
        if disabled:
            conn.execute(_TOK.update().where(_TOK.c.account_id == row.id, _TOK.c.revoked_at.is_(None))
                         .values(revoked_at=now))
        _record(rt, conn, "account-disabled" if disabled else "account-enabled", actor=by.name, by=by,
                detail={"account_id": row.id, "account": row.name})
        return _info(_row_by_id(conn, row.id), now)


def reset_password(rt: Runtime, by: Principal, name: str) -> str:
    """A new one-time password (returned once), to change at next sign-in; unlocks, ends sessions."""
    require(by, Action.USERS_MANAGE)
    now = utcnow()
    with writing(rt.engine) as conn:
        row = _target(conn, name)
        if Role.SERVICE in _roles(row):
            raise AccountError(f"{row.name} is a service account: it has no password",
                               hint="revoke and re-issue its token: mailer users token NAME --revoke-all")
        otp = one_time_password(row.name)
        conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(
            password_hash=_HASHER.hash(otp), must_change_password=True, failed_attempts=0, locked_until=None,
            password_changed_at=now, updated_at=now))
        conn.execute(_TOK.update().where(_TOK.c.account_id == row.id, _TOK.c.kind == SESSION,
                                         _TOK.c.revoked_at.is_(None)).values(revoked_at=now))
        _record(rt, conn, "password-reset", actor=by.name, by=by, detail={"account_id": row.id, "account": row.name})
    return otp


def set_roles(rt: Runtime, by: Principal, name: str, roles: Any) -> tuple[AccountInfo, TotpEnrolment | None]:
    """Replace an account's roles. Gaining admin or reviewer without a TOTP secret enrols one."""
    require(by, Action.USERS_MANAGE)
    got = normalize_roles(roles)
    now = utcnow()
    with writing(rt.engine) as conn:
        row = _target(conn, name)
        before = _roles(row)
        if (Role.SERVICE in before) != (Role.SERVICE in got):
            raise AccountError("a service account stays a service account, and a person's account never becomes one",
                               hint="create a separate account")
        if Role.ADMIN in before and Role.ADMIN not in got and _enabled_admins(conn, row.id) == 0:
            raise StateError(f"{row.name} is the last enabled administrator",
                             hint="give another account the admin role first")
        conn.execute(_ACC.update().where(_ACC.c.id == row.id).values(roles=",".join(got), updated_at=now))
        enrol = _new_totp(rt, conn, row) if set(got) & MFA_ROLES and row.totp_enc is None else None
        _record(rt, conn, "roles-changed", actor=by.name, by=by,
                detail={"account_id": row.id, "account": row.name, "before": list(before), "after": list(got),
                        "totp_enrolled": enrol is not None})
        return _info(_row_by_id(conn, row.id), now), enrol


def enrol_totp(rt: Runtime, by: Principal, name: str) -> TotpEnrolment:
    """A new TOTP secret for an account (its own holder, or an administrator for anyone).
    The previous secret stops working at once."""
    key = normalize_name(name)
    if key != by.name:
        require(by, Action.USERS_MANAGE)
    with writing(rt.engine) as conn:
        row = _target(conn, key)
        if Role.SERVICE in _roles(row):
            raise AccountError(f"{row.name} is a service account: it signs in with a token, not a code")
        enrol = _new_totp(rt, conn, row)
        _record(rt, conn, "totp-enrolled", actor=by.name, by=by, detail={"account_id": row.id, "account": row.name})
    return enrol


# -- tokens and sessions ------------------------------------------------------------------
def _issue(rt: Runtime, conn: Connection, row: Any, kind: str, *, label: str, os_user: str | None,
           expires: datetime | None, hard: datetime | None, now: datetime) -> IssuedToken:
    token = _PREFIX[kind] + secrets.token_urlsafe(32)
    tid = conn.execute(_TOK.insert().values(
        token_hash=token_hash(token), account_id=row.id, kind=kind, label=label[:128], os_user=os_user,
        created_at=now, expires_at=expires, hard_expires_at=hard)).inserted_primary_key[0]  # type: ignore[index]
    return IssuedToken(tid, token, kind, row.name, expires)


def issue_api_token(rt: Runtime, by: Principal, name: str, *, label: str = "", days: int | None = None,
                    now: datetime | None = None) -> IssuedToken:
    """A revocable API token for an account (MAILER_TOKEN); it carries that account's roles."""
    require(by, Action.USERS_MANAGE)
    now = now or utcnow()
    days = days or rt.settings.accounts.api_token_days
    with writing(rt.engine) as conn:
        row = _target(conn, name)
        if row.disabled:
            raise StateError(f"{row.name} is disabled", hint="enable it first: mailer users enable NAME")
        tok = _issue(rt, conn, row, API, label=label, os_user=None, expires=now + timedelta(days=days),
                     hard=None, now=now)
        _record(rt, conn, "token-issued", actor=by.name, by=by,
                detail={"account_id": row.id, "account": row.name, "token_id": tok.id, "kind": API,
                        "expires": tok.expires_at.isoformat(timespec="seconds") if tok.expires_at else None})
    return tok


def open_session(rt: Runtime, sign_in: SignIn, *, os_user: str | None = None,
                 now: datetime | None = None) -> IssuedToken:
    """A short-lived session token after a password sign-in: idle timeout (SEC-3) and a hard cap."""
    if sign_in.must_change_password:
        raise StateError("the password must be changed before a session opens",
                         hint="mailer login asks for a new password at the first sign-in")
    now = now or utcnow()
    cfg = rt.settings.accounts
    with writing(rt.engine) as conn:
        row = _row_by_id(conn, sign_in.principal.account_id)
        if row is None or row.disabled or row.must_change_password:
            raise AuthenticationFailed()
        hard = now + timedelta(hours=cfg.session_max_hours)
        tok = _issue(rt, conn, row, SESSION, label="cli", os_user=os_user,
                     expires=min(now + timedelta(minutes=cfg.session_idle_minutes), hard), hard=hard, now=now)
        _record(rt, conn, "session-opened", actor=row.name,
                detail={"account_id": row.id, "token_id": tok.id, **({"os_user": os_user} if os_user else {})})
    return tok


def resolve_token(rt: Runtime, token: str, *, os_user: str | None = None,
                  now: datetime | None = None) -> Principal:
    """The Principal a token stands for, or AuthenticationFailed (one message for every cause).

    Sessions slide their idle deadline; API-token use is recorded (SEC-5). A disabled
    account's tokens fail at once, whatever their expiry."""
    now = now or utcnow()
    cfg = rt.settings.accounts
    with writing(rt.engine) as conn:
        t: Any = conn.execute(select(_TOK).where(_TOK.c.token_hash == token_hash((token or "").strip()))).first()
        row: Any = _row_by_id(conn, t.account_id) if t is not None else None
        cause = ""
        if t is None or row is None:
            cause = "unknown"
        elif t.revoked_at is not None:
            cause = "revoked"
        elif t.expires_at is not None and t.expires_at <= now:
            cause = "expired"
        elif row.disabled:
            cause = "disabled"
        elif t.kind == SESSION and row.must_change_password:
            cause = "password-change-pending"
        elif t.kind == SESSION and t.os_user and os_user and t.os_user != os_user:
            cause = "os-user-mismatch"
        base = {"os_user": os_user} if os_user else {}
        if cause:
            detail = {**base, "reason": cause}
            if t is not None and row is not None:
                detail.update(account_id=row.id, token_id=t.id, kind=t.kind)
            _record(rt, conn, "token-refused", actor=row.name if row is not None else None, detail=detail)
        else:
            values: dict[str, Any] = {"last_used_at": now}
            if t.kind == SESSION:
                values["expires_at"] = min(now + timedelta(minutes=cfg.session_idle_minutes),
                                           t.hard_expires_at or now)
            else:
                _record(rt, conn, "token-used", actor=row.name,
                        detail={**base, "account_id": row.id, "token_id": t.id})
            conn.execute(_TOK.update().where(_TOK.c.id == t.id).values(**values))
            return Principal(row.id, row.name, frozenset(_roles(row)), "session" if t.kind == SESSION else "token",
                             os_user, token_id=t.id)
    hint = "sign in again: mailer login" if cause in ("expired", "password-change-pending") else \
        "sign in again (mailer login), or ask an administrator for a new token"
    raise AuthenticationFailed(TOKEN_REJECTED, hint=hint)


def close_session(rt: Runtime, token: str) -> bool:
    """Sign out: revoke the session token. False when it was not an open session."""
    now = utcnow()
    with writing(rt.engine) as conn:
        t = conn.execute(select(_TOK).where(_TOK.c.token_hash == token_hash(token.strip()),
                                            _TOK.c.kind == SESSION)).first()
        if t is None or t.revoked_at is not None:
            return False
        conn.execute(_TOK.update().where(_TOK.c.id == t.id).values(revoked_at=now))
        row = _row_by_id(conn, t.account_id)
        _record(rt, conn, "signed-out", actor=row.name if row else None,
                detail={"account_id": t.account_id, "token_id": t.id})
    return True


def revoke_tokens(rt: Runtime, by: Principal, name: str, *, token_id: int | None = None) -> int:
    """Revoke one token of an account (by id) or all of them; returns how many."""
    require(by, Action.USERS_MANAGE)
    now = utcnow()
    with writing(rt.engine) as conn:
        row = _target(conn, name)
        cond = [_TOK.c.account_id == row.id, _TOK.c.revoked_at.is_(None)]
        if token_id is not None:
            cond.append(_TOK.c.id == token_id)
        n = conn.execute(_TOK.update().where(*cond).values(revoked_at=now)).rowcount
        _record(rt, conn, "token-revoked", actor=by.name, by=by,
                detail={"account_id": row.id, "account": row.name, "token_id": token_id, "count": n})
    return int(n)


def service_principal(rt: Runtime, name: str) -> Principal:
    """A service account's Principal for in-process use by the program itself (via "service"),
    e.g. the demo's embedded worker. Refuses a person's account or a disabled one."""
    with rt.engine.connect() as conn:
        row = _row(conn, normalize_name(name))
    if row is None or row.disabled or _roles(row) != (Role.SERVICE,):
        raise AuthenticationFailed(TOKEN_REJECTED, hint="the worker runs as an enabled service account")
    return Principal(row.id, row.name, frozenset(_roles(row)), "service", real_os_user())
