"""`campaign send --dry-run DIR`: one .eml per recipient, same checks, nothing sent or recorded as sent."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mailer import sending
from mailer.cli.app import app
from mailer.store import deliveries as dq
from tests.conftest import NO_GATES
from tests.test_send_support import ledger_rows, newsletter, parsed


async def test_dry_run_writes_eml_files_and_sends_nothing(sample_rt, sink, tmp_path: Path) -> None:
    rt = sample_rt
    c = newsletter(rt)
    out = tmp_path / "preview"
    summary = await sending.send(rt, c.id, preflight=NO_GATES, dry_run=out)
    files = sorted(out.glob("*.eml"))
    assert summary.dry_run and summary.sent == len(files) > 0
    assert not sink.messages  # nothing left this machine
    counts = dq.counts(rt.engine, c.id)
    assert counts == {dq.PENDING: len(files)}  # nothing claimed, nothing recorded as sent
    assert not ledger_rows(rt, kind="send", campaign_id=c.id)
    assert [r.outcome for r in ledger_rows(rt, kind="campaign", campaign_id=c.id)][-1] == "dry-run"
    for f in files:
        assert f.stem.isdigit()  # named by delivery id, never by address
        msg = parsed(f.read_bytes())
        assert msg["To"] and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_content_type() == "multipart/alternative"
    # the real send afterwards still reaches everyone
    real = await sending.send(rt, c.id, preflight=NO_GATES)
    assert real.sent == len(files) == len(sink.messages)


async def test_dry_run_applies_the_send_time_checks(sample_rt, sink, tmp_path: Path) -> None:
    from mailer.store.suppressions import suppress

    rt = sample_rt
    c = newsletter(rt)
    sending.prepare(rt, sending.get(rt, c.id))
    suppress(rt.engine, rt.ledger, rt.keyring.lookup_hash("ben.quinn2@example.com"), "unsubscribe")
    summary = await sending.send(rt, c.id, preflight=NO_GATES, dry_run=tmp_path / "p")
    assert summary.skipped == {"SPAM-5": 1}
    assert not any(b"ben.quinn2@example.com" in f.read_bytes() for f in (tmp_path / "p").glob("*.eml"))


def test_resend_needs_to_be_told_which_recipients(sample_rt, tmp_path: Path) -> None:
    cfg = tmp_path / "none.toml"
    cfg.write_text(f'[database]\nurl = "{sample_rt.settings.database.url}"\n[keys]\nfile = "{sample_rt.settings.keys.file}"\n')
    from tests.helpers_accounts import cli_env

    res = CliRunner().invoke(app, ["--config", str(cfg), "campaign", "resend", "1"], env=cli_env(cfg, "marketer"))
    assert res.exit_code == 2 and "--uncertain" in res.output
