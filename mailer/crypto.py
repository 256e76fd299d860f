"""Key file, AES-GCM field encryption, HMAC lookup hashes and random tokens (SEC-4, PHI-6).

The key file lives outside the database (mode 0600). It holds several field keys by id
so that `mailer keys rotate` can move rows from one to the next; ciphertexts name the
key that made them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailer.errors import DecryptionError, KeyFileError

_FORMAT = 1
_NONCE = 12
_MAGIC = b"m1"  # ciphertext layout: magic | key-id length | key id | nonce | ct+tag


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass
class Keyring:
    """Secrets for one installation. Never printed: repr shows key ids only."""

    # Secrets are repr=False too: tools that print dataclass fields one by one
    # (hypothesis, debuggers) must not show them either.
    field_keys: dict[str, bytes] = field(repr=False)
    active_key_id: str
    lookup_key: bytes = field(repr=False)  # HMAC key for address lookups
    ledger_key: bytes = field(repr=False)  # HMAC key that signs ledger entries
    ledger_key_id: str = "L1"
    dkim_private_pem: str | None = field(default=None, repr=False)
    path: Path | None = None
    _aead: dict[str, AESGCM] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Keyring(active={self.active_key_id!r}, keys={sorted(self.field_keys)!r})"

    # -- creation and storage -------------------------------------------------------
    @classmethod
    def generate(cls) -> Keyring:
        return cls(
            field_keys={"k1": AESGCM.generate_key(bit_length=256)},
            active_key_id="k1",
            lookup_key=secrets.token_bytes(32),
            ledger_key=secrets.token_bytes(32),
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": _FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "active_key_id": self.active_key_id,
            "field_keys": {kid: _b64(k) for kid, k in self.field_keys.items()},
            "lookup_key": _b64(self.lookup_key),
            "ledger_key": _b64(self.ledger_key),
            "ledger_key_id": self.ledger_key_id,
        }
        if self.dkim_private_pem:
            data["dkim_private_pem"] = self.dkim_private_pem
        return data

    def save(self, path: Path, *, overwrite: bool = False) -> None:
        """Write with mode 0600; refuse to replace an existing file unless told to.

        The write is atomic (a uniquely named temporary file, fsync, rename), and an
        overwrite never drops or changes a key the file already holds: rows and backups
        encrypted under it would never decrypt again (SEC-4). The check and the rename run
        under a lock file beside the key file, so two writers cannot undo each other."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise KeyFileError(
                f"key file {path} already exists; refusing to overwrite it",
                hint="keep the existing keys (data encrypted with them would be lost), "
                "or choose another --key-file",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_json(), fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            with _file_lock(path.with_name(path.name + ".lock")):
                if path.exists():
                    self._refuse_dropping(path)
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        os.chmod(path, 0o600)
        self.path = path

    def _refuse_dropping(self, path: Path) -> None:
        """KeyFileError if writing this keyring over PATH would lose or change a key it holds."""
        try:
            on_disk = Keyring.load(path)
        except KeyFileError:
            return  # an unreadable or foreign file holds no key we could keep
        lost = sorted(k for k, v in on_disk.field_keys.items() if self.field_keys.get(k) != v)
        if lost:
            raise KeyFileError(
                f"key file {path} holds field key(s) {', '.join(lost)} that this write would drop or replace; "
                "refusing (rows encrypted under them would never decrypt again)",
                rules=("SEC-4",), hint="another process changed the key file: run the command again")
        if on_disk.lookup_key != self.lookup_key or on_disk.ledger_key != self.ledger_key:
            raise KeyFileError(f"key file {path} belongs to another installation (its lookup or ledger key "
                               "differs); refusing to overwrite it", rules=("SEC-4",))

    @classmethod
    def load(cls, path: Path) -> Keyring:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyFileError(
                f"key file {path} not found", hint="run `mailer init` or set keys.file"
            ) from None
        except (OSError, ValueError, RecursionError) as err:
            raise KeyFileError(f"key file {path} is unreadable: {type(err).__name__}") from None
        if not isinstance(raw, dict):
            raise KeyFileError(f"key file {path} is not a mailer key file (not a JSON object)")
        if raw.get("format") != _FORMAT:
            raise KeyFileError(f"key file {path} has an unknown format {raw.get('format')!r}")
        mode = path.stat().st_mode & 0o077
        if mode:
            raise KeyFileError(
                f"key file {path} is readable by group or others",
                rules=("SEC-4",),
                hint=f"chmod 600 {path}",
            )
        try:
            return cls(
                field_keys={k: _unb64(v) for k, v in raw["field_keys"].items()},
                active_key_id=raw["active_key_id"],
                lookup_key=_unb64(raw["lookup_key"]),
                ledger_key=_unb64(raw["ledger_key"]),
                ledger_key_id=raw.get("ledger_key_id", "L1"),
                dkim_private_pem=raw.get("dkim_private_pem"),
                path=path,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise KeyFileError(f"key file {path} is missing or has a bad entry ({type(err).__name__})") from None

    def add_field_key(self, *, used: Iterable[str] = ()) -> str:
        """Create a new field key, make it active, return its id. The id is new: above every
        id in the key file and every id in USED (the ids the database names), never reused."""
        n = 1 + max((key_id_number(k) for k in (*self.field_keys, *used)), default=0)
        kid = f"k{n}"
        self.field_keys[kid] = AESGCM.generate_key(bit_length=256)
        self.active_key_id = kid
        return kid

    # -- field encryption -----------------------------------------------------------
    def _cipher(self, kid: str) -> AESGCM:
        aead = self._aead.get(kid)
        if aead is None:
            try:
                aead = AESGCM(self.field_keys[kid])
            except KeyError:
                raise DecryptionError(
                    f"ciphertext names key {kid!r}, which the key file does not hold",
                    hint="use the key file this database was encrypted with",
                ) from None
            self._aead[kid] = aead
        return aead

    def encrypt(self, plaintext: bytes, aad: bytes, *, key_id: str | None = None) -> bytes:
        kid = key_id or self.active_key_id
        nonce = secrets.token_bytes(_NONCE)
        kb = kid.encode()
        return _MAGIC + bytes([len(kb)]) + kb + nonce + self._cipher(kid).encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        kid = key_id_of(blob)
        start = 3 + len(kid)
        nonce, ct = blob[start : start + _NONCE], blob[start + _NONCE :]
        try:
            return self._cipher(kid).decrypt(nonce, ct, aad)
        except InvalidTag:
            raise DecryptionError(
                "a ciphertext failed authentication (wrong key, or altered data)"
            ) from None

    def encrypt_json(self, value: Mapping[str, Any], aad: bytes, *, key_id: str | None = None) -> bytes:
        return self.encrypt(json.dumps(value, separators=(",", ":")).encode(), aad, key_id=key_id)

    def decrypt_json(self, blob: bytes, aad: bytes) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.decrypt(blob, aad))
        return result

    # -- hashes and tokens ----------------------------------------------------------
    def lookup_hash(self, normalized_email: str) -> str:
        """HMAC-SHA256 of the normalized address: the only way rows are looked up."""
        return hmac.new(self.lookup_key, normalized_email.encode(), hashlib.sha256).hexdigest()

    def ledger_mac(self, data: bytes) -> str:
        return hmac.new(self.ledger_key, data, hashlib.sha256).hexdigest()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on PATH (created 0600) for the length of the block."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def key_id_number(kid: str) -> int:
    """The number in a field key id ("k7" -> 7), 0 for any other shape."""
    return int(kid[1:]) if kid[:1] == "k" and kid[1:].isdigit() else 0


def key_id_of(blob: bytes) -> str:
    if len(blob) < 3 + _NONCE or blob[:2] != _MAGIC:
        raise DecryptionError("not a mailer ciphertext")
    n = blob[2]
    return blob[3 : 3 + n].decode()


def new_token() -> str:
    """A random 128-bit URL-safe token, never derived from PHI (PHI-6)."""
    return secrets.token_urlsafe(16)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
