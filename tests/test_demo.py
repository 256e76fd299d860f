"""`make demo` must work on a fresh machine: the whole campaign, exit 0, the sink's checks true."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mailer.demo import run_demo


def test_the_demo_runs_a_whole_campaign(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = run_demo(tmp_path / "demo", Console(width=160))
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 0, text[-3000:]
    assert "one RCPT TO per transaction: yes" in text
    assert "TLS before MAIL FROM: yes" in text
    assert "ledger intact" in text
    # the revoked patient is skipped at send time with the rule IDs (SEG-3, AUTH-7)
    assert "AUTH-7" in text
    # issue 17: a campaign refused for missing training, then a testimonial sent with its consent
    assert "refused by TRN-1: the author (marketer) does not hold current training" in text
    assert "asset mri-quiet-quote (testimonial, contact 1): consent" in text
    assert any("fell asleep" in p.read_text(errors="replace") for p in (tmp_path / "demo" / "sink").glob("*.eml"))
    # no sample address or surname reaches the console
    sample = (Path(__file__).parent.parent / "examples/contacts.csv").read_text().splitlines()[1:]
    for line in sample:
        address, _first, last = line.split(",")[:3]
        assert address not in text
