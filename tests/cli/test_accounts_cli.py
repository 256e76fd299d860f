"""Identity on the command line (issue 12): sign in, sessions, tokens, and nobody acting as
someone else. What a user would check: exit codes, the one-line refusals, the session file's
mode, and who the ledger says acted."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from typer.testing import CliRunner

from mailer.accounts.service import SIGN_IN_FAILED, TOKEN_REJECTED, real_os_user
from mailer.cli.app import app
from mailer.ledger import ACCESS
from tests.helpers_accounts import cli_env, runtime_for
from tests.helpers_workflow import AUTHOR, REVIEWER, create, write_config

NEW = "a long and quiet evening passphrase"


def run(cfg: Path, *args: str, env: dict[str, Any] | None = None, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, ["--config", str(cfg), *args], env=env or {"MAILER_TOKEN": ""}, input=stdin)


def grab(label: str, text: str) -> str:
    line = next(li for li in text.splitlines() if li.startswith(label))
    return line.split(": ", 1)[1].strip()


def access_rows(cfg: Path) -> list[Any]:
    rt = runtime_for(cfg)
    try:
        return [r for r in rt.ledger.rows() if r.kind == ACCESS]
    finally:
        rt.dispose()


@pytest.fixture
def fresh(config_file: Path) -> tuple[Path, str, str]:
    """`mailer init` on a fresh database: (config, one-time password, TOTP secret) of the first admin."""
    res = run(config_file, "init")
    assert res.exit_code == 0, res.output
    assert "one-time password for admin:" in res.output and "TOTP secret for admin:" in res.output
    assert "otpauth://totp/" in res.output and "█" in res.output  # the QR code, as text
    return config_file, grab("one-time password for admin", res.output), grab("TOTP secret for admin", res.output)


def test_first_sign_in_changes_the_password_and_keeps_a_private_session(fresh: Any) -> None:
    cfg, otp, secret = fresh
    totp = pyotp.TOTP(secret)
    res = run(cfg, "login", "--user", "admin", "--password-stdin", "--totp", totp.now(), stdin=f"{otp}\n")
    assert res.exit_code == 2 and "must be changed" in res.output  # no new password given
    res = run(cfg, "login", "--user", "admin", "--password-stdin", "--totp", totp.at(time.time() + 30),
              stdin=f"{otp}\n{NEW}\n")
    assert res.exit_code == 0, res.output
    assert "password changed" in res.output and "signed in as admin" in res.output
    session = Path(os.environ["XDG_CONFIG_HOME"]) / "mailer" / "session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    who = run(cfg, "whoami", "--format", "json")
    assert who.exit_code == 0, who.output
    assert json.loads(who.stdout) == {"account": "admin", "account_id": 1, "roles": ["admin"], "via": "session",
                                      "os_user": real_os_user()}
    assert run(cfg, "users", "add", "mia", "--role", "marketer").exit_code == 0
    listed = json.loads(run(cfg, "users", "list", "--format", "json").stdout)
    assert [(a["name"], a["roles"], a["must_change_password"]) for a in listed] == [
        ("admin", ["admin"], False), ("mia", ["marketer"], True)]
    assert run(cfg, "logout").output.strip() == "signed out"
    after = run(cfg, "whoami")
    assert after.exit_code == 1 and "not signed in" in after.output
    res = run(cfg, "users", "list")
    assert res.exit_code == 3 and "SEC-1" in res.output and "mailer login" in res.output
    outcomes = [r.outcome for r in access_rows(cfg)]
    for expected in ("account-created", "signed-in", "password-changed", "session-opened", "signed-out"):
        assert expected in outcomes


def test_bad_sign_ins_are_one_line_exit_3_and_recorded(fresh: Any) -> None:
    cfg, otp, secret = fresh
    totp = pyotp.TOTP(secret)
    code = totp.now()
    assert run(cfg, "login", "-u", "admin", "--password-stdin", "--totp", code, stdin=f"{otp}\n{NEW}\n").exit_code == 0
    cases = {
        "unknown user": ("ghost", NEW, code),
        "wrong password": ("admin", "not the password at all", code),
        "wrong code": ("admin", NEW, "000000" if code != "000000" else "111111"),
        "replayed code": ("admin", NEW, code),
    }
    lines = set()
    for why, (user, pw, c) in cases.items():
        res = run(cfg, "login", "--user", user, "--password-stdin", "--totp", c, stdin=pw + "\n")
        assert res.exit_code == 3, (why, res.output)
        first = res.output.splitlines()[0]
        assert first == f"error: {SIGN_IN_FAILED}", (why, first)
        assert "ghost" not in res.output and "exist" not in res.output.lower()
        lines.add(res.output)
    assert len(lines) == 1  # nobody can tell an unknown account from a wrong password
    reasons = [json.loads(r.detail).get("reason") for r in access_rows(cfg) if r.outcome == "sign-in-failed"]
    assert reasons == ["unknown-account", "bad-password", "bad-totp", "replayed-totp"]
    for token in ("mlt_not-a-real-token", "mls_expired-or-made-up"):
        res = run(cfg, "whoami", env={"MAILER_TOKEN": token})
        assert res.exit_code == 3 and res.output.splitlines()[0] == f"error: {TOKEN_REJECTED}"
    assert [r.outcome for r in access_rows(cfg)][-2:] == ["token-refused", "token-refused"]
    report = run(cfg, "ledger", "report", "--quarter", _quarter(), env=cli_env(cfg, "auditor", "reviewer"))
    assert report.exit_code == 0, report.output
    assert "Access: sign-ins, failures" in report.output and "sign-in-failed" in report.output
    assert "refused sign-ins and tokens by account:" in report.output


def _quarter() -> str:
    from mailer.models import utcnow

    now = utcnow()
    return f"{now.year}Q{(now.month - 1) // 3 + 1}"


@pytest.fixture
def review_setup(sample_rt: Any, tmp_path: Path) -> tuple[Path, int]:
    cfg = write_config(sample_rt, tmp_path / "mailer.toml")
    c = create(sample_rt)
    res = run(cfg, "campaign", "submit", str(c.id), env=cli_env(cfg, AUTHOR, "marketer", "reviewer"))
    assert res.exit_code == 0, res.output
    return cfg, c.id or 0


def test_no_flag_variable_or_os_user_makes_the_author_approve(review_setup: Any) -> None:
    cfg, cid = review_setup
    author = cli_env(cfg, AUTHOR)  # the author's account holds the reviewer role too
    res = CliRunner().invoke(app, ["--config", str(cfg), "--actor", REVIEWER, "campaign", "approve", str(cid)],
                             env=author)
    assert res.exit_code == 2 and "--actor" in res.output  # the option is gone: a usage error
    forged = {**author, "MAILER_USER": REVIEWER, "USER": REVIEWER, "LOGNAME": REVIEWER, "USERNAME": REVIEWER}
    res = run(cfg, "campaign", "approve", str(cid), env=forged)
    assert res.exit_code == 3 and "SEC-6" in res.output
    assert "--actor" not in res.output and "MAILER_USER" not in res.output and REVIEWER not in res.output
    res = run(cfg, "campaign", "approve", str(cid))  # nobody signed in
    assert res.exit_code == 3 and "SEC-1" in res.output
    rt = runtime_for(cfg)
    try:
        refusal = [r for r in rt.ledger.rows() if r.kind == "refusal" and r.campaign_id == cid][-1]
        assert refusal.actor == AUTHOR  # the account that tried, whatever the environment said
        by = json.loads(refusal.detail)["by"]
        assert by["via"] == "token" and by["os_user"] == real_os_user() != REVIEWER
    finally:
        rt.dispose()
    res = run(cfg, "campaign", "approve", str(cid), env=cli_env(cfg, REVIEWER, "reviewer"))
    assert res.exit_code == 0 and f"approved by {REVIEWER}" in res.output


def test_the_worker_account_can_never_approve(review_setup: Any) -> None:
    cfg, cid = review_setup
    res = run(cfg, "campaign", "approve", str(cid), env=cli_env(cfg, "worker", "service"))
    assert res.exit_code == 3 and "SEC-6" in res.output and "may not campaign.approve" in res.output
    denied = [r for r in access_rows(cfg) if r.outcome == "denied"]
    assert denied and denied[-1].actor == "worker" and json.loads(denied[-1].detail)["action"] == "campaign.approve"
    res = run(cfg, "campaign", "approve", str(cid), env=cli_env(cfg, "marketer-only", "marketer"))
    assert res.exit_code == 3 and "SEC-6" in res.output


def test_a_disabled_accounts_token_stops_at_once(review_setup: Any) -> None:
    cfg, cid = review_setup
    reviewer = cli_env(cfg, "rita", "reviewer")
    admin = cli_env(cfg, "boss", "admin")
    assert run(cfg, "whoami", env=reviewer).exit_code == 0
    res = run(cfg, "users", "disable", "rita", env=admin)
    assert res.exit_code == 0, res.output
    res = run(cfg, "campaign", "approve", str(cid), env=reviewer)
    assert res.exit_code == 3 and res.output.splitlines()[0] == f"error: {TOKEN_REJECTED}"
    assert json.loads(access_rows(cfg)[-1].detail)["reason"] == "revoked"


def test_every_entry_a_command_writes_names_the_account_and_the_os_user(review_setup: Any) -> None:
    cfg, cid = review_setup
    res = run(cfg, "campaign", "approve", str(cid), env=cli_env(cfg, REVIEWER, "reviewer"))
    assert res.exit_code == 0, res.output
    rt = runtime_for(cfg)
    try:
        rows = [r for r in rt.ledger.rows() if r.campaign_id == cid and r.kind in ("approval", "campaign")]
    finally:
        rt.dispose()
    approval = next(r for r in rows if r.kind == "approval")
    assert approval.actor == REVIEWER
    assert json.loads(approval.detail)["by"]["os_user"] == real_os_user()
    cli_rows = [r for r in rows if r.outcome != "created"]  # created by the test itself, not a command
    assert len(cli_rows) >= 3 and all("by" in json.loads(r.detail) for r in cli_rows)
    assert {r.actor for r in cli_rows} == {AUTHOR, REVIEWER}


def test_users_admin_commands(fresh: Any) -> None:
    cfg, _otp, _secret = fresh
    admin = cli_env(cfg, "boss", "admin")
    res = run(cfg, "users", "add", "rita", "--role", "reviewer", env=admin)
    assert res.exit_code == 0 and "TOTP secret for rita:" in res.output and "one-time password for rita:" in res.output
    res = run(cfg, "users", "add", "worker", "--role", "service", env=admin)
    assert res.exit_code == 0 and "one-time password" not in res.output and "mailer users token worker" in res.output
    tok = run(cfg, "users", "token", "worker", "--days", "1", env=admin)
    assert tok.exit_code == 0 and tok.stdout.strip().startswith("mlt_")
    who = run(cfg, "whoami", env={"MAILER_TOKEN": tok.stdout.strip()})
    assert "worker (service) via token" in who.output
    res = run(cfg, "users", "roles", "rita", "--role", "reviewer", "--role", "marketer", env=admin)
    assert res.exit_code == 0 and "roles now marketer, reviewer" in res.output
    res = run(cfg, "users", "roles", "rita", "--role", "root", env=admin)
    assert res.exit_code == 2 and "unknown role" in res.output
    res = run(cfg, "users", "reset-password", "rita", env=admin)
    assert res.exit_code == 0 and "one-time password for rita:" in res.output
    res = run(cfg, "users", "add", "eve", "--role", "admin", env={"MAILER_TOKEN": tok.stdout.strip()})
    assert res.exit_code == 3 and "SEC-10" in res.output
    assert run(cfg, "users", "token", "worker", "--revoke-all", env=admin).exit_code == 0
    assert run(cfg, "whoami", env={"MAILER_TOKEN": tok.stdout.strip()}).exit_code == 3


def test_compliance_records_commands_run_as_the_login_session(fresh: Any) -> None:
    """Issue 17's commands resolve who acts like every other command: a `mailer login` session
    works without MAILER_TOKEN, and the entry names that account."""
    cfg, otp, secret = fresh
    res = run(cfg, "login", "--user", "admin", "--password-stdin", "--totp", pyotp.TOTP(secret).now(),
              stdin=f"{otp}\n{NEW}\n")
    assert res.exit_code == 0, res.output
    today = time.strftime("%Y-%m-%d", time.gmtime())
    made = run(cfg, "training", "record", "admin", "--course", "HIPAA marketing", "--completed", today)
    assert made.exit_code == 0, made.output
    listed = json.loads(run(cfg, "training", "list", "--format", "json").stdout)
    assert [x["account"] for x in listed] == ["admin"]
    assert run(cfg, "logout").exit_code == 0
    after = run(cfg, "training", "list")
    assert after.exit_code == 3 and "SEC-1" in after.output
