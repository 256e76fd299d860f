"""Bad segment files end in one line naming the file (and line), exit 2, nothing changed."""

from __future__ import annotations

from pathlib import Path

COND = '{ field = "language", op = "equals", value = "en" }'


def _check(mailer, seg: Path):  # type: ignore[no-untyped-def]  # noqa: ANN001
    assert mailer("init").exit_code == 0
    return mailer("segment", "check", str(seg))


def test_a_segment_of_2000_ored_conditions(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    seg = tmp_path / "wide.toml"
    seg.write_text('name = "wide"\ndescription = "x"\n[match]\nany = [\n' + ",\n".join([COND] * 2000) + "\n]\n")
    res = _check(mailer, seg)
    assert res.exit_code == 2, res.output
    assert f"{seg}:" in res.output and "more than 256 conditions" in res.output
    assert "SELECT" not in res.output and "Traceback" not in res.output


def test_a_segment_nested_500_deep(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    seg = tmp_path / "deep.toml"
    seg.write_text('name = "deep"\ndescription = "x"\nmatch = ' + "{ not = " * 500 + COND + " }" * 500 + "\n")
    res = _check(mailer, seg)
    assert res.exit_code == 2, res.output
    assert str(seg) in res.output and "nested too deeply" in res.output and "Traceback" not in res.output


def test_a_segment_nested_30_deep_in_tables(mailer, tmp_path: Path) -> None:  # noqa: ANN001
    seg = tmp_path / "deep.toml"
    seg.write_text('name = "deep"\ndescription = "x"\nmatch = ' + "{ not = " * 30 + COND + " }" * 30 + "\n")
    res = _check(mailer, seg)
    assert res.exit_code == 2, res.output
    assert f"{seg}:" in res.output and "nested more than 20 deep" in res.output
