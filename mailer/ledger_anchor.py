"""The ledger's head, anchored outside the database (SEC-5).

The signed head checkpoint lives in the same database as the chain, so restoring an older
copy of both tables, or deleting both, would still verify. Each anchor is one JSON line
appended to a file beside the key file: the head's sequence number and hash, when, and a
MAC under the ledger key. `Ledger.verify` compares the database with the newest anchor and
fails on a ledger that is shorter, older or empty, or that differs at the anchored entry.
An auditor's copy of the file (or the head printed in a quarterly report or evidence zip)
checks the same way: `mailer ledger verify --anchor FILE`.

Anchors are written after commit, from the committed head (never ahead of the database):
at the end of every CLI command that wrote to the ledger, after `Ledger.append` at most
once a minute, and hourly by the worker.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailer.errors import InputError

ANCHOR = "anchor"  # the checkpoint name the anchor MAC covers (apart from head and purge MACs)


@dataclass(frozen=True)
class Anchor:
    seq: int
    entry_hash: str
    at: str
    key_id: str
    mac: str
    line: int = 0


def anchor_path(key_file: Path) -> Path:
    """The anchor file beside the key file: `keys.json` -> `keys.ledger-anchors.jsonl`."""
    key_file = Path(key_file)
    return key_file.with_name(f"{key_file.stem}.ledger-anchors.jsonl")


def append_anchor(path: Path, record: dict[str, Any]) -> None:
    """Append one line (O_APPEND: concurrent writers never interleave a short line), fsync."""
    line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_anchors(path: Path) -> list[Anchor]:
    """Every anchor in the file, in file order. A line that is not an anchor is an InputError
    naming the file and line (an anchor file is written by this program only)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an anchor file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the anchor file ({err.strerror})") from None
    anchors: list[Anchor] = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line.decode("utf-8"))
            anchors.append(Anchor(int(d["seq"]), str(d["hash"]), str(d["at"]), str(d["key_id"]), str(d["mac"]), n))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            raise InputError(f"{path}:{n}: not a ledger anchor line",
                             hint="an anchor file holds only lines written by mailer; restore it from a copy") from None
    return anchors


def anchor_mac_ok(ledger: Any, a: Anchor) -> bool:
    keys = ledger._keys()
    if a.key_id not in keys:
        return False
    return hmac.compare_digest(ledger.checkpoint_mac(ANCHOR, a.seq, a.entry_hash, a.key_id), a.mac)
