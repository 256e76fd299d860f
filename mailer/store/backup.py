"""Encrypted backup of contacts and authorizations, for the covered entity itself (SEC-4).

There is no export to third parties (SPAM-7, MKT-7). A backup is never clear text:

    file   = MAGIC | header (one JSON line) | frame* | final frame
    header = backup id, time, and a fresh 256-bit data key wrapped (AES-GCM, Keyring.encrypt)
             under the active field key, so the key id is named and rotation keeps it readable
    frame  = u32 length | nonce | AES-GCM(data key, JSON rows, aad = sha256(header) | index | last)

Contact and authorization rows go in as they are stored (their PHI stays in its field
ciphertext, `elements_enc` for an authorization's text; nothing is decrypted to make or
restore a backup, and restore keeps the values that ciphertexts' associated data names). Tampering, reordering or truncation fails on restore.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import DateTime, Engine, LargeBinary, Table, func, insert, select, text

from mailer.crypto import Keyring
from mailer.db import writing
from mailer.errors import DecryptionError, InputError, StateError
from mailer.ledger import CONTACT_IMPORT, DATA_EXPORT, Event, Ledger
from mailer.models import Authorization, Contact, utcnow

MAGIC = b"MAILER-BACKUP 1\n"
FRAME_ROWS = 500
_MAX_FRAME = 64 * 1024 * 1024


def _tables() -> list[Table]:
    return [Contact.__table__, Authorization.__table__]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BackupResult:
    backup_id: str
    path: Path
    counts: dict[str, int]
    key_id: str
    sha256: str


def _encode(table: Table, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.columns:
        v = getattr(row, col.name)
        if v is not None and isinstance(col.type, LargeBinary):
            v = base64.b64encode(v).decode("ascii")
        elif isinstance(v, dt.datetime):
            v = v.isoformat()
        out[col.name] = v
    return out


def _decode(table: Table, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.columns:
        v = data.get(col.name)
        if v is not None and isinstance(col.type, LargeBinary):
            v = base64.b64decode(v)
        elif v is not None and isinstance(col.type, DateTime):
            v = dt.datetime.fromisoformat(v)
        out[col.name] = v
    return out


def _aad(header_hash: bytes, index: int, last: bool) -> bytes:
    return b"mailer-backup-frame:" + header_hash + struct.pack(">Q?", index, last)


def _dek_aad(backup_id: str) -> bytes:
    return f"mailer-backup-key:{backup_id}".encode()


def _snapshot(engine: Engine) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(table, rows) pages from one consistent read transaction."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            for table in _tables():
                after = 0
                while True:
                    page = conn.execute(select(table).where(table.c.id > after).order_by(table.c.id)
                                        .limit(FRAME_ROWS)).all()
                    if not page:
                        break
                    yield table.name, [_encode(table, r) for r in page]
                    after = page[-1].id


def write_backup(engine: Engine, keyring: Keyring, ledger: Ledger, out: Path, *, actor: str | None = None,
                 overwrite: bool = False) -> BackupResult:
    """Write the backup (mode 0600) and record a DATA_EXPORT ledger event before it appears."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; refusing to overwrite it", hint="choose another --out")
    backup_id = secrets.token_hex(16)
    dek = AESGCM.generate_key(bit_length=256)
    header = json.dumps({
        "format": 1, "backup_id": backup_id, "created": utcnow().isoformat(), "purpose": "covered-entity backup",
        "key_id": keyring.active_key_id,
        "data_key": base64.b64encode(keyring.encrypt(dek, _dek_aad(backup_id))).decode("ascii"),
    }, sort_keys=True).encode() + b"\n"
    header_hash = hashlib.sha256(header).digest()
    aead = AESGCM(dek)
    counts = {t.name: 0 for t in _tables()}
    digest = hashlib.sha256()
    tmp = out.with_name(out.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            def put(data: bytes) -> None:
                fh.write(data)
                digest.update(data)

            put(MAGIC + header)
            index = 0

            def frame(payload: dict[str, Any], last: bool) -> None:
                nonce = secrets.token_bytes(12)
                ct = aead.encrypt(nonce, json.dumps(payload, separators=(",", ":")).encode(),
                                  _aad(header_hash, index, last))
                put(struct.pack(">I", len(nonce) + len(ct)) + nonce + ct)

            for name, rows in _snapshot(engine):
                frame({"table": name, "rows": rows}, False)
                counts[name] += len(rows)
                index += 1
            frame({"end": True, "counts": counts}, True)
            fh.flush()
            os.fsync(fh.fileno())
        sha = digest.hexdigest()
        ledger.append([Event(kind=DATA_EXPORT, outcome="backup", actor=actor, rule_ids=("SEC-4", "SEC-5"),
                             detail={"backup_id": backup_id, "counts": counts, "key_id": keyring.active_key_id,
                                     "sha256": sha, "recipient": "covered entity (own backup)"})])
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return BackupResult(backup_id, out, counts, keyring.active_key_id, sha)


def read_backup(keyring: Keyring, fh: BinaryIO) -> tuple[dict[str, Any], Iterator[tuple[str, list[dict[str, Any]]]]]:
    """The header and a stream of verified (table, rows) frames; raises on any tampering."""
    if fh.read(len(MAGIC)) != MAGIC:
        raise InputError("not a mailer backup file")
    header = fh.readline()
    try:
        meta = json.loads(header)
        dek = keyring.decrypt(base64.b64decode(meta["data_key"]), _dek_aad(meta["backup_id"]))
    except (ValueError, KeyError) as err:
        raise InputError(f"backup header is damaged: {type(err).__name__}") from None
    header_hash = hashlib.sha256(header).digest()
    aead = AESGCM(dek)

    def frames() -> Iterator[tuple[str, list[dict[str, Any]]]]:
        index = 0
        while True:
            size_raw = fh.read(4)
            if len(size_raw) != 4:
                raise DecryptionError("backup is truncated (no final frame)")
            (size,) = struct.unpack(">I", size_raw)
            if size > _MAX_FRAME:
                raise DecryptionError("backup frame is implausibly large (damaged file)")
            data = fh.read(size)
            for last in (False, True):
                try:
                    plain = aead.decrypt(data[:12], data[12:], _aad(header_hash, index, last))
                    break
                except InvalidTag:
                    continue
            else:
                raise DecryptionError(f"backup frame {index} failed authentication (altered or reordered)")
            payload = json.loads(plain)
            if last:
                if fh.read(1):
                    raise DecryptionError("data after the final frame of the backup")
                meta["counts"] = payload["counts"]
                return
            yield payload["table"], payload["rows"]
            index += 1

    return meta, frames()


def restore_backup(engine: Engine, keyring: Keyring, ledger: Ledger, path: Path, *,
                   actor: str | None = None) -> dict[str, int]:
    """Restore into a database with no contacts, keeping ids; all or nothing."""
    tables = {t.name: t for t in _tables()}
    counts = dict.fromkeys(tables, 0)
    try:
        fh = Path(path).open("rb")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    with fh, writing(engine) as conn:
        contacts = tables["contact"]
        if conn.execute(select(func.count()).select_from(contacts)).scalar():
            raise StateError("the database already holds contacts; restore only into an empty database",
                             hint="point --config at a fresh database, run `mailer init`-migrated schema, then restore")
        meta, frames = read_backup(keyring, fh)
        for name, rows in frames:
            table = tables[name]
            conn.execute(insert(table), [_decode(table, r) for r in rows])
            counts[name] += len(rows)
        if counts != meta.get("counts"):
            raise DecryptionError("backup row counts do not match its final frame")
        if conn.dialect.name == "postgresql":
            for t in tables.values():
                top = conn.execute(select(func.max(t.c.id))).scalar() or 0
                conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :n, false)"),
                             {"t": t.name, "n": top + 1})
        ledger.append_in(conn, [Event(kind=CONTACT_IMPORT, outcome="restored", actor=actor,
                                      detail={"backup_id": meta["backup_id"], "counts": counts})])
    return counts
