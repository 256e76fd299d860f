"""Approvals and evidence do not depend on the current folder (issue 15): the submitted
content lives in the database, and edits on disk are a new version, said so by hash."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from sqlalchemy import text

from mailer.runtime import Runtime
from tests.conftest import ROOT


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(ROOT / "templates" / "newsletter", ws / "templates" / "newsletter")
    (ws / "segments").mkdir()
    shutil.copy(ROOT / "segments" / "newsletter.toml", ws / "segments" / "newsletter.toml")
    return ws


def _approved_from(mailer, ws: Path, monkeypatch) -> int:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(ws)
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    made = mailer("campaign", "create", "--name", "Evening hours", "--template", "templates/newsletter",
                  "--segment", "segments/newsletter.toml", actor="marketer")  # relative paths, on purpose
    assert made.exit_code == 0, made.output
    cid = int(made.output.split()[1])
    assert mailer("campaign", "submit", str(cid), actor="marketer").exit_code == 0
    ok = mailer("campaign", "approve", str(cid), actor="reviewer")
    assert ok.exit_code == 0, ok.output
    return cid


def test_check_send_and_evidence_work_from_another_folder(mailer, sink, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = _workspace(tmp_path)
    cid = _approved_from(mailer, ws, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    chk = mailer("campaign", "check", str(cid))
    assert chk.exit_code == 0, chk.output
    assert "changed" not in chk.output
    sent = mailer("campaign", "send", str(cid))
    assert sent.exit_code == 0, sent.output
    assert sink.messages
    ev = mailer("ledger", "evidence", "--campaign", str(cid), "--out", str(tmp_path / "ev.zip"))
    assert ev.exit_code == 0, ev.output
    with zipfile.ZipFile(tmp_path / "ev.zip") as z:
        assert {"template/source/template.toml", "template/source/body.html.j2", "segment/source.toml",
                "sample/sample.eml"} <= set(z.namelist())
        h = json.loads(z.read("template/hash.json"))
        assert h["submitted_hash_is_approved"] and h["all_sends_used_the_approved_hash"]
    assert (tmp_path / "ev.zip").stat().st_mode & 0o777 == 0o600


def test_the_folder_moved_away_still_sends_the_approved_content(mailer, sink, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = _workspace(tmp_path)
    cid = _approved_from(mailer, ws, monkeypatch)
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(ws)
    res = mailer("campaign", "send", str(cid))
    assert res.exit_code == 0, res.output
    assert sink.messages


def test_an_edit_on_disk_is_a_new_version_named_by_both_hashes(mailer, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = _workspace(tmp_path)
    cid = _approved_from(mailer, ws, monkeypatch)
    before = json.loads(mailer("campaign", "review", str(cid), "--format", "json").stdout)["template_hash"]
    body = ws / "templates/newsletter/body.html.j2"
    body.write_text(body.read_text().replace("quieter", "Quieter"))
    chk = mailer("campaign", "check", str(cid))
    assert chk.exit_code == 0, chk.output  # the approved version can still go; nothing was revoked
    assert "WARN" in chk.output and before[:12] in chk.output and "was edited after submission" in chk.output
    assert f"mailer campaign submit {cid}" in chk.output
    status = json.loads(mailer("campaign", "status", str(cid), "--format", "json").stdout)[0]
    assert status["status"] == "approved"


def test_an_unreadable_file_at_submit_is_an_input_error_naming_it(mailer, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    assert mailer("init").exit_code == 0
    made = mailer("campaign", "create", "--name", "x", "--template", "templates/newsletter",
                  "--segment", "segments/newsletter.toml", actor="marketer")
    cid = int(made.output.split()[1])
    seg = ws / "segments/newsletter.toml"
    seg.unlink()
    seg.mkdir()  # unreadable as a file (a test running as root can read any mode)
    res = mailer("campaign", "submit", str(cid), actor="marketer")
    assert res.exit_code == 2, res.output
    assert str(seg) in res.output and "changed" not in res.output
    assert "Traceback" not in res.output


def test_evidence_exits_1_when_the_package_would_be_incomplete(mailer, config_file: Path, tmp_path: Path,
                                                              monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = _workspace(tmp_path)
    cid = _approved_from(mailer, ws, monkeypatch)
    from mailer.config import load_settings

    rt = Runtime(load_settings(config_file))
    with rt.engine.begin() as conn:  # a campaign from before snapshots, whose folder is gone
        conn.execute(text("DELETE FROM campaign_snapshot"))
    rt.dispose()
    shutil.rmtree(ws / "templates")
    res = mailer("ledger", "evidence", "--campaign", str(cid), "--out", str(tmp_path / "ev.zip"))
    assert res.exit_code == 1, res.output
    assert "INCOMPLETE" in res.output and "template source" in res.output


def test_hash_json_never_calls_a_submitted_hash_approved(mailer, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    assert mailer("init").exit_code == 0
    made = mailer("campaign", "create", "--name", "x", "--template", "templates/newsletter",
                  "--segment", "segments/newsletter.toml", actor="marketer")
    cid = int(made.output.split()[1])
    assert mailer("campaign", "submit", str(cid), actor="marketer").exit_code == 0
    res = mailer("ledger", "evidence", "--campaign", str(cid), "--out", str(tmp_path / "ev.zip"))
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(tmp_path / "ev.zip") as z:
        h = json.loads(z.read("template/hash.json"))
    assert h["approved_template_hash"] is None and h["submitted_hash_is_approved"] is False
    assert h["approval_record_hashes"] == []
