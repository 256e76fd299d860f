"""The submitted content of a campaign, kept in the database (SEC-6, issue 15).

At `campaign create` and `campaign submit` the template files and the segment file are
read once and stored with their hashes. Review, approval, preflight, sending and the
evidence package all read that snapshot, so none of them depends on the current folder,
on a worker started from `/`, or on files moved or edited later. Editing the files on
disk makes a new version: it is sent only after a new submission and approval
(`drift` says so, naming both hashes).

Code that wants a path (the compiler, the lint, the segment parser) gets the snapshot
written out once into a private cache folder (0700) named by the hashes and checked
against them before use.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailer.errors import InputError, StateError
from mailer.models import Campaign, CampaignSnapshot, utcnow
from mailer.segments import segment_hash
from mailer.templates import TEMPLATE_FILES

_S = CampaignSnapshot.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Content:
    """Template files and segment bytes as read from disk, with their hashes."""

    template_files: dict[str, bytes]
    segment: bytes

    @property
    def template_hash(self) -> str:
        import hashlib

        h = hashlib.sha256()  # the same digest as templates.content_hash over a folder
        for name in TEMPLATE_FILES:
            if name in self.template_files:
                h.update(name.encode() + b"\0" + self.template_files[name] + b"\0")
        return h.hexdigest()

    @property
    def segment_hash(self) -> str:
        return segment_hash(self.segment)


@dataclass(frozen=True)
class Source:
    """Where the content to use lives now: the materialized snapshot, or (campaigns made
    before snapshots existed) the recorded paths."""

    template: Path
    segment: Path
    snapshot: bool


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: not found", hint="check the path (absolute paths work from any folder)") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied", hint="make the file readable by this user") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None


def read_content(template: Path, segment: Path) -> Content:
    """Read the files once. Unreadable is an input error (exit 2) naming the path."""
    if not template.is_dir():
        raise InputError(f"{template} is not a template folder", hint="a folder with template.toml and body.html.j2")
    files = {name: _read(template / name) for name in TEMPLATE_FILES if (template / name).exists()
             or name == "template.toml"}
    return Content(files, _read(segment))


def store_in(conn: Any, campaign_id: int, content: Content) -> None:
    """Keep this content for the campaign (once per pair of hashes)."""
    th, sh = content.template_hash, content.segment_hash
    seen = conn.execute(select(_S.c.id).where(_S.c.campaign_id == campaign_id, _S.c.template_hash == th,
                                              _S.c.segment_hash == sh)).first()
    if seen is not None:
        return
    conn.execute(_S.insert().values(
        campaign_id=campaign_id, template_hash=th, segment_hash=sh,
        template_files=json.dumps({k: base64.b64encode(v).decode() for k, v in content.template_files.items()},
                                  sort_keys=True),
        segment_source=base64.b64encode(content.segment).decode(), created_at=utcnow()))


def stored(engine: Any, campaign_id: int, template_hash: str, segment_hash_: str) -> Content | None:
    with engine.connect() as conn:
        row = conn.execute(select(_S).where(_S.c.campaign_id == campaign_id, _S.c.template_hash == template_hash,
                                            _S.c.segment_hash == segment_hash_)
                           .order_by(_S.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    files = {k: base64.b64decode(v) for k, v in json.loads(row.template_files).items()}
    content = Content(files, base64.b64decode(row.segment_source))
    if (content.template_hash, content.segment_hash) != (template_hash, segment_hash_):
        raise StateError(f"the stored content of campaign {campaign_id} does not match its hashes",
                         rules=("SEC-6",), hint="run `mailer ledger verify` and restore the database from a backup")
    return content


def _cache_root() -> Path:
    base = os.environ.get("MAILER_SNAPSHOT_CACHE") or os.path.join(tempfile.gettempdir(), f"mailer-snapshots-{os.getuid()}")
    root = Path(base)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.stat().st_uid != os.getuid():
        raise StateError(f"{root} belongs to another user", hint="set MAILER_SNAPSHOT_CACHE to a private folder")
    os.chmod(root, 0o700)
    return root


def materialize(content: Content) -> tuple[Path, Path]:
    """The content as files (template folder, segment file) in the private cache."""
    root = _cache_root()
    dest = root / f"{content.template_hash[:24]}-{content.segment_hash[:24]}"
    tdir, seg = dest / "template", dest / "segment.toml"
    if dest.is_dir():
        ok = all((tdir / n).is_file() and (tdir / n).read_bytes() == b for n, b in content.template_files.items())
        if ok and seg.is_file() and seg.read_bytes() == content.segment:
            return tdir, seg
    work = Path(tempfile.mkdtemp(dir=root))
    (work / "template").mkdir()
    for name, data in content.template_files.items():
        (work / "template" / name).write_bytes(data)
    (work / "segment.toml").write_bytes(content.segment)
    try:
        if dest.exists():
            import shutil

            shutil.rmtree(dest, ignore_errors=True)
        os.replace(work, dest)
    except OSError:  # another process put the same content there first
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return tdir, seg


def source(rt: Any, campaign: Campaign) -> Source:
    """The content bound to the campaign's hashes, from the database when it has it."""
    content = stored(rt.engine, campaign.id or 0, campaign.template_hash, campaign.segment_hash)
    if content is None:
        return Source(Path(campaign.template), Path(campaign.segment), False)
    t, s = materialize(content)
    return Source(t, s, True)


def has_snapshot(rt: Any, campaign: Campaign) -> bool:
    with rt.engine.connect() as conn:
        return conn.execute(select(_S.c.id).where(_S.c.campaign_id == campaign.id).limit(1)).first() is not None


@dataclass(frozen=True)
class Drift:
    """The files at the recorded paths, compared with the submitted content."""

    what: str  # "template" | "segment"
    path: str
    submitted: str
    on_disk: str | None  # None: not readable there (moved, deleted, another folder)

    def message(self, campaign_id: int) -> str:
        if self.on_disk is None:
            return (f"{self.what} {self.path} is not readable from here; the submitted version "
                    f"(sha256 {self.submitted[:12]}) is used")
        return (f"{self.what} {self.path} was edited after submission: on disk sha256 {self.on_disk[:12]}, "
                f"submitted sha256 {self.submitted[:12]}; the submitted version is what is sent. The edit is a "
                f"new version: `mailer campaign submit {campaign_id}` puts it up for a new approval")


def drift(campaign: Campaign) -> list[Drift]:
    """Differences between the files on disk and the submitted content (never an error)."""
    from mailer.templates import content_hash

    out: list[Drift] = []
    tpath, spath = Path(campaign.template), Path(campaign.segment)
    try:
        th: str | None = content_hash(tpath) if (tpath / "template.toml").is_file() else None
    except OSError:
        th = None
    try:
        sh: str | None = segment_hash(spath.read_bytes()) if spath.is_file() else None
    except OSError:
        sh = None
    if th != campaign.template_hash:
        out.append(Drift("template", str(tpath), campaign.template_hash, th))
    if sh != campaign.segment_hash:
        out.append(Drift("segment", str(spath), campaign.segment_hash, sh))
    return out
