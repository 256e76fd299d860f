"""Backup for the covered entity only: encrypted, in the ledger, restorable, tamper-evident."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.cli.app import app
from mailer.crypto import Keyring
from mailer.db import make_engine, migrate
from mailer.errors import CryptoError, InputError, StateError
from mailer.ledger import DATA_EXPORT, Ledger
from mailer.models import Authorization, Contact
from mailer.store.auth_records import import_authorizations
from mailer.store.backup import read_backup, restore_backup, write_backup
from mailer.store.contacts import import_contacts
from mailer.store.rotation import rotate
from tests.conftest import ROOT
from tests.test_no_cleartext_at_rest import find_cleartext, sample_values

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}


@pytest.fixture
def loaded(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    return rt


def _rows(engine: Any) -> tuple[list[Any], list[Any]]:
    c, a = Contact.__table__, Authorization.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return ([tuple(r) for r in conn.execute(select(c).order_by(c.c.id))],
                [tuple(r) for r in conn.execute(select(a).order_by(a.c.id))])


def test_a_backup_is_encrypted_and_recorded_in_the_ledger(loaded: Any, tmp_path: Path) -> None:
    rt = loaded
    out = tmp_path / "backup.bin"
    res = write_backup(rt.engine, rt.keyring, rt.ledger, out, actor="admin")
    assert res.counts == {"contact": 60, "authorization": 7}
    assert out.stat().st_mode & 0o777 == 0o600
    data = out.read_bytes()
    assert find_cleartext(data, sample_values()) == set()
    assert b"condition-targeted-marketing" not in data  # authorization rows are encrypted too
    entries = [e for e in rt.ledger.rows() if e.kind == DATA_EXPORT]
    assert len(entries) == 1 and entries[0].actor == "admin"
    detail = json.loads(entries[0].detail)
    assert detail["backup_id"] == res.backup_id and detail["sha256"] == res.sha256
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_backup(rt.engine, rt.keyring, rt.ledger, out)


def test_restore_into_an_empty_database_gives_back_the_same_rows(loaded: Any, tmp_path: Path) -> None:
    rt = loaded
    out = tmp_path / "backup.bin"
    rotate(rt.engine, rt.keyring, rt.ledger)  # the backup key is wrapped under the newest key
    write_backup(rt.engine, rt.keyring, rt.ledger, out)
    fresh = make_engine(f"sqlite:///{tmp_path / 'restored.db'}")
    migrate(fresh)
    counts = restore_backup(fresh, rt.keyring, Ledger(fresh, rt.keyring), out)
    assert counts == {"contact": 60, "authorization": 7}
    assert _rows(fresh) == _rows(rt.engine)
    with pytest.raises(StateError):
        restore_backup(fresh, rt.keyring, Ledger(fresh, rt.keyring), out)
    fresh.dispose()


def test_a_backup_is_useless_without_the_key_file_and_tampering_is_detected(loaded: Any, tmp_path: Path) -> None:
    rt = loaded
    out = tmp_path / "backup.bin"
    write_backup(rt.engine, rt.keyring, rt.ledger, out)
    with out.open("rb") as fh, pytest.raises(CryptoError):
        read_backup(Keyring.generate(), fh)
    data = out.read_bytes()
    for damaged in (data[:-40], data[:-1] + bytes([data[-1] ^ 1])):
        bad = tmp_path / "bad.bin"
        bad.write_bytes(damaged)
        with bad.open("rb") as fh, pytest.raises(CryptoError):
            meta, frames = read_backup(rt.keyring, fh)
            list(frames)


def test_the_cli_backup_prints_counts_and_ids_only(loaded: Any, tmp_path: Path) -> None:
    rt = loaded
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[database]\nurl = "{rt.settings.database.url}"\n[keys]\nfile = "{rt.settings.keys.file}"\n')
    from tests.helpers_accounts import cli_env

    res = CliRunner().invoke(app, ["--config", str(cfg), "contacts", "backup", "--out", str(tmp_path / "b.bin")],
                             env=cli_env(cfg, "admin"))
    assert res.exit_code == 0, res.output
    assert "60 contact(s), 7 authorization(s)" in res.output and "@" not in res.output
