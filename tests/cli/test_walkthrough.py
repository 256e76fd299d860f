"""The README's "A campaign, step by step", run as an operator would, from a folder that
is not the repository (issue 15), with the shipped examples and the local STARTTLS sink.

What is not literal yet: the README's `vendors add ... --document baa.pdf` and
`patients.csv` are the operator's own files; this walk-through uses the shipped
examples and a relay operated by the covered entity (the test sink) instead.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_the_walkthrough_runs_from_another_folder(mailer, sink, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    elsewhere = tmp_path / "operator-home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tpl, seg = ROOT / "templates/condition-targeted", ROOT / "segments/osteoporosis-followup.toml"

    def ok(*args: str, actor: str = "marketer") -> str:
        res = mailer(*args, actor=actor)
        assert res.exit_code == 0, (args, res.output)
        assert "Traceback" not in res.output
        return res.output

    ok("init", actor="admin")
    ok("contacts", "import", str(ROOT / "examples/contacts.csv"))
    ok("authorizations", "import", str(ROOT / "examples/authorizations.csv"), actor="compliance")
    ok("segment", "check", str(seg), "--explain")
    ok("lint", str(tpl))
    ok("preview", str(tpl), "--out", "preview/")
    assert list((elsewhere / "preview").glob("*.eml"))
    made = json.loads(ok("campaign", "create", "--name", "DEXA follow-up", "--template", str(tpl),
                         "--segment", str(seg), "--format", "json"))
    cid = str(made["id"])
    ok("campaign", "submit", cid)
    ok("campaign", "approve", cid, actor="compliance")
    ok("campaign", "check", cid, "--connect")
    out = ok("campaign", "send", cid)
    assert sink.messages and f"totals, all runs: {len(sink.messages)} sent" in out
    ok("ledger", "verify")
    shown = ok("ledger", "show", "--campaign", cid)
    assert "send/sent" in shown
    ok("ledger", "evidence", "--campaign", cid, "--out", "evidence.zip", actor="compliance")
    with zipfile.ZipFile(elsewhere / "evidence.zip") as z:
        assert json.loads(z.read("template/hash.json"))["submitted_hash_is_approved"] is True
