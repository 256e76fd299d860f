"""`mailer bounces ...` and what the reports show of bounces and complaints (issue 19)."""

from __future__ import annotations

import json
import ssl

import aiosmtplib
import pytest
from sqlalchemy import text as sql
from typer.testing import CliRunner

from mailer.bounces.process import Processor
from mailer.bounces.receiver import start_receiver
from mailer.cli.app import app
from mailer.ledger_report import build_report, render_text
from mailer.models import utcnow
from tests.bounces.helpers import (
    DOMAIN,
    arf,
    bounce_settings,
    dsn,
    import_patients,
    maildir_with,
    send_campaign,
)
from tests.helpers_accounts import cli_env
from tests.helpers_workflow import write_config


@pytest.fixture
def brt(runtime_factory, tmp_path):  # type: ignore[no-untyped-def]
    rt = runtime_factory(None, **bounce_settings())
    import_patients(rt, tmp_path)
    return rt


@pytest.fixture
def cfg(brt, tmp_path):  # type: ignore[no-untyped-def]
    return write_config(brt, tmp_path / "mailer.toml")


@pytest.fixture
def cli(cfg):  # type: ignore[no-untyped-def]
    """The CLI as a signed-in account: `ops`, an administrator, unless `who` names another."""
    runner = CliRunner()

    def run(*args: str, who: tuple[str, ...] = ("ops", "admin")):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--config", str(cfg), *args], env=cli_env(cfg, *who))

    return run


async def test_fetch_held_rates_status_and_reports(brt, cli, tmp_path) -> None:
    cid, sent = await send_campaign(brt)
    md = maildir_with(tmp_path / "Maildir", [dsn(sent[0]), dsn(sent[1], action="delayed", status="4.4.1"),
                                             arf(sent[2]), b"hello, is this thing on?",
                                             dsn(sent[3].__class__(sent[3].recipient, "f" * 32, "<x@y>"))])
    res = cli("bounces", "fetch", "--maildir", str(md))
    assert res.exit_code == 0, res.output
    assert "fetched: 5 message(s): applied 3, rejected 1, review 1" in res.output
    assert "applied: complaint 1, hard 1, soft 1; addresses suppressed 2" in res.output
    assert "kept aside (1): forged: unknown return-path token" in res.output
    assert "@" not in res.output  # ids, counts and reasons; never an address
    with brt.engine.connect() as conn:  # every entry the fetch wrote names the signed-in account
        actors = conn.execute(sql("SELECT DISTINCT actor FROM ledger WHERE kind = 'bounce'")).scalars().all()
    assert actors == ["ops"]

    held = json.loads(cli("bounces", "held", "--format", "json").stdout)
    assert sorted(h["disposition"] for h in held) == ["rejected", "review"]
    assert all(set(h) == {"id", "at", "disposition", "reason", "source", "size", "sha256"} for h in held)

    rates = json.loads(cli("bounces", "rates", str(cid), "--format", "json").stdout)
    assert rates == {"campaign": cid, "sent": 6, "hard_bounces": 1, "soft_bounces": 1, "complaints": 1,
                     "bounce_rate": round(2 / 6, 6), "complaint_rate": round(1 / 6, 6)}
    status = json.loads(cli("campaign", "status", str(cid), "--format", "json").stdout)
    assert status[0]["bounces"]["complaint_rate"] == round(1 / 6, 6)
    text = cli("campaign", "status", str(cid)).stdout
    assert "33.33% / 16.67%" in text

    shown = cli("ledger", "show", "--kind", "bounce")
    assert f"bounces and complaints per campaign: -: rejected 1, review 1; {cid}: complaint 1, hard 1, soft 1" in shown.stdout

    now = utcnow()
    rep = build_report(brt.ledger, f"{now.year}Q{(now.month - 1) // 3 + 1}")
    line = next(c for c in rep.campaigns if c.id == cid)
    assert line.bounces == {"hard": 1, "soft": 1, "complaint": 1}
    assert rep.complaints_by_campaign == {cid: 1}
    assert f"FLAG: spam complaints (STD-7) in campaign(s) {cid} (1)" in render_text(rep)


def test_fetch_runs_as_an_account_whose_role_allows_it(cli, tmp_path) -> None:
    md = maildir_with(tmp_path / "Maildir", [b"hello, is this thing on?"])
    res = cli("bounces", "fetch", "--maildir", str(md), who=("mia", "marketer"))
    assert res.exit_code == 3 and "may not bounces.process" in res.output and "SEC-10" in res.output
    assert "allowed for: admin, service" in res.output
    res = cli("bounces", "fetch", "--maildir", str(md), who=(None,))
    assert res.exit_code == 3 and "needs a signed-in account" in res.output and "SEC-1" in res.output
    assert list((md / "new").iterdir()), "a refused fetch moves nothing"
    res = cli("bounces", "fetch", "--maildir", str(md), who=("mx", "service"))
    assert res.exit_code == 0 and "fetched: 1 message(s): review 1" in res.output


def test_fetch_without_a_maildir_says_how_to_fix(cli, tmp_path) -> None:
    res = cli("bounces", "fetch")
    assert res.exit_code == 2 and "pass --maildir PATH" in res.output
    res = cli("bounces", "fetch", "--maildir", str(tmp_path))
    assert res.exit_code == 2 and "is not a Maildir" in res.output


async def test_receiver_requires_starttls_and_takes_only_the_bounce_domain(brt, certs) -> None:
    _cid, sent = await send_campaign(brt)
    controller, port, handler = start_receiver(Processor(brt), host="127.0.0.1", port=0,
                                               cert_file=certs.cert_file, key_file=certs.key_file)
    ctx = ssl.create_default_context(cafile=str(certs.ca_file))
    try:
        plain = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
        await plain.connect()
        with pytest.raises(aiosmtplib.SMTPResponseException) as err:
            await plain.mail("")
        assert err.value.code == 530  # STARTTLS first
        await plain.quit()

        client = aiosmtplib.SMTP(hostname="localhost", port=port, start_tls=True, tls_context=ctx, timeout=10)
        await client.connect()
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await client.sendmail("", ["someone@elsewhere.example"], b"Subject: x\r\n\r\nx\r\n")
        await client.rset()
        errors, reply = await client.sendmail("", [f"bounces+{sent[0].token}@{DOMAIN}"], dsn(sent[0]))
        assert not errors and reply.startswith("OK processed")
        await client.quit()
    finally:
        controller.stop()
    assert handler.totals.by_class == {"hard": 1}


async def test_receive_command_runs_until_interrupted(brt, certs, tmp_path) -> None:
    import asyncio
    import os
    import signal
    import subprocess
    import sys

    _cid, sent = await send_campaign(brt)
    cfg = write_config(brt, tmp_path / "receiver.toml")
    cfg.write_text(cfg.read_text().replace("[bounces]", f'[bounces]\ntls_cert_file = "{certs.cert_file}"\n'
                                               f'tls_key_file = "{certs.key_file}"', 1))
    proc = subprocess.Popen([sys.executable, "-m", "mailer.cli.app", "--config", str(cfg),
                             "bounces", "receive", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200", **cli_env(cfg, "mx", "service")})
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.startswith(f"receiving bounces for {DOMAIN} on 127.0.0.1:") and "STARTTLS required" in line
        port = int(line.split(":")[1].split()[0])
        ctx = ssl.create_default_context(cafile=str(certs.ca_file))
        client = aiosmtplib.SMTP(hostname="localhost", port=port, start_tls=True, tls_context=ctx, timeout=10)
        await client.connect()
        await client.sendmail("", [f"bounces+{sent[0].token}@{DOMAIN}"], dsn(sent[0]))
        await client.quit()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, err
    assert "received: 1 message(s): applied 1" in out and "Traceback" not in err
