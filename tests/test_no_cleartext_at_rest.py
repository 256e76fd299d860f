"""SEC-4: the SQLite file (and its WAL) holds no clear-text address, name, clinical value or
authorization text."""

from __future__ import annotations

import csv
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mailer.store.auth_records import ELEMENT_FIELDS, import_authorizations, revoke
from mailer.store.contacts import import_contacts
from mailer.store.rotation import rotate
from tests.conftest import ROOT

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}

def sample_values(min_len: int = 5) -> set[str]:
    """Every address, local part, name and clinical value of the sample contacts, and every
    text element of the sample authorizations (long enough that a chance match in
    ciphertext is out of the question)."""
    values: set[str] = set()
    with (ROOT / "examples/contacts.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            values |= {row["email"], row["email"].split("@")[0]}
            values |= {row[k] for k in ("first_name", "last_name", "preferred_name", "last_exam_date")}
            for col in ("conditions", "procedures"):
                values |= {v.strip() for v in row[col].split(";")}
    with (ROOT / "examples/authorizations.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            values |= {row[k] for k in ELEMENT_FIELDS if row[k]}
    # an all-hex value could match a hash by chance; none of the sample's is
    return {v for v in values if len(v) >= min_len and not re.fullmatch("[0-9a-f-]+", v.lower())}

def find_cleartext(blob: bytes, values: set[str]) -> set[str]:
    low = blob.lower()
    return {v for v in values if v.lower().encode() in low}

def test_no_clear_text_phi_in_the_sqlite_file_or_its_wal(runtime_factory: Any, db_url: str) -> None:
    if not db_url.startswith("sqlite:///"):
        pytest.skip("reads the SQLite file's raw bytes")
    db = Path(db_url.removeprefix("sqlite:///"))
    rt = runtime_factory()
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    revoke(rt.engine, rt.ledger, contact_id=3, scope="condition-targeted-marketing")
    rotate(rt.engine, rt.keyring, rt.ledger, batch=16)
    values = sample_values()
    assert len(values) > 100 and "osteoporosis" in values and "kenji.evans1@example.com" in values
    assert "Tailored information about bone-density screening" in values
    files = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
    assert Path(f"{db}-wal").exists(), "the WAL should still hold recent pages while the engine is open"
    for p in files:
        assert find_cleartext(p.read_bytes(), values) == set(), p.name
    # and through SQLite itself: every text cell of every table
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in conn.execute(f'SELECT * FROM "{t}"'):  # noqa: S608 - table names from sqlite_master
                cells = " ".join(str(c) for c in row if isinstance(c, str))
                assert find_cleartext(cells.encode(), sample_values(3)) == set(), t

def test_the_check_itself_finds_clear_text(tmp_path: Path) -> None:
    assert find_cleartext(b"xx Osteoporosis xx", sample_values()) == {"osteoporosis"}

