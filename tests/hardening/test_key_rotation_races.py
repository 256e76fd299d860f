"""Key rotation under concurrency (SEC-4): two overlapping `keys rotate` runs must not lose a row,
key ids are never reused, the key file never loses a key, and `keys status` proves each key id
still decrypts."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer.crypto import Keyring
from mailer.db import make_engine
from mailer.errors import KeyFileError
from mailer.ledger import Ledger
from mailer.models import Authorization, Contact
from mailer.store import rotation
from mailer.store.auth_records import import_authorizations
from mailer.store.contacts import decrypt_clinical, decrypt_identity, import_contacts
from tests.conftest import ROOT

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}


@pytest.fixture
def loaded(runtime_factory: Any) -> Any:
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    return rt


def _all_rows_decrypt(engine: Any, keyring: Keyring) -> int:
    from mailer.store.auth_records import decrypt_authorization

    c, a = Contact.__table__, Authorization.__table__  # type: ignore[attr-defined]
    n = 0
    with engine.connect() as conn:
        for r in conn.execute(select(c)):
            decrypt_identity(keyring, r)
            decrypt_clinical(keyring, r)
            n += 1
        for r in conn.execute(select(a)):
            decrypt_authorization(keyring, r)
            n += 1
    return n


def test_two_rotations_started_at_once_lose_nothing(loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = loaded
    key_file = rt.settings.keys.file
    barrier = threading.Barrier(2)
    real_unfinished = rotation.unfinished
    seen: set[int] = set()

    def racing_unfinished(engine: Any) -> Any:
        # both runs look for an unfinished rotation at the same moment (the race)
        if threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            try:
                barrier.wait(timeout=3)
            except threading.BrokenBarrierError:
                pass
        return real_unfinished(engine)

    monkeypatch.setattr(rotation, "unfinished", racing_unfinished)
    errors: list[BaseException] = []
    results: list[Any] = []

    def one_process() -> None:
        try:
            engine = make_engine(rt.settings.database.url)
            keyring = Keyring.load(key_file)  # each "process" loads the key file itself
            results.append(rotation.rotate(engine, keyring, Ledger(engine, keyring), batch=7))
            engine.dispose()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one_process) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    on_disk = Keyring.load(key_file)
    assert _all_rows_decrypt(rt.engine, on_disk) > 60
    st = rotation.key_status(rt.engine, on_disk)
    assert not st["missing_keys"]
    assert all(s["ok"] for s in st["samples"].values()), st["samples"]
    assert Ledger(rt.engine, on_disk).verify().ok


def test_key_ids_are_never_reused(loaded: Any) -> None:
    rt = loaded
    rotation.rotate(rt.engine, rt.keyring, rt.ledger)  # k1 -> k2
    # the database remembers a rotation to k5 whose key is gone (e.g. a database restored from a
    # backup taken on another host): "k5" must never name a different key here
    from sqlalchemy import insert

    from mailer.models import KeyRotation, utcnow
    with rt.engine.begin() as conn:
        conn.execute(insert(KeyRotation.__table__).values(  # type: ignore[attr-defined]
            from_key_id="k4", to_key_id="k5", last_contact_id=0, last_authorization_id=0, done=True,
            started_at=utcnow(), finished_at=utcnow()))
    res = rotation.rotate(rt.engine, rt.keyring, rt.ledger)
    assert res.to_key_id == "k6"
    assert sorted(Keyring.load(rt.settings.keys.file).field_keys) == ["k1", "k2", "k6"]


def test_a_key_file_missing_a_key_in_use_mints_nothing(loaded: Any) -> None:
    rt = loaded
    rotation.rotate(rt.engine, rt.keyring, rt.ledger)  # k1 -> k2: every row is on k2
    data = json.loads(rt.settings.keys.file.read_text())
    del data["field_keys"]["k2"]
    data["active_key_id"] = "k1"
    restored = rt.settings.keys.file.with_name("restored.json")
    restored.write_text(json.dumps(data))
    restored.chmod(0o600)
    stale = Keyring.load(restored)
    with pytest.raises(KeyFileError, match="k2"):
        rotation.rotate(rt.engine, stale, Ledger(rt.engine, stale))
    assert sorted(Keyring.load(restored).field_keys) == ["k1"]  # no key minted, nothing half-done
    assert rotation.unfinished(rt.engine) is None


def test_saving_never_drops_a_key_the_file_holds(tmp_path: Path) -> None:
    ring = Keyring.generate()
    path = tmp_path / "keys.json"
    ring.save(path)
    other = Keyring.load(path)
    other.add_field_key()
    other.save(path, overwrite=True)  # the file now holds k1, k2
    ring.field_keys.pop("k1")
    ring.field_keys["k9"] = b"\0" * 32
    ring.active_key_id = "k9"
    with pytest.raises(KeyFileError, match="k2"):
        ring.save(path, overwrite=True)  # a stale keyring must not drop k2 (rows use it)
    assert sorted(Keyring.load(path).field_keys) == ["k1", "k2"]
    assert not [p for p in tmp_path.iterdir() if p.name != "keys.json" and not p.name.endswith(".lock")]


def test_keys_status_decrypts_a_sample_per_key_id(loaded: Any) -> None:
    rt = loaded
    st = rotation.key_status(rt.engine, rt.keyring)
    assert st["samples"]["k1"]["ok"] and st["samples"]["k1"]["checked"] >= 1
    # a key file whose k1 is different bytes (wrong file): the sample shows it
    wrong = Keyring.load(rt.settings.keys.file)
    wrong.field_keys["k1"] = b"\1" * 32
    wrong._aead.clear()
    st = rotation.key_status(rt.engine, wrong)
    assert not st["samples"]["k1"]["ok"]
