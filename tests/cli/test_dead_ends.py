"""Dead ends and dangerous hints (issue 15): every error names what is wrong and a fix
that exists, with the right exit code and no traceback."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from mailer.cli.app import app
from mailer.config import load_settings
from mailer.scheduler import crontab_to_apscheduler, trigger_for
from tests.conftest import ROOT


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def _cfg(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "m.toml"
    p.write_text(body)
    return p


# -- not initialised, unreachable, permissions ---------------------------------------------


def test_an_uninitialised_database_says_run_init_and_creates_no_file(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path}/data/m.db"\n[keys]\nfile = "{tmp_path}/k.json"\n')
    for args in (("contacts", "count"), ("campaign", "status"), ("ledger", "verify")):
        res = _run("--config", str(cfg), *args)
        assert res.exit_code == 2, (args, res.output)
        assert "not initialised" in res.output and "mailer init" in res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "k.json").exists()


def test_an_empty_postgres_schema_is_not_initialised_either(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the SQLite case is the test above")
    cfg = _cfg(tmp_path, f'[database]\nurl = "{db_url}"\n[keys]\nfile = "{tmp_path}/k.json"\n')
    res = _run("--config", str(cfg), "ledger", "verify")
    assert res.exit_code == 2 and "not initialised" in res.output


def test_an_unreachable_postgres_is_one_line_with_host_and_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(tmp_path, f'[database]\nurl = "postgresql://postgres@127.0.0.1:{port}/nothing"\n'
                         f'[keys]\nfile = "{tmp_path}/k.json"\n')
    res = _run("--config", str(cfg), "campaign", "status")
    assert res.exit_code == 2, res.output
    assert f"cannot reach the database at 127.0.0.1:{port}" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 2


def test_a_key_file_in_a_folder_that_cannot_be_created_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")  # a file where the key folder should be (root ignores permission bits)
    cfg = _cfg(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path}/m.db"\n[keys]\nfile = "{blocker}/keys.json"\n')
    res = _run("--config", str(cfg), "init")
    assert res.exit_code == 2, res.output
    assert str(blocker) in res.output and "Traceback" not in res.output


# -- init ---------------------------------------------------------------------------------


def test_init_refuses_a_database_with_data_naming_its_key_ids(mailer, config_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    (tmp_path / "keys.json").rename(tmp_path / "keys.lost")
    res = mailer("init")
    assert res.exit_code == 2, res.output
    assert "initialised with key ids" in res.output and "k1" in res.output
    assert "restore that key file" in res.output
    assert "--key-file" not in res.output  # no option that does not exist
    assert not (tmp_path / "keys.json").exists()  # nothing written
    other = mailer("ledger", "verify")  # needs the key file
    assert other.exit_code == 2
    assert "restore that key file" in other.output and "k1" in other.output
    assert "run `mailer init`" not in other.output  # init would not help here


def test_init_twice_points_nowhere_that_does_not_exist(mailer) -> None:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    res = mailer("init")
    assert res.exit_code == 2 and "already exists" in res.output
    assert "--key-file" not in res.output


def test_init_creates_a_private_database(mailer, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    if not db_url.startswith("sqlite"):
        pytest.skip("a file mode is a SQLite matter")
    assert mailer("init").exit_code == 0
    db = Path(db_url.split("sqlite:///", 1)[1])
    assert db.stat().st_mode & 0o777 == 0o600


# -- authorizations revoke ------------------------------------------------------------------


def test_revoke_with_an_unknown_scope_is_refused_listing_the_scopes(mailer) -> None:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    assert mailer("authorizations", "import", str(ROOT / "examples/authorizations.csv")).exit_code == 0
    listed = json.loads(mailer("authorizations", "list", "--format", "json").stdout)["authorizations"]
    contact = str(listed[0]["contact_id"])
    held = listed[0]["scope"]
    res = mailer("authorizations", "revoke", "--contact", contact, "--scope", "condition-targetted-marketing")
    assert res.exit_code == 2, res.output
    assert "condition-targeted-marketing" in res.output and held in res.output
    after = json.loads(mailer("authorizations", "list", "--contact", contact, "--format", "json").stdout)["authorizations"]
    assert not any(a.get("revoked_at") for a in after)


# -- cron ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cron", "weekday"), [("0 9 * * 1", "Monday"), ("0 9 * * 0", "Sunday"),
                                               ("0 9 * * 7", "Sunday"), ("0 9 * * MON", "Monday"),
                                               ("0 9 * * 5", "Friday")])
def test_cron_follows_crontab_weekdays(cron: str, weekday: str) -> None:
    trig = trigger_for(at=None, cron=cron, tz="America/Chicago")
    nxt = trig.get_next_fire_time(None, datetime(2026, 12, 1, tzinfo=UTC))
    assert nxt.strftime("%A") == weekday and nxt.hour == 9 and nxt.tzinfo == ZoneInfo("America/Chicago")


def test_crontab_day_ranges_and_steps() -> None:
    assert crontab_to_apscheduler("0 9 * * 1-5") == "0 9 * * mon,tue,wed,thu,fri"
    assert crontab_to_apscheduler("0 9 * * */2") == "0 9 * * sun,tue,thu,sat"
    assert crontab_to_apscheduler("0 9 * * 5-7") == "0 9 * * sun,fri,sat"


def test_next_run_shows_the_weekday_and_the_time_zone(mailer, config_file: Path) -> None:  # type: ignore[no-untyped-def]
    config_file.write_text(config_file.read_text().replace('[center]\n', '[center]\ntimezone = "America/Chicago"\n'))
    assert mailer("init").exit_code == 0
    assert mailer("contacts", "import", str(ROOT / "examples/contacts.csv")).exit_code == 0
    made = mailer("campaign", "create", "--name", "Weekly", "--template", str(ROOT / "templates/newsletter"),
                  "--segment", str(ROOT / "segments/newsletter.toml"), actor="marketer")
    cid = made.output.split()[1]
    assert mailer("campaign", "submit", cid, actor="marketer").exit_code == 0
    assert mailer("campaign", "approve", cid, actor="reviewer").exit_code == 0
    res = mailer("campaign", "schedule", cid, "--cron", "0 9 * * 1")
    assert res.exit_code == 0, res.output
    assert "next run Mon " in res.output and ("CST" in res.output or "CDT" in res.output)
    assert "America/Chicago" in res.output
    st = mailer("campaign", "status", cid)
    assert "next run   Mon " in st.output


# -- addresses --------------------------------------------------------------------------------


def _import(mailer, tmp_path: Path, rows: list[str], *extra: str):  # type: ignore[no-untyped-def]
    f = tmp_path / "c.csv"
    f.write_text("email,first_name,last_name,preferred_name,language,newsletter_opt_in,conditions,procedures,last_exam_date\n"
                 + "".join(f"{r},Pat,Doe,,en,true,,,\n" for r in rows))
    return mailer("contacts", "import", str(f), "--skip-invalid", "--format", "json", *extra)


def test_reserved_domains_are_refused_with_that_reason(mailer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    res = _import(mailer, tmp_path, ["a@clinic.test", "b@x.invalid", "c@host.localhost", "d@site.example",
                                     "ok@example.com"])
    data = json.loads(res.stdout)
    reasons = [p["reason"] for p in data["problems"]]
    assert len(reasons) == 4 and all("reserved" in r for r in reasons), reasons
    assert data["inserted"] == 1


def test_allow_reserved_domains_lets_them_through(mailer, config_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config_file.write_text(config_file.read_text() + "[contacts]\nallow_reserved_domains = true\n")
    assert mailer("init").exit_code == 0
    data = json.loads(_import(mailer, tmp_path, ["a@clinic.test", "d@site.example"]).stdout)
    assert data["inserted"] == 2 and not data["problems"]


@pytest.mark.parametrize(("address", "reason"), [
    ("pat.@example.com", "a dot right before the @"),
    ("pat doe@example.com", "a space before the @"),
    ("pat..doe@example.com", "two dots in a row"),
    ("pat@@example.com", "it has more than one @"),
    ("patexample.com", "it has no @"),
])
def test_every_bad_address_reason_is_the_true_one(mailer, tmp_path: Path, address: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert mailer("init").exit_code == 0
    data = json.loads(_import(mailer, tmp_path, [address, "ok@example.com"]).stdout)
    assert [p["reason"] for p in data["problems"]] == [f"not a valid address ({reason})"]
    assert address not in json.dumps(data)  # never the value itself


# -- settings ------------------------------------------------------------------------------


def test_settings_report_every_problem_at_once_with_the_nearest_key(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, '[smtp]\nhots = "relay"\nport = 0\n[unsubscribe]\nbase_url = "http://x.example/u/"\n'
                         '[limts]\nx = 1\n')
    res = _run("--config", str(cfg), "ledger", "verify")
    assert res.exit_code == 2
    text = res.output
    assert "did you mean 'smtp.host'" in text
    assert "smtp.port" in text and "unsubscribe.base_url" in text and "https" in text
    assert "did you mean 'limits'" in text
    assert "4 problems" in text


def test_a_config_that_is_not_utf8_or_is_a_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[center]\nname = "Cl\xednica"\n')
    res = _run("--config", str(bad), "ledger", "verify")
    assert res.exit_code == 2 and f"{bad}:2: not UTF-8" in res.output and "Traceback" not in res.output
    res = _run("--config", str(tmp_path), "ledger", "verify")
    assert res.exit_code == 2 and "is a folder" in res.output and str(tmp_path) in res.output


def test_the_example_config_loads_from_any_folder(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    s = load_settings(ROOT / "config/mailer.example.toml", env={})
    assert s.keys.file.is_absolute() and os.path.isabs(s.database.url.split("sqlite:///", 1)[1])
