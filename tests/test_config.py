"""Settings are typed and validated once; a bad one is a clear error naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.config import load_settings, settings_from_mapping
from mailer.errors import ConfigError
from tests.conftest import ROOT


def test_the_example_config_documents_every_setting_and_loads() -> None:
    s = load_settings(ROOT / "config/mailer.example.toml", env={})
    assert s.smtp.tls == "starttls" and s.unsubscribe_is_https
    text = (ROOT / "config/mailer.example.toml").read_text()
    for section_name, section in s.model_dump(exclude={"source"}).items():
        for key in section:
            assert f"{key} =" in text or f"[{section_name}.{key}]" in text, f"{section_name}.{key} undocumented"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"smtp": {"tls": "none"}}, "smtp.tls"),
        ({"smtp": {"tsl": "starttls"}}, "smtp.tsl"),
        ({"smtp": {"port": 70000}}, "smtp.port"),
        ({"center": {"timezone": "Mars/Olympus"}}, "center.timezone"),
        ({"sender": {"from_address": "not an address"}}, "sender.from_address"),
        ({"unsubscribe": {"token_days": 7}}, "unsubscribe.token_days"),
    ],
    ids=["plaintext-smtp", "typo", "port-range", "timezone", "from-address", "token-days-below-30"],
)
def test_a_bad_setting_names_the_key_and_the_fix(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(data)
    assert f"'{key}'" in str(err.value)
    assert "fix:" in str(err.value)


def test_database_url_from_the_environment_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[database]\nurl = "sqlite:///a.db"\n')
    s = load_settings(cfg, env={"MAILER_DATABASE_URL": "postgresql://db/x"})
    assert s.database.url == "postgresql://db/x"


def test_relative_paths_resolve_from_the_config_folder(tmp_path: Path) -> None:
    cfg = tmp_path / "sub" / "m.toml"
    cfg.parent.mkdir()
    cfg.write_text('[keys]\nfile = "k.json"\n[database]\nurl = "sqlite:///m.db"\n')
    s = load_settings(cfg, env={})
    assert s.keys.file == cfg.parent / "k.json"
    assert s.database.url == f"sqlite:///{cfg.parent / 'm.db'}"


def test_the_smtp_password_comes_from_the_environment_and_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_SMTP_PASSWORD", "hunter2-secret")
    s = settings_from_mapping({})
    pw = s.smtp.password()
    assert pw is not None and pw.get_secret_value() == "hunter2-secret"
    assert "hunter2" not in repr(s) and "hunter2" not in str(pw)


@given(st.text(max_size=30))
def test_invalid_toml_is_a_config_error_not_a_crash(tmp_path_factory: pytest.TempPathFactory, junk: str) -> None:
    cfg = tmp_path_factory.mktemp("c") / "m.toml"
    cfg.write_text("[smtp\n" + junk)
    with pytest.raises(ConfigError):
        load_settings(cfg, env={})
