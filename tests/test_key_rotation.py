"""`mailer keys rotate`: every row moves to a new key without losing one, and an
interrupted rotation resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.cli.app import app
from mailer.crypto import Keyring, key_id_of
from mailer.ledger import KEY_ROTATION
from mailer.models import Contact
from mailer.store.contacts import decrypt_clinical, decrypt_identity, import_contacts
from mailer.store.rotation import key_status, rotate, unfinished
from tests.conftest import ROOT

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}


def _values(engine: Any, keyring: Keyring) -> dict[int, tuple[Any, ...]]:
    t = Contact.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.id)).all()
    return {r.id: (decrypt_identity(keyring, r), decrypt_clinical(keyring, r)) for r in rows}


def _blob_keys(engine: Any) -> dict[int, set[str]]:
    t = Contact.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {r.id: {r.key_id} | {key_id_of(b) for b in (r.email_enc, r.identity_enc, r.phi_enc) if b is not None}
                for r in conn.execute(select(t))}


@pytest.fixture
def loaded(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    return rt


def test_rotation_moves_every_row_and_keeps_the_old_key(loaded: Any) -> None:
    rt = loaded
    before = _values(rt.engine, rt.keyring)
    res = rotate(rt.engine, rt.keyring, rt.ledger, actor="admin", batch=7)
    assert (res.from_key_id, res.to_key_id, res.rewritten, res.done) == ("k1", "k2", 60, True)
    on_disk = Keyring.load(rt.settings.keys.file)
    assert sorted(on_disk.field_keys) == ["k1", "k2"] and on_disk.active_key_id == "k2"
    assert set().union(*_blob_keys(rt.engine).values()) == {"k2"}
    assert _values(rt.engine, on_disk) == before
    assert key_status(rt.engine, on_disk)["contacts_per_key"] == {"k2": 60}
    kinds = [(e.kind, e.outcome) for e in rt.ledger.rows() if e.kind == KEY_ROTATION]
    assert kinds == [(KEY_ROTATION, "started"), (KEY_ROTATION, "finished")]
    assert rt.ledger.verify().ok


def test_an_interrupted_rotation_resumes_without_losing_a_row(loaded: Any) -> None:
    rt = loaded
    before = _values(rt.engine, rt.keyring)
    batches = 0

    def crash_after_three(_: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotate(rt.engine, rt.keyring, rt.ledger, batch=10, progress=crash_after_three)
    pending = unfinished(rt.engine)
    assert pending is not None and pending.last_contact_id == 30
    assert key_status(rt.engine, rt.keyring)["contacts_per_key"] == {"k1": 30, "k2": 30}
    # a fresh process: load the key file again, run rotate again
    keyring = Keyring.load(rt.settings.keys.file)
    from mailer.ledger import Ledger

    res = rotate(rt.engine, keyring, Ledger(rt.engine, keyring), batch=10)
    assert res.resumed and res.rewritten == 30 and res.to_key_id == "k2"
    assert unfinished(rt.engine) is None
    assert set().union(*_blob_keys(rt.engine).values()) == {"k2"}
    assert _values(rt.engine, keyring) == before


def test_a_crash_inside_a_batch_rolls_that_batch_back(loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = loaded
    before = _values(rt.engine, rt.keyring)
    real = Keyring.encrypt
    calls = 0

    def flaky(self: Keyring, *a: Any, **kw: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 40:  # in the middle of the second batch of 10 contacts
            raise OSError("disk gone")
        return real(self, *a, **kw)

    monkeypatch.setattr(Keyring, "encrypt", flaky)
    with pytest.raises(OSError):
        rotate(rt.engine, rt.keyring, rt.ledger, batch=10)
    monkeypatch.setattr(Keyring, "encrypt", real)
    assert unfinished(rt.engine).last_contact_id == 10
    keys = _blob_keys(rt.engine)
    assert all(keys[i] == {"k2"} for i in range(1, 11)) and all(keys[i] == {"k1"} for i in range(11, 61))
    rotate(rt.engine, rt.keyring, rt.ledger, batch=10)
    assert _values(rt.engine, rt.keyring) == before


def test_resuming_needs_the_key_file_that_holds_the_new_key(loaded: Any, tmp_path: Path) -> None:
    from mailer.errors import KeyFileError
    from mailer.ledger import Ledger

    rt = loaded
    copy = tmp_path / "old-keys.json"  # a copy of the key file from before the rotation
    copy.write_bytes(rt.settings.keys.file.read_bytes())
    copy.chmod(0o600)
    old = Keyring.load(copy)
    with pytest.raises(KeyboardInterrupt):
        rotate(rt.engine, rt.keyring, rt.ledger, batch=10,
               progress=lambda _: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyFileError, match="does not hold"):
        rotate(rt.engine, old, Ledger(rt.engine, old))


def test_the_cli_rotates_and_shows_rows_per_key(loaded: Any, tmp_path: Path) -> None:
    rt = loaded
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[database]\nurl = "{rt.settings.database.url}"\n[keys]\nfile = "{rt.settings.keys.file}"\n')
    from tests.helpers_accounts import cli_env

    runner = CliRunner(env=cli_env(cfg, "admin", "admin"))
    res = runner.invoke(app, ["--config", str(cfg), "keys", "rotate"])
    assert res.exit_code == 0, res.output
    assert "61 row(s) re-encrypted from key k1 to k2"  # 60 contacts + the admin's TOTP secret in res.output
    st = runner.invoke(app, ["--config", str(cfg), "keys", "status", "--format", "json"])
    data = json.loads(st.stdout)
    assert data["contacts_per_key"] == {"k2": 60} and data["key_ids"] == ["k1", "k2"]
    assert data["last_rotation"]["done"] is True
    text = runner.invoke(app, ["--config", str(cfg), "keys", "status"]).output
    assert "k2: 60 contact row(s)" in text
    assert "k2: 60 contact row(s), 0 authorization row(s); sample of 6 decrypts" in text


def test_rotation_moves_the_accounts_totp_secrets_and_sign_in_still_works(loaded: Any) -> None:
    import pyotp

    from mailer.accounts import service as accounts
    from mailer.accounts.models import Account
    from tests.helpers_accounts import admin

    rt = loaded
    password = "plum lantern meadow otter 42"
    _info, _otp, enrol = accounts.create_account(rt, admin(rt), "rob", ("reviewer",), password=password)
    assert enrol is not None
    acc = Account.__table__  # type: ignore[attr-defined]

    def secret_keys() -> set[str]:
        with rt.engine.connect() as conn:
            return {key_id_of(r[0]) for r in conn.execute(select(acc.c.totp_enc).where(acc.c.totp_enc.is_not(None)))}

    assert secret_keys() == {"k1"}
    rotate(rt.engine, rt.keyring, rt.ledger, actor="admin", batch=7)
    assert secret_keys() == {"k2"}, "every TOTP secret moved to the new key"
    on_disk = Keyring.load(rt.settings.keys.file)
    assert "k1" in on_disk.field_keys  # old keys stay in the key file
    rt._keyring = on_disk
    signed = accounts.authenticate(rt, "rob", password, pyotp.TOTP(enrol.secret).now())
    assert signed.principal.name == "rob"
