"""Risk assessments for new marketing initiatives (RSK-1, RSK-2).

A campaign's initiative is the set of its elements: purpose, vendor (the relay, and the
paying third party if any), channel, and every data field its template and segment use.
An element that no other approved campaign used makes the campaign a new initiative;
preflight refuses it until an approved risk assessment covers each new element, and names
them. An assessment is approved by a reviewer other than its author (RSK-2). Elements are
names only; the narrative (what PHI, who receives it, safeguards) is encrypted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from mailer.accounts.permissions import Action, Principal
from mailer.compliance.common import acting, iso, record_event, retained_until
from mailer.compliance.models import RiskAssessment
from mailer.crypto import key_id_of
from mailer.db import writing
from mailer.errors import ComplianceRefusal, InputError, MailerError, StateError
from mailer.models import Campaign, utcnow
from mailer.refusal import Refusal
from mailer.runtime import Runtime

RULE, FOUR_EYES = "RSK-1", "RSK-2"
RISKS = ("low", "medium", "high")
DECISIONS = ("proceed", "do-not-proceed")
_R = RiskAssessment.__table__  # type: ignore[attr-defined]
_C = Campaign.__table__  # type: ignore[attr-defined]
_FIELD = re.compile(r"\bcontact\s*\.\s*([A-Za-z_]\w*)|contact\s*\[\s*['\"](\w+)['\"]\s*\]")
_ELEMENT = re.compile(r"(purpose|vendor|third_party|channel|field):[^,\s][^,]{0,120}")


@dataclass(frozen=True)
class Assessment:
    id: int
    title: str
    covers: tuple[str, ...]
    residual_risk: str
    decision: str
    status: str
    author: str
    reviewer: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None

    @property
    def in_force(self) -> bool:
        return self.status == "approved" and self.decision == "proceed"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "covers": list(self.covers), "residual_risk": self.residual_risk,
                "decision": self.decision, "status": self.status, "author": self.author, "reviewer": self.reviewer,
                "created": iso(self.created_at), "decided": iso(self.decided_at),
                "retained_until": iso(retained_until(self.created_at, self.decided_at))}


def _norm(element: str) -> str:
    kind, _, value = element.partition(":")
    return f"{kind.strip().lower()}:{' '.join(value.split()).lower()}"


def elements(rt: Runtime, campaign: Campaign) -> set[str]:
    """The initiative's elements for one campaign, from its record and its content: the
    submitted snapshot when there is one (issue 15), else the files on disk (a draft)."""
    from mailer import snapshots
    from mailer.segments import iter_conditions, load_segment

    out = {f"purpose:{campaign.purpose}", "channel:email", f"vendor:{rt.settings.smtp.host.lower()}"}
    if campaign.third_party:
        out.add(_norm(f"third_party:{campaign.third_party}"))
    src = snapshots.source(rt, campaign)
    tpath, spath = src.template, src.segment
    for name in ("template.toml", "body.html.j2", "body.txt.j2"):
        f = tpath / name
        if f.is_file():
            out |= {f"field:{a or b}" for a, b in _FIELD.findall(f.read_text())}
    if spath.is_file():
        seg = load_segment(spath, rt.settings.fields)
        out |= {f"field:{c.field}" for c in iter_conditions(seg.match)}
        if seg.third_party:
            out.add(_norm(f"third_party:{seg.third_party}"))
    return {_norm(e) for e in out}


def new_elements(current: set[str], used: Iterable[set[str]]) -> set[str]:
    """Pure: the elements no approved campaign used."""
    seen: set[str] = set().union(*used) if used else set()
    return current - seen


def refusals(new: set[str], assessments: Iterable[Assessment]) -> list[Refusal]:
    """Pure RSK-1 decision: every new element must be covered by an approved assessment."""
    covered = {c for a in assessments if a.in_force for c in a.covers}
    missing = sorted(new - covered)
    if not missing:
        return []
    return [Refusal(RULE, f"a new marketing initiative without an approved risk assessment: "
                    f"never used by an approved campaign: {', '.join(missing)}",
                    "draft one (mailer risk draft --campaign ID ...) and have a reviewer other than its author "
                    "approve it (mailer risk approve N)")]


def _used(rt: Runtime, exclude: int | None) -> list[set[str]]:
    from mailer.campaigns import APPROVED_STATES

    with rt.engine.connect() as conn:
        rows = conn.execute(select(_C).where(_C.c.status.in_(APPROVED_STATES))).all()
    out = []
    for r in rows:
        if r.id == exclude:
            continue
        try:
            out.append(elements(rt, Campaign(**r._asdict())))
        except (MailerError, OSError):
            continue  # files gone: that campaign's elements can no longer be read
    return out


def _row(r: Any) -> Assessment:
    return Assessment(r.id, r.title, tuple(json.loads(r.covers_json)), r.residual_risk, r.decision, r.status,
                      r.author, r.reviewer, r.created_at, r.decided_at)


def assessments(rt: Runtime) -> list[Assessment]:
    with rt.engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(_R).order_by(_R.c.id))]


def campaign_refusals(rt: Runtime, campaign: Campaign) -> tuple[set[str], list[Refusal]]:
    """(new elements, refusals) for a campaign; no refusal when the gate is switched off."""
    new = new_elements(elements(rt, campaign), _used(rt, campaign.id))
    if not rt.settings.compliance.risk_assessment_required:
        return new, []
    return new, refusals(new, assessments(rt))


def draft(rt: Runtime, by: Principal | None, *, title: str, covers: Iterable[str], phi: str, recipients: str,
          safeguards: str, residual_risk: str, decision: str, notes: str = "") -> Assessment:
    by = acting(by, Action.RISK_DRAFT)
    cov = sorted({_norm(c) for c in covers if c.strip()})
    bad = [c for c in cov if not _ELEMENT.fullmatch(c)]
    if not cov or bad:
        raise InputError(f"--covers: {', '.join(bad) or 'nothing'} is not an initiative element",
                         hint="purpose:NAME, vendor:HOST, third_party:NAME, channel:email or field:NAME; or --campaign ID")
    if residual_risk not in RISKS:
        raise InputError(f"--residual-risk {residual_risk!r}", hint=f"one of {', '.join(RISKS)}")
    if decision not in DECISIONS:
        raise InputError(f"--decision {decision!r}", hint=f"one of {', '.join(DECISIONS)}")
    for name, value in (("--title", title), ("--phi", phi), ("--recipients", recipients), ("--safeguards", safeguards)):
        if not value.strip():
            raise InputError(f"{name} is empty", hint="a risk assessment states what PHI, who receives it and the safeguards")
    now = utcnow()
    details = {"phi": phi.strip(), "recipients": recipients.strip(), "safeguards": safeguards.strip(),
               "notes": notes.strip()}
    with writing(rt.engine) as conn:
        rid = conn.execute(_R.insert().values(
            title=title.strip()[:200], covers_json=json.dumps(cov), details_enc=b"", key_id="",
            residual_risk=residual_risk, decision=decision, status="draft", author=by.name,
            created_at=now)).inserted_primary_key[0]  # type: ignore[index]
        blob = rt.keyring.encrypt_json(details, f"risk:{rid}".encode())
        conn.execute(update(_R).where(_R.c.id == rid).values(details_enc=blob, key_id=key_id_of(blob)))
        record_event(rt, conn, by, "risk-drafted", rules=(RULE,), detail={"risk_id": rid, "covers": cov,
                                                                           "residual_risk": residual_risk})
        row = conn.execute(select(_R).where(_R.c.id == rid)).one()
    return _row(row)


def decide(rt: Runtime, by: Principal | None, risk_id: int, *, approve: bool) -> Assessment:
    """A reviewer other than the author approves or rejects (RSK-2)."""
    by = acting(by, Action.RISK_APPROVE)
    now = utcnow()
    with writing(rt.engine) as conn:
        row = conn.execute(select(_R).where(_R.c.id == risk_id)).first()
        if row is None:
            raise InputError(f"no risk assessment {risk_id}", hint="see mailer risk list")
        if row.status != "draft":
            raise StateError(f"risk assessment {risk_id} is {row.status} already")
        if row.author.strip().lower() == by.name.strip().lower():
            record_event(rt, conn, by, "risk-own-refused", rules=(FOUR_EYES,), detail={"risk_id": risk_id})
            refusal = ComplianceRefusal([Refusal(FOUR_EYES, f"the author ({by.name}) cannot approve their own "
                                                 "risk assessment", "a different reviewer approves it")])
        else:
            refusal = None
            status = "approved" if approve else "rejected"
            conn.execute(update(_R).where(_R.c.id == risk_id).values(status=status, reviewer=by.name, decided_at=now))
            record_event(rt, conn, by, f"risk-{status}", rules=(RULE, FOUR_EYES),
                         detail={"risk_id": risk_id, "author": row.author, "covers": json.loads(row.covers_json)})
        out = conn.execute(select(_R).where(_R.c.id == risk_id)).one()
    if refusal is not None:
        raise refusal
    return _row(out)


def details(rt: Runtime, by: Principal | None, risk_id: int) -> dict[str, Any]:
    """One assessment with its decrypted narrative (viewing is recorded)."""
    by = acting(by, Action.COMPLIANCE_READ)
    with writing(rt.engine) as conn:
        row = conn.execute(select(_R).where(_R.c.id == risk_id)).first()
        if row is None:
            raise InputError(f"no risk assessment {risk_id}")
        record_event(rt, conn, by, "risk-viewed", detail={"risk_id": risk_id})
    return {**_row(row).as_dict(), **rt.keyring.decrypt_json(row.details_enc, f"risk:{risk_id}".encode())}


def list_risk(rt: Runtime, by: Principal | None) -> list[Assessment]:
    by = acting(by, Action.COMPLIANCE_READ)
    found = assessments(rt)
    with writing(rt.engine) as conn:
        record_event(rt, conn, by, "risk-list-viewed", detail={"count": len(found)})
    return found
