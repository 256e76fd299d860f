"""`mailer bounces fetch`: a local Maildir (stdlib `mailbox`) or a mailbox over IMAP with TLS.

Messages are read in batches of `bounces.batch`; each batch is processed in one commit
and only then filed away: into the sub-folders `mailer-processed`, `mailer-review` and
`mailer-rejected` (Maildir++ folders; IMAP folders of the same names). Nothing is
deleted. A crash before the move leaves the batch where it was; processing it again is
idempotent. At most `max_message_bytes + 1` bytes of a message are read (bounded memory).
"""

from __future__ import annotations

import mailbox
import os
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mailer.bounces.process import Incoming, Outcome, Processor, Totals
from mailer.errors import ConfigError, InputError, TLSPolicyError, TransportError

FOLDERS = {"processed": "mailer-processed", "review": "mailer-review", "rejected": "mailer-rejected"}
Progress = Callable[[Totals], None]


def _open_maildir(path: Path) -> mailbox.Maildir:
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise InputError(f"{path} is not a Maildir (no cur/ and new/ folders)",
                         hint="point bounces.maildir (or --maildir) at the bounce mailbox's Maildir")
    md = mailbox.Maildir(str(path), factory=None, create=False)
    have = set(md.list_folders())
    for name in FOLDERS.values():
        if name not in have:
            md.add_folder(name)
    return md


def _batches(md: mailbox.Maildir, size: int, limit: int) -> Iterator[list[tuple[str, bytes]]]:
    batch: list[tuple[str, bytes]] = []
    for key in md.iterkeys():
        try:
            with md.get_file(key) as fh:
                raw = fh.read(limit + 1)
        except (KeyError, FileNotFoundError):  # filed away by another fetcher meanwhile
            continue
        batch.append((key, raw))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _file_away(md: mailbox.Maildir, root: Path, key: str, outcome: Outcome) -> None:
    """Atomic rename into the folder's cur/, marked seen (Maildir info ':2,S')."""
    try:
        sub = md._lookup(key)  # type: ignore[attr-defined]  # noqa: SLF001 - the stdlib's key -> path map; rename keeps the bytes as they are
    except KeyError:
        return
    name = os.path.basename(sub).split(":", 1)[0]
    dest = root / f".{FOLDERS[outcome.folder]}" / "cur" / f"{name}:2,S"
    os.replace(root / sub, dest)


def fetch_maildir(processor: Processor, path: Path, *, progress: Progress | None = None,
                  limit: int | None = None) -> Totals:
    """Process every message in PATH's new/ and cur/ (not its sub-folders)."""
    md = _open_maildir(path)
    s = processor.settings
    totals = Totals()
    for batch in _batches(md, s.batch, s.max_message_bytes):
        if limit is not None and totals.total >= limit:
            break
        outcomes = processor.process([Incoming(raw, "maildir") for _key, raw in batch])
        for (key, _raw), o in zip(batch, outcomes, strict=True):
            _file_away(md, path, key, o)
        totals.add(outcomes)
        if progress:
            progress(totals)
    return totals


def imap_context(ca_file: Path | None) -> ssl.SSLContext:
    """TLS-2/TLS-3 for the mailbox too: verified certificate and host name, TLS 1.2+."""
    from mailer.transport import tls_context

    return tls_context(ca_file)


def _login(mailbox_class: Any, s: Any, password: str) -> Any:
    """Connect with TLS and log in; the one place that translates imaplib's and ssl's errors."""
    from imap_tools.errors import MailboxLoginError

    where = f"{s.imap_host}:{s.imap_port}"
    try:
        return mailbox_class(s.imap_host, s.imap_port, ssl_context=imap_context(s.imap_ca_file), timeout=60).login(
            s.imap_username, password, initial_folder=s.imap_folder)
    except ssl.SSLCertVerificationError as err:
        raise TLSPolicyError(f"IMAP server {where}: certificate did not verify: {err.verify_message}",
                             rules=("TLS-3",), hint="trust its CA with bounces.imap_ca_file; verification stays on") from None
    except ssl.SSLError as err:
        raise TLSPolicyError(f"IMAP server {where}: TLS handshake failed ({err.reason})", rules=("TLS-2",),
                             hint="the server must offer TLS 1.2 or newer on its IMAPS port (993)") from None
    except MailboxLoginError:
        raise ConfigError(f"IMAP server {where} refused the login of bounces.imap_username",
                          hint=f"check the user name and ${s.imap_password_env}") from None
    except OSError as err:
        raise TransportError(f"IMAP server {where} unreachable: {type(err).__name__}",
                             hint="check bounces.imap_host and bounces.imap_port") from None


def fetch_imap(processor: Processor, *, progress: Progress | None = None) -> Totals:
    """Unseen messages of `bounces.imap_folder` over IMAP with TLS (port 993; never in clear)."""
    from imap_tools import AND, MailBox

    s = processor.settings
    if not s.imap_host or not s.imap_username:
        raise ConfigError("IMAP is not configured", hint="set bounces.imap_host and bounces.imap_username")
    password = s.imap_password()
    if password is None:
        raise ConfigError(f"no IMAP password in ${s.imap_password_env}",
                          hint=f"export {s.imap_password_env}=... (it is never printed)")
    totals = Totals()
    with _login(MailBox, s, password.get_secret_value()) as box:
        for name in FOLDERS.values():
            if not box.folder.exists(name):
                box.folder.create(name)
        # larger than the bound: filed as rejected unread, and recorded
        big = box.uids(AND(seen=False, size_gt=s.max_message_bytes))
        if big:
            # only the UID is known: a placeholder over the bound, distinct per message
            outcomes = processor.process([Incoming(f"imap uid {uid}\n".encode().ljust(s.max_message_bytes + 1), "imap")
                                          for uid in big])
            box.move(big, FOLDERS["rejected"])
            totals.add(outcomes)
        uids = box.uids(AND(seen=False))
        for i in range(0, len(uids), s.batch):
            chunk = uids[i:i + s.batch]
            msgs = list(box.fetch(AND(uid=chunk), mark_seen=False, bulk=True))
            outcomes = processor.process([Incoming(m.obj.as_bytes(), "imap") for m in msgs])
            for folder in set(o.folder for o in outcomes):
                box.move([m.uid for m, o in zip(msgs, outcomes, strict=True) if o.folder == folder and m.uid],
                         FOLDERS[folder])
            totals.add(outcomes)
            if progress:
                progress(totals)
    return totals
