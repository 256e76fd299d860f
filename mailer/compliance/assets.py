"""Patient testimonials, quotes, stories and images, and the consent that lets us use them.

TST-5 (with TST-1): a template uses a patient's words or image only as `{{ asset('key') }}`,
and only while the asset's written consent is on file, signed, not revoked, not expired,
and covers email. Compile (at submission), approval, preflight and render time all ask
`refusals`; the review packet and the evidence zip show each asset's consent.

The exact content the patient consented to (text or image bytes) and the consent's terms
are AES-GCM ciphertext bound to the asset key; the gate reads only clear metadata.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import mimetypes
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from mailer.accounts.permissions import Action, Principal
from mailer.compliance.common import acting, iso, record_event, retained_until
from mailer.compliance.models import Asset
from mailer.crypto import key_id_of, sha256_hex
from mailer.db import writing
from mailer.errors import ComplianceRefusal, InputError, StateError, TemplateError
from mailer.models import Contact, utcnow
from mailer.refusal import Refusal
from mailer.runtime import Runtime

RULE = "TST-5"
KINDS = ("testimonial", "quote", "story", "image", "before-after")
IMAGE_KINDS = ("image", "before-after")
CHANNELS = ("email", "web", "social")
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
_A = Asset.__table__  # type: ignore[attr-defined]
MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class AssetInfo:
    """What the gate, lists, the review packet and the evidence zip see: no content, no PHI."""

    id: int
    key: str
    kind: str
    contact_id: int
    media_type: str
    content_sha256: str
    channels: tuple[str, ...]
    consent_signed_at: dt.datetime
    consent_expires_at: dt.datetime | None
    consent_document_sha256: str
    revoked_at: dt.datetime | None
    registered_by: str

    def consent_status(self, at: dt.datetime, channel: str = "email") -> tuple[str, str]:
        """Pure: ("valid", "") or (status, why) for using this asset in `channel` at `at`."""
        if self.revoked_at is not None and self.revoked_at <= at:
            return "revoked", f"the consent for asset '{self.key}' was revoked on {self.revoked_at.date()}"
        if self.consent_signed_at > at:
            return "not-yet", f"the consent for asset '{self.key}' is not signed yet"
        if self.consent_expires_at is not None and self.consent_expires_at <= at:
            return "expired", f"the consent for asset '{self.key}' expired on {self.consent_expires_at.date()}"
        if channel not in self.channels:
            return "channel", f"the consent for asset '{self.key}' does not cover {channel} (only {', '.join(self.channels)})"
        return "valid", ""

    def as_dict(self, at: dt.datetime) -> dict[str, Any]:
        status, why = self.consent_status(at)
        return {"id": self.id, "key": self.key, "kind": self.kind, "contact_id": self.contact_id,
                "media_type": self.media_type, "content_sha256": self.content_sha256,
                "channels": list(self.channels), "consent_signed": iso(self.consent_signed_at),
                "consent_expires": iso(self.consent_expires_at), "consent_document_sha256": self.consent_document_sha256,
                "revoked": iso(self.revoked_at), "registered_by": self.registered_by,
                "email_status": status, "reason": why,
                "retained_until": iso(retained_until(self.consent_signed_at,
                                                     min((t for t in (self.revoked_at, self.consent_expires_at) if t),
                                                         default=None)))}


def refusals(found: Mapping[str, AssetInfo], keys: Iterable[str], at: dt.datetime) -> list[Refusal]:
    """Pure TST-5 decision for the assets a template names."""
    out = []
    for key in keys:
        info = found.get(key)
        if info is None:
            out.append(Refusal(RULE, f"asset '{key}' is not registered, so no consent is on file",
                               f"register it with the patient's written consent: mailer assets register {key} ..."))
            continue
        status, why = info.consent_status(at)
        if status != "valid":
            fix = ("record a new consent that covers email" if status == "channel"
                   else "remove the asset from the template, or obtain and register a new consent")
            out.append(Refusal("TST-1" if status == "revoked" else RULE, why, fix))
    return out


def _info(r: Any) -> AssetInfo:
    return AssetInfo(r.id, r.key, r.kind, r.contact_id, r.media_type, r.content_sha256,
                     tuple(c for c in r.channels.split(",") if c), r.consent_signed_at, r.consent_expires_at,
                     r.consent_document_sha256, r.revoked_at, r.registered_by)


def infos(rt: Runtime, keys: Iterable[str] | None = None) -> dict[str, AssetInfo]:
    q = select(_A).order_by(_A.c.id)
    if keys is not None:
        q = q.where(_A.c.key.in_(list(keys)))
    with rt.engine.connect() as conn:
        return {r.key: _info(r) for r in conn.execute(q)}


def _aad(key: str, part: str) -> bytes:
    return f"asset:{key}:{part}".encode()


def register(rt: Runtime, by: Principal | None, key: str, *, kind: str, contact_id: int, channels: Iterable[str],
             signed: dt.datetime, expires: dt.datetime, consent_document: Path, uses: str,
             text: str | None = None, file: Path | None = None, now: dt.datetime | None = None) -> AssetInfo:
    """Register an asset with its consent: exactly the content consented to, where, until when."""
    by = acting(by, Action.ASSETS_REGISTER)
    now = now or utcnow()
    key = key.strip().lower()
    if not _KEY.fullmatch(key):
        raise InputError(f"asset key {key!r}: use 2-64 lowercase letters, digits, '.', '_' or '-'",
                         hint="e.g. knee-story-2026; it never names the patient")
    if kind not in KINDS:
        raise InputError(f"--kind {kind!r} is unknown", hint=f"one of {', '.join(KINDS)}")
    chans = tuple(dict.fromkeys(c.strip().lower() for c in channels if c.strip()))
    bad = [c for c in chans if c not in CHANNELS]
    if bad or not chans:
        raise InputError(f"--channels {','.join(chans) or '(none)'}: unknown or empty", hint=f"any of {', '.join(CHANNELS)}")
    if (text is None) == (file is None):
        raise InputError("give exactly one of --text or --file: the exact content the patient consented to")
    if expires <= signed:
        raise InputError("--expires must be after --signed: the consent states for how long it holds")
    if signed > now:
        raise InputError("--signed is in the future")
    if not uses.strip():
        raise InputError("--uses is empty", hint="state exactly what may be used, as the consent form says")
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise InputError(f"--file {file}: cannot read it ({e.strerror})") from None
        media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    else:
        data, media = (text or "").strip().encode(), "text/plain"
    if not data or len(data) > MAX_BYTES:
        raise InputError("the asset content must be non-empty and under 5 MB")
    if kind in IMAGE_KINDS and not media.startswith("image/"):
        raise InputError(f"a {kind} asset must be an image file (.png, .jpg), not {media}")
    if kind not in IMAGE_KINDS and media != "text/plain":
        raise InputError(f"a {kind} asset is text: pass --text with the exact words the patient approved")
    try:
        doc_sha = sha256_hex(consent_document.read_bytes())
    except OSError as e:
        raise InputError(f"--consent-document {consent_document}: cannot read it ({e.strerror})") from None
    content = rt.keyring.encrypt(data, _aad(key, "content"))
    consent = rt.keyring.encrypt_json({"uses": uses.strip()}, _aad(key, "consent"))
    with writing(rt.engine) as conn:
        if conn.execute(select(Contact.__table__.c.id).where(Contact.__table__.c.id == contact_id)).first() is None:  # type: ignore[attr-defined]
            raise InputError(f"--contact {contact_id}: no such contact", hint="mailer contacts import first")
        if conn.execute(select(_A.c.id).where(_A.c.key == key)).first() is not None:
            raise InputError(f"asset {key} exists already", hint="keys are never reused; pick another")
        aid = conn.execute(_A.insert().values(
            key=key, kind=kind, contact_id=contact_id, media_type=media, content_sha256=sha256_hex(data),
            content_enc=content, consent_enc=consent, key_id=key_id_of(content), channels=",".join(chans),
            consent_signed_at=signed, consent_expires_at=expires, consent_document_sha256=doc_sha,
            registered_by=by.name, created_at=now, updated_at=now)).inserted_primary_key[0]  # type: ignore[index]
        record_event(rt, conn, by, "asset-registered", rules=(RULE, "TST-1"), detail={
            "asset_id": aid, "key": key, "kind": kind, "contact_id": contact_id, "channels": list(chans),
            "content_sha256": sha256_hex(data), "consent_document_sha256": doc_sha,
            "consent_expires": iso(expires)})
    return infos(rt, [key])[key]


def revoke(rt: Runtime, by: Principal | None, key: str, *, at: dt.datetime | None = None) -> AssetInfo:
    """The patient's written revocation: effective when received, for every unsent message."""
    by = acting(by, Action.ASSETS_REVOKE)
    at = at or utcnow()
    with writing(rt.engine) as conn:
        row = conn.execute(select(_A).where(_A.c.key == key)).first()
        if row is None:
            raise InputError(f"no asset {key!r}", hint="see mailer assets list")
        if row.revoked_at is not None:
            raise StateError(f"asset {key}'s consent was revoked already on {row.revoked_at.date()}")
        conn.execute(update(_A).where(_A.c.id == row.id).values(revoked_at=at, updated_at=at))
        record_event(rt, conn, by, "asset-revoked", rules=("TST-1",),
                     detail={"asset_id": row.id, "key": key, "contact_id": row.contact_id})
    return infos(rt, [key])[key]


def list_assets(rt: Runtime, by: Principal | None) -> list[AssetInfo]:
    by = acting(by, Action.ASSETS_READ)
    found = list(infos(rt).values())
    with writing(rt.engine) as conn:
        record_event(rt, conn, by, "assets-viewed", detail={"count": len(found)})
    return found


def template_refusals(rt: Runtime, template: Path, at: dt.datetime | None = None) -> list[Refusal]:
    from mailer.templates import asset_keys

    keys = asset_keys(template)
    return refusals(infos(rt, keys), keys, at or utcnow()) if keys else []


def require_template(rt: Runtime, template: Path, *, at: dt.datetime | None = None) -> None:
    found = template_refusals(rt, template, at)
    if found:
        raise ComplianceRefusal(found)


def packet(rt: Runtime, template: Path, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Each asset the template uses with its consent, for the review packet and evidence zip."""
    from mailer.templates import asset_keys

    at = at or utcnow()
    keys = asset_keys(template)
    found = infos(rt, keys)
    return [found[k].as_dict(at) if k in found else {"key": k, "email_status": "missing",
                                                     "reason": f"asset '{k}' is not registered"} for k in keys]


def bind(rt: Runtime, compiled: Any, *, at: dt.datetime | None = None) -> None:
    """Make `{{ asset('key') }}` render the consented content; re-checked at render time (TST-1)."""
    from mailer.templates import asset_keys

    keys = asset_keys(compiled.path)
    if not keys:
        return
    at = at or utcnow()
    found = infos(rt, keys)
    with rt.engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(_A.c.key, _A.c.content_enc, _A.c.media_type).where(_A.c.key.in_(keys)))}
    cache: dict[tuple[str, bool], str] = {}

    def resolve(key: str, as_html: bool) -> str:
        if (key, as_html) in cache:
            return cache[(key, as_html)]
        problems = refusals(found, [key], at)
        if problems:
            raise TemplateError(problems[0].reason, rules=(problems[0].rule,), hint=problems[0].fix)
        row = rows[key]
        data = rt.keyring.decrypt(row.content_enc, _aad(key, "content"))
        if row.media_type.startswith("image/"):
            value = (f'<img src="data:{row.media_type};base64,{base64.b64encode(data).decode()}" alt="">'
                     if as_html else "[image]")
        else:
            words = data.decode()
            value = html.escape(words) if as_html else words
        cache[(key, as_html)] = value
        return value

    compiled.bind_assets(resolve)
