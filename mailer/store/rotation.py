"""Field-key rotation: re-encrypt every encrypted column under a new key, in resumable batches.

A rotation is a `KeyRotation` row. Each batch re-encrypts the contacts after
`last_contact_id`, then the authorizations after `last_authorization_id` (their
`elements_enc`), and advances that checkpoint in the same transaction, so an interrupted
run loses nothing and the next `mailer keys rotate` continues where it stopped. Old keys
stay in the key file: backups and any row not yet moved still name them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update

from mailer.crypto import Keyring, key_id_of
from mailer.db import writing
from mailer.errors import DecryptionError, KeyFileError
from mailer.ledger import KEY_ROTATION, Event, Ledger
from mailer.locks import NamedLock
from mailer.models import Authorization, Contact, KeyRotation, utcnow
from mailer.store.auth_records import reencrypt_record
from mailer.store.contacts import aad

BATCH = 500
ENCRYPTED_CONTACT_COLUMNS = (("email_enc", "email"), ("identity_enc", "identity"), ("phi_enc", "phi"))


@dataclass(frozen=True)
class RotationResult:
    rotation_id: int
    from_key_id: str
    to_key_id: str
    resumed: bool
    rewritten: int  # rows re-encrypted by this run
    done: bool


def unfinished(engine: Engine) -> Any | None:
    t = KeyRotation.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return conn.execute(select(t).where(t.c.done.is_(False)).order_by(t.c.id.desc()).limit(1)).first()


def rotate(engine: Engine, keyring: Keyring, ledger: Ledger, *, actor: str | None = None,
           batch: int = BATCH, progress: Callable[[int], None] | None = None,
           lock_wait: float = 120.0) -> RotationResult:
    """Start a rotation (new key saved to the key file first), or resume the unfinished one.

    Starting takes an exclusive lock (a PostgreSQL advisory lock or a lock file beside the
    SQLite database, plus a lock file beside the key file) across reading the key file,
    creating the key, writing the key file and recording the rotation: two overlapping runs
    can never mint two different keys under one id. The second run finds the first's
    rotation and helps finish it (re-encryption under one key is idempotent)."""
    rot = KeyRotation.__table__  # type: ignore[attr-defined]
    if keyring.path is None:
        raise KeyFileError("the keyring was not loaded from a key file; cannot save a new key")
    with NamedLock(engine, "key-rotation", wait=lock_wait,
                   extra_file=keyring.path.with_name(keyring.path.name + ".rotate.lock")) as held:
        if not held:
            raise KeyFileError("another `mailer keys rotate` holds the rotation lock",
                               hint="wait for it to finish, then run `mailer keys status`")
        _reload(keyring)  # another run may have added a key since this process loaded the file
        current = unfinished(engine)
        resumed = current is not None
        if current is None:
            used = _key_ids_in_use(engine)
            missing = sorted(_rows_on_keys(engine) - set(keyring.field_keys))
            if missing:
                raise KeyFileError(f"rows are encrypted under key(s) {', '.join(missing)}, which the key file "
                                   f"{keyring.path} does not hold: a rotation could not move them", rules=("SEC-4",),
                                   hint="use the key file this database was encrypted with (`mailer keys status`)")
            from_kid = keyring.active_key_id
            to_kid = keyring.add_field_key(used=used)
            keyring.save(keyring.path, overwrite=True)  # the key exists on disk before any row uses it
            with writing(engine) as conn:
                rid = conn.execute(insert(rot).values(from_key_id=from_kid, to_key_id=to_kid, last_contact_id=0,
                                                      last_authorization_id=0, done=False,
                                                      started_at=utcnow())).inserted_primary_key[0]  # type: ignore[index]
                ledger.append_in(conn, [Event(kind=KEY_ROTATION, outcome="started", actor=actor, rule_ids=("SEC-4",),
                                              detail={"rotation": rid, "from": from_kid, "to": to_kid})])
            last = last_auth = 0
    if current is not None:
        rid, from_kid, to_kid = current.id, current.from_key_id, current.to_key_id
        last, last_auth = current.last_contact_id, current.last_authorization_id
        if to_kid not in keyring.field_keys:
            raise KeyFileError(f"rotation {rid} moves rows to key {to_kid!r}, which the key file does not hold",
                               hint="use the key file the rotation was started with")
        if keyring.active_key_id != to_kid:
            raise KeyFileError(f"rotation {rid} targets key {to_kid!r} but the key file's active key is "
                               f"{keyring.active_key_id!r}", hint="use the key file the rotation was started with")
        with writing(engine) as conn:
            ledger.append_in(conn, [Event(kind=KEY_ROTATION, outcome="resumed", actor=actor, rule_ids=("SEC-4",),
                                          detail={"rotation": rid, "from": from_kid, "to": to_kid, "after": last,
                                                  "after_authorization": last_auth})])

    contacts = Contact.__table__  # type: ignore[attr-defined]
    rewritten = 0
    while True:
        with writing(engine) as conn:
            page = conn.execute(select(contacts.c.id, contacts.c.email_hash, contacts.c.key_id,
                                       *(contacts.c[c] for c, _ in ENCRYPTED_CONTACT_COLUMNS))
                                .where(contacts.c.id > last).order_by(contacts.c.id).limit(batch)).all()
            if not page:
                break
            changes = [ch for row in page if (ch := _reencrypt(keyring, row, to_kid)) is not None]
            if changes:
                conn.execute(update(contacts).where(contacts.c.id == bindparam("_id")), changes)
            last = page[-1].id
            conn.execute(update(rot).where(rot.c.id == rid).values(last_contact_id=last))
        rewritten += len(changes)
        if progress:
            progress(len(page))

    auths = Authorization.__table__  # type: ignore[attr-defined]
    while True:
        with writing(engine) as conn:
            apage = conn.execute(select(auths.c.id, auths.c.contact_id, auths.c.scope, auths.c.signed_at,
                                        auths.c.document_sha256, auths.c.key_id, auths.c.elements_enc)
                                 .where(auths.c.id > last_auth).order_by(auths.c.id).limit(batch)).all()
            if not apage:
                break
            achanges = [{"_id": r.id, "key_id": to_kid, "elements_enc": reencrypt_record(keyring, r, to_kid)}
                        for r in apage if r.key_id != to_kid or key_id_of(r.elements_enc) != to_kid]
            if achanges:
                conn.execute(update(auths).where(auths.c.id == bindparam("_id")), achanges)
            last_auth = apage[-1].id
            conn.execute(update(rot).where(rot.c.id == rid).values(last_authorization_id=last_auth))
        rewritten += len(achanges)
        if progress:
            progress(len(apage))

    rewritten += _reencrypt_account_secrets(engine, keyring, to_kid)  # SEC-7 secrets under the same keys

    with writing(engine) as conn:
        left = sum(conn.execute(select(func.count()).select_from(t).where(t.c.key_id != to_kid)).scalar() or 0
                   for t in (contacts, auths))
        conn.execute(update(rot).where(rot.c.id == rid).values(done=True, finished_at=utcnow()))
        ledger.append_in(conn, [Event(kind=KEY_ROTATION, outcome="finished", actor=actor, rule_ids=("SEC-4",),
                                      detail={"rotation": rid, "from": from_kid, "to": to_kid,
                                              "rewritten": rewritten, "rows_on_other_keys": left})])
    return RotationResult(rid, from_kid, to_kid, resumed, rewritten, True)


def _reload(keyring: Keyring) -> None:
    """Merge the key file as it is on disk now into KEYRING (keys are only ever added)."""
    assert keyring.path is not None
    fresh = Keyring.load(keyring.path)
    clash = sorted(k for k, v in fresh.field_keys.items() if k in keyring.field_keys and keyring.field_keys[k] != v)
    if clash:
        raise KeyFileError(f"the key file {keyring.path} holds different key material for {', '.join(clash)} "
                           "than this process loaded", rules=("SEC-4",),
                           hint="another process rewrote the key file: check it, then run the command again")
    keyring.field_keys.update(fresh.field_keys)
    keyring.active_key_id = fresh.active_key_id


def _account_secret_keys(conn: Any) -> set[str]:
    """Key ids of the accounts' TOTP secrets (issue 12): in the blob itself, no key_id column."""
    from mailer.accounts.models import Account

    acc = Account.__table__  # type: ignore[attr-defined]
    return {key_id_of(r[0]) for r in conn.execute(select(acc.c.totp_enc).where(acc.c.totp_enc.is_not(None)))}


def _reencrypt_account_secrets(engine: Engine, keyring: Keyring, to_kid: str) -> int:
    """Move every account's TOTP secret to `to_kid` (same AAD); a few rows, one transaction."""
    from mailer.accounts.models import Account
    from mailer.accounts.service import _totp_aad

    acc = Account.__table__  # type: ignore[attr-defined]
    with writing(engine) as conn:
        rows = conn.execute(select(acc.c.id, acc.c.totp_enc).where(acc.c.totp_enc.is_not(None))).all()
        changes = [{"_id": r.id, "totp_enc": keyring.encrypt(keyring.decrypt(r.totp_enc, _totp_aad(r.id)),
                                                              _totp_aad(r.id), key_id=to_kid)}
                   for r in rows if key_id_of(r.totp_enc) != to_kid]
        if changes:
            conn.execute(update(acc).where(acc.c.id == bindparam("_id")), changes)
    return len(changes)


def _key_ids_in_use(engine: Engine) -> set[str]:
    """Every field key id the database names (rows, authorizations, rotations): never minted again."""
    contacts = Contact.__table__  # type: ignore[attr-defined]
    auths = Authorization.__table__  # type: ignore[attr-defined]
    rot = KeyRotation.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(select(contacts.c.key_id).distinct())}
        ids |= {r[0] for r in conn.execute(select(auths.c.key_id).distinct())}
        ids |= _account_secret_keys(conn)
        for r in conn.execute(select(rot.c.from_key_id, rot.c.to_key_id)):
            ids |= {r[0], r[1]}
    return {i for i in ids if i}


def _rows_on_keys(engine: Engine) -> set[str]:
    contacts = Contact.__table__  # type: ignore[attr-defined]
    auths = Authorization.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return ({r[0] for r in conn.execute(select(contacts.c.key_id).distinct())}
                | {r[0] for r in conn.execute(select(auths.c.key_id).distinct())} | _account_secret_keys(conn))


def _reencrypt(keyring: Keyring, row: Any, to_kid: str) -> dict[str, Any] | None:
    """The row's blobs under `to_kid` (same AAD), or None if it is already there."""
    blobs = {col: getattr(row, col) for col, _ in ENCRYPTED_CONTACT_COLUMNS}
    if row.key_id == to_kid and all(b is None or key_id_of(b) == to_kid for b in blobs.values()):
        return None
    out: dict[str, Any] = {"_id": row.id, "key_id": to_kid}
    for col, name in ENCRYPTED_CONTACT_COLUMNS:
        blob = blobs[col]
        if blob is None:
            out[col] = None
            continue
        a = aad(name, row.email_hash)
        out[col] = keyring.encrypt(keyring.decrypt(blob, a), a, key_id=to_kid)
    return out


def key_status(engine: Engine, keyring: Keyring) -> dict[str, Any]:
    """Rows per key id (contacts, authorizations), the key file's keys, and any unfinished
    rotation (ids only)."""
    contacts = Contact.__table__  # type: ignore[attr-defined]
    auths = Authorization.__table__  # type: ignore[attr-defined]
    rot = KeyRotation.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        per_key = {kid: n for kid, n in conn.execute(
            select(contacts.c.key_id, func.count()).group_by(contacts.c.key_id).order_by(contacts.c.key_id))}
        auth_per_key = {kid: n for kid, n in conn.execute(
            select(auths.c.key_id, func.count()).group_by(auths.c.key_id).order_by(auths.c.key_id))}
        last = conn.execute(select(rot).order_by(rot.c.id.desc()).limit(1)).first()
        samples = {kid: _sample(conn, keyring, kid) for kid in sorted({*per_key, *auth_per_key})}
    return {
        "samples": samples,
        "active_key_id": keyring.active_key_id,
        "key_ids": sorted(keyring.field_keys),
        "contacts_per_key": per_key,
        "authorizations_per_key": auth_per_key,
        "missing_keys": sorted(k for k in {*per_key, *auth_per_key} if k not in keyring.field_keys),
        "last_rotation": None if last is None else {
            "id": last.id, "from": last.from_key_id, "to": last.to_key_id, "done": bool(last.done),
            "last_contact_id": last.last_contact_id, "last_authorization_id": last.last_authorization_id,
            "started_at": last.started_at, "finished_at": last.finished_at,
        },
    }


SAMPLE = 3  # rows per key id and table, from each end


def _sample(conn: Any, keyring: Keyring, kid: str) -> dict[str, Any]:
    """Decrypt the first and last few rows under KID: counts alone cannot show a key file
    whose key has the right id and the wrong bytes."""
    from mailer.store.auth_records import decrypt_authorization
    from mailer.store.contacts import decrypt_clinical, decrypt_identity

    contacts = Contact.__table__  # type: ignore[attr-defined]
    auths = Authorization.__table__  # type: ignore[attr-defined]
    checked = failed = 0
    for table, check in ((contacts, lambda r: (decrypt_identity(keyring, r), decrypt_clinical(keyring, r))),
                         (auths, lambda r: decrypt_authorization(keyring, r))):
        ids: set[int] = set()
        for order in (table.c.id.asc(), table.c.id.desc()):
            for r in conn.execute(select(table).where(table.c.key_id == kid).order_by(order).limit(SAMPLE)):
                if r.id in ids:
                    continue
                ids.add(r.id)
                checked += 1
                try:
                    check(r)
                except (DecryptionError, ValueError):
                    failed += 1
    return {"checked": checked, "failed": failed, "ok": checked > 0 and failed == 0}
