"""The evidence package for one campaign: everything an auditor needs, in one zip.

Approvals, the template's hash with its source and a sample rendered for a synthetic
contact ("Sample Patient"), the segment and audience snapshot hashes, every ledger
entry of the campaign (JSON Lines), the verification of the whole chain, a summary
that reconciles outcomes with the send queue, and MANIFEST.sha256 over every file
(`sha256sum -c MANIFEST.sha256` checks it). No patient address or clinical value goes
in: entries hold ids and hashes only, and the sample uses a synthetic contact. Writing
the package is itself a `data-export` ledger entry that records the zip's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailer.campaigns import APPROVED_STATES
from mailer.campaigns import get as get_campaign
from mailer.errors import MailerError
from mailer.ledger import APPROVAL, AUDIENCE, DATA_EXPORT, SEND, SKIP, Event
from mailer.ledger_query import Filters, entries, record
from mailer.models import Approval
from mailer.preview import render_preview
from mailer.runtime import Runtime
from mailer.templates import compile_template, content_hash

_AP = Approval.__table__  # type: ignore[attr-defined]
_OUTCOMES = ("sent", "failed", "uncertain")  # a recipient's final send outcomes (deferred is an attempt)

README = """Evidence package for campaign {id} ({name}), made {made} UTC by {actor}.

campaign.json            the campaign record: purpose, status, template/segment/audience hashes
approvals.jsonl          approval and rejection entries from the ledger
approval_records.json    the approval records, each bound to the template and segment hash it saw
template/hash.json       the submitted hash and whether an approval covers it, the files on disk, the hashes sent
template/source/*        the submitted template files, from the database (the hashes are computed over them)
sample/sample.eml        the message as composed for a synthetic contact ("Sample Patient")
sample/sample.html       its HTML part
segment/snapshot.json    segment file hash and the audience snapshot(s) frozen from it
segment/source.toml      the segment definition (criteria, not patient data)
entries.jsonl            every ledger entry of this campaign up to entry {through}, with hashes and MACs
summary.json             outcomes per recipient, reconciled with the send queue
verification.json        the result of verifying the whole ledger chain when this package was made
MANIFEST.sha256          SHA-256 of every file above: `sha256sum -c MANIFEST.sha256`

A recipient can be matched to entries only by whoever holds the address and the
installation's lookup key (recipient_hash is an HMAC). message_hash is the SHA-256 of
the exact bytes sent, so a copy of a message proves itself against its entry.
"""


@dataclass(frozen=True)
class EvidenceResult:
    path: Path
    files: int
    entries: int
    sha256: str
    manifest_sha256: str
    verified: bool
    seq: int  # the data-export entry
    head_seq: int = 0  # the verified ledger head the package was made against (an auditor keeps it)
    head_hash: str = ""
    missing: tuple[str, ...] = ()  # what the package lacks: it is incomplete (exit 1)

    @property
    def complete(self) -> bool:
        return self.verified and not self.missing


class _Zip:
    """Writes members and remembers their SHA-256 for the manifest."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.sums: list[tuple[str, str]] = []

    def put(self, name: str, data: bytes | str) -> None:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.zf.writestr(name, raw)
        self.sums.append((hashlib.sha256(raw).hexdigest(), name))

    def put_json(self, name: str, value: Any) -> None:
        self.put(name, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")

    def put_lines(self, name: str, records: Any) -> int:
        """Stream JSON Lines into the archive (never the whole list in memory)."""
        h = hashlib.sha256()
        n = 0
        info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        with self.zf.open(info, "w", force_zip64=True) as f:
            for rec in records:
                line = (json.dumps(rec, separators=(",", ":"), ensure_ascii=True, default=str) + "\n").encode()
                h.update(line)
                f.write(line)
                n += 1
        self.sums.append((h.hexdigest(), name))
        return n


def _sample(rt: Runtime, campaign: Any, template: Any) -> tuple[bytes, str]:
    """Render and compose for the synthetic contact, through the same code as a real send."""
    p = render_preview(rt.settings, template, campaign_name=campaign.name, campaign_id=campaign.id or 0)
    return p.eml, p.html


def write_evidence(rt: Runtime, campaign_id: int, out: Path, *, actor: str | None = None) -> EvidenceResult:
    """Build the package at `out` (written to a temporary name, then moved into place)."""
    from mailer.models import utcnow
    from mailer.store import deliveries as dq

    campaign = get_campaign(rt, campaign_id)
    ledger = rt.ledger
    verification = ledger.verify()
    through = verification.last_seq if verification.ok else ledger.last_seq()
    made = utcnow()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # it lists ids: private
    os.chmod(partial, 0o600)
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        z = _Zip(zf)
        z.put("README.txt", README.format(id=campaign.id, name=campaign.name, made=made.isoformat(timespec="seconds"),
                                          actor=actor or "-", through=through))
        z.put_json("campaign.json", {
            "id": campaign.id, "name": campaign.name, "purpose": campaign.purpose, "status": campaign.status,
            "run": campaign.run, "author": campaign.author, "third_party": campaign.third_party,
            "template": campaign.template, "template_hash": campaign.template_hash,
            "segment": campaign.segment, "segment_hash": campaign.segment_hash,
            "audience_hash": campaign.audience_hash, "created_at": campaign.created_at,
        })
        z.put_lines("approvals.jsonl", (record(r) for r in entries(
            ledger, Filters(campaign_id=campaign_id, kinds=(APPROVAL,)), through_seq=through)))
        with rt.engine.connect() as conn:
            approvals = [
                {"id": a.id, "reviewer": a.reviewer, "decision": a.decision, "template_hash": a.template_hash,
                 "segment_hash": a.segment_hash, "purpose": a.purpose, "waivers": json.loads(a.waivers_json or "[]"),
                 "segment_counts": json.loads(a.segment_counts_json or "{}"), "at": a.at,
                 # free text stays out; its hash shows it was not changed
                 "note_sha256": hashlib.sha256((a.note or "").encode()).hexdigest()}
                for a in conn.execute(select(_AP).where(_AP.c.campaign_id == campaign_id).order_by(_AP.c.id))
            ]
        z.put_json("approval_records.json", approvals)

        # template: hash, source, sample -- from the submitted content in the database,
        # never from the current folder (issue 15)
        from mailer import snapshots

        content = snapshots.stored(rt.engine, campaign_id, campaign.template_hash, campaign.segment_hash)
        legacy = content is None
        tpath, spath = Path(campaign.template), Path(campaign.segment)
        if legacy and (tpath / "template.toml").exists() and spath.is_file():
            content = snapshots.read_content(tpath, spath)
        sent_hashes: Counter[str] = Counter()
        audience: list[dict[str, Any]] = []
        kinds: Counter[str] = Counter()
        final: dict[int, str] = {}
        duplicates: list[int] = []
        for r in entries(ledger, Filters(campaign_id=campaign_id), through_seq=through):
            kinds[f"{r.kind}:{r.outcome or '-'}"] += 1
            if r.kind == SEND and r.template_hash:
                sent_hashes[r.template_hash] += 1
            if r.kind == AUDIENCE:
                audience.append(record(r))
            if r.contact_id is not None and (r.kind == SKIP or (r.kind == SEND and r.outcome in _OUTCOMES)):
                if r.contact_id in final and final[r.contact_id] != "uncertain":
                    duplicates.append(r.contact_id)
                final[r.contact_id] = f"{r.kind}:{r.outcome}" if r.kind == SEND else SKIP
        # only a hash an approval record holds is "approved"; a submitted one awaiting review is not
        approved_hashes = sorted({a["template_hash"] for a in approvals if a["decision"] == "approved"})
        latest_approved = next((a for a in reversed(approvals) if a["decision"] == "approved"), None)
        approved_now = (latest_approved is not None and campaign.status in APPROVED_STATES
                        and latest_approved["template_hash"] == campaign.template_hash)
        on_disk = None
        try:
            on_disk = content_hash(tpath) if (tpath / "template.toml").exists() else None
        except OSError:
            pass
        z.put_json("template/hash.json", {
            "approved_template_hash": campaign.template_hash if approved_now else None,
            "submitted_template_hash": campaign.template_hash,
            "submitted_hash_is_approved": approved_now,
            "approval_record_hashes": approved_hashes,
            "current_files_hash": on_disk,  # the folder on disk today (informative: sends use the stored copy)
            "current_files_match": on_disk == campaign.template_hash,
            "hashes_in_send_entries": dict(sent_hashes),
            "all_sends_used_the_approved_hash": set(sent_hashes) <= set(approved_hashes),
        })
        missing: list[str] = []
        if content is not None:
            for name, data in content.template_files.items():
                z.put(f"template/source/{name}", data)
            try:
                from mailer.compliance import assets

                tdir, _seg = snapshots.materialize(content)
                z.put_json("template/assets.json", assets.packet(rt, tdir))  # consent of each asset (TST-5)
                compiled = compile_template(tdir)
                assets.bind(rt, compiled)
                eml, html = _sample(rt, campaign, compiled)
                z.put("sample/sample.eml", eml)
                z.put("sample/sample.html", html)
            except MailerError as err:
                z.put("sample/ERROR.txt", f"the sample could not be rendered: {err}\n")
                missing.append(f"sample ({err.message})")
            z.put("segment/source.toml", content.segment)
        else:
            z.put("sample/ERROR.txt", "the template folder is no longer at the recorded path\n")
            missing += [f"template source ({tpath} not found)", f"segment source ({spath} not found)"]
        z.put_json("segment/snapshot.json", {
            "segment_hash": campaign.segment_hash,
            "stored_content_hash": content.segment_hash if content is not None else None,
            "audience_hash": campaign.audience_hash,
            "audience_entries": audience,
        })
        n = z.put_lines("entries.jsonl", (record(r) for r in entries(
            ledger, Filters(campaign_id=campaign_id), through_seq=through)))
        queue = dq.counts(rt.engine, campaign_id)
        outcome_counts = Counter(final.values())
        z.put_json("summary.json", {
            "entries": n, "entries_by_kind_outcome": dict(sorted(kinds.items())),
            "recipients_with_an_outcome": len(final),
            "recipient_outcomes": dict(sorted(outcome_counts.items())),
            "recipients_with_more_than_one_outcome": sorted(set(duplicates))[:1000],
            "send_queue_counts": queue,
        })
        z.put_json("verification.json", {**verification.as_dict(), "package_through_seq": through})
        manifest = "".join(f"{h}  {name}\n" for h, name in z.sums)
        zf.writestr("MANIFEST.sha256", manifest)
        files = len(z.sums) + 1
    zip_sha = hashlib.sha256()
    with partial.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            zip_sha.update(chunk)
    os.replace(partial, out)
    manifest_sha = hashlib.sha256(manifest.encode()).hexdigest()
    seq = ledger.append([Event(kind=DATA_EXPORT, outcome="evidence", campaign_id=campaign_id, actor=actor,
                               rule_ids=("SEC-5",), detail={"files": files, "entries": n, "through_seq": through,
                                                            "manifest_sha256": manifest_sha,
                                                            "sha256": zip_sha.hexdigest(),
                                                            "verified": verification.ok,
                                                            "missing": missing})])[0]
    return EvidenceResult(out, files, n, zip_sha.hexdigest(), manifest_sha, verification.ok, seq,
                          verification.last_seq, verification.last_hash, tuple(missing))
