"""Preflight: every gate a campaign must pass before a message leaves, in one report.

Gates, each with its rule ID and the fix (rules.md):
    approval   SEC-6   a valid approval by someone other than the author, for the current hashes
    files      SEC-6   (warning) files edited on disk since submission are a new version, not sent
    purpose    MKT-*   the classification's needs are met (third party named, matching scope)
    lint       PHI-*.. the template lint has no error that a reviewed waiver does not cover
    segment    SEG-*   the segment plan is allowed (and, with counts, SEG-4 has authorized contacts)
    relay      BAA-1   the SMTP relay maps to a vendor with a BAA in force, or is the covered entity's
    postal     SPAM-8  the center's postal address is set
    unsubscribe STD-3  the unsubscribe base URL is https and yields a valid one-click header
    tls        TLS-1   TLS is required (STARTTLS or implicit), certificates verified
    login      SEC-8   a relay username comes with a non-empty password variable
    connection SEC-8   (`check --connect` only) the relay answers, TLS and AUTH complete
    dkim       STD-4   a DKIM key is present when DKIM is enabled (a warning when disabled)

`require` is what every send path calls (`sending.send`, the scheduler, the worker): it
first sends a campaign whose files changed back to `submitted` (SEC-6), then refuses with
ComplianceRefusal (exit 3) while any gate fails, and writes the decision to the ledger.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailer import approvals, campaigns, snapshots, vendors
from mailer.errors import ComplianceRefusal, MailerError, StateError
from mailer.ledger import CAMPAIGN, REFUSAL, Event
from mailer.models import Campaign, utcnow
from mailer.refusal import Refusal
from mailer.runtime import Runtime
from mailer.unsubscribe import list_unsubscribe_refusals

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Gate:
    name: str
    rule: str  # the gate's rule ID (the first failing one when it fails)
    ok: bool
    detail: str  # ids, hashes and counts only
    refusals: tuple[Refusal, ...] = ()
    severity: str = ERROR  # a failing WARNING gate does not block

    @property
    def blocking(self) -> bool:
        return not self.ok and self.severity == ERROR

    @property
    def fix(self) -> str:
        return "; ".join(dict.fromkeys(r.fix for r in self.refusals if r.fix))

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.name, "rule": self.rule, "ok": self.ok, "severity": self.severity,
                "detail": self.detail, "fix": self.fix, "refusals": [r.as_dict() for r in self.refusals]}


@dataclass
class Report:
    campaign_id: int
    status: str
    gates: list[Gate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(g.blocking for g in self.gates)

    def refusals(self) -> list[Refusal]:
        return [r for g in self.gates if g.blocking for r in g.refusals]

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign_id, "status": self.status, "ok": self.ok,
                "gates": [g.as_dict() for g in self.gates]}


def _gate(name: str, rule: str, refusals: list[Refusal], passed: str, *, severity: str = ERROR) -> Gate:
    if refusals:
        return Gate(name, refusals[0].rule, False, "; ".join(r.reason for r in refusals), tuple(refusals), severity)
    return Gate(name, rule, True, passed, (), severity)


def _guard(name: str, rule: str, fn: Callable[[], Gate]) -> Gate:
    """A gate whose inputs cannot be read fails closed, naming why (never a value)."""
    try:
        return fn()
    except MailerError as err:
        r = Refusal((err.rules or (rule,))[0], f"{name}: {err.message}", err.hint or "fix the input and re-check")
        return Gate(name, r.rule, False, r.reason, (r,))
    except ImportError as err:
        r = Refusal(rule, f"{name}: checker unavailable ({err.name})", "install mailer completely")
        return Gate(name, rule, False, r.reason, (r,))


# --------------------------------------------------------------------------- the gates


def approval_gate(rt: Runtime, c: Campaign) -> Gate:
    a = approvals.latest(rt, c.id or 0)
    refusals = approvals.approval_refusals(c, a, campaigns.current_hashes(c, rt))
    return _gate("approval", "SEC-6", refusals,
                 f"approved by {a.reviewer} (approval {a.id}) for template {c.template_hash[:12]}, "
                 f"segment {c.segment_hash[:12]}" if a else "")


def purpose_gate(rt: Runtime, c: Campaign) -> Gate:
    cls, refusals = approvals.classification_of(rt, c)
    what = f"{c.purpose}: HIPAA {cls.hipaa}" + (f" ({cls.exception})" if cls.exception else "") + \
        f", CAN-SPAM {'commercial' if cls.commercial else 'transactional'}" + \
        (f", every recipient needs a '{cls.scope}' authorization" if cls.scope else "")
    rule = next((r for r in cls.rules if r.startswith("MKT")), "MKT-1")
    return _gate("purpose", rule, refusals, what)


def lint_gate(rt: Runtime, c: Campaign) -> Gate:
    findings = approvals.lint_findings(rt, snapshots.source(rt, c).template)
    blocking = [f for f in findings if f.severity == ERROR and not f.waived]
    waived = sum(1 for f in findings if f.waived)
    refusals = []
    for rule in dict.fromkeys(f.rule for f in blocking):
        codes = sorted({f.code for f in blocking if f.rule == rule})
        refusals.append(Refusal(rule, f"template lint {', '.join(codes)}",
                                f"fix the template (mailer lint {c.template}); waivers need a reviewer"))
    return _gate("lint", "PHI-1", refusals, f"no blocking finding ({waived} waived, "
                 f"{sum(1 for f in findings if f.severity == WARNING and not f.waived)} warning(s))")


def segment_gate(rt: Runtime, c: Campaign, *, count: bool) -> Gate:
    from mailer.segments import load_segment, plan_segment

    if count:
        from mailer.sending import check_segment

        _plan, counts, refusals = check_segment(rt, snapshots.source(rt, c).segment)
        return _gate("segment", "SEG-1", refusals, f"segment {counts.segment}: {counts.matched} matched of "
                     f"{counts.considered} considered, {counts.suppressed} suppressed")
    plan = plan_segment(load_segment(snapshots.source(rt, c).segment, rt.settings.fields))
    return _gate("segment", "SEG-1", list(plan.refusals), f"segment {plan.segment.name}: plan allowed "
                 "(SEG-4 counts are checked when the audience is frozen)")


def relay_gate(rt: Runtime, at: datetime) -> Gate:
    s = rt.settings.smtp
    refusals = vendors.relay_refusals(vendors.for_host(rt.engine, s.host), host=s.host,
                                      operated_by_covered_entity=s.operated_by_covered_entity, at=at)
    how = "operated by the covered entity" if s.operated_by_covered_entity else "BAA in force"
    return _gate("relay", "BAA-1", refusals, f"relay {s.host}: {how}")


_POSTAL = re.compile(r"\d")


def postal_gate(rt: Runtime) -> Gate:
    addr = rt.settings.center.postal_address.strip()
    refusals = []
    if not addr:
        refusals.append(Refusal("SPAM-8", "the center's postal address is not set",
                                "set center.postal_address (street address, registered PO box or CMRA box)"))
    elif not _POSTAL.search(addr) or len(addr) < 10:
        refusals.append(Refusal("SPAM-8", "the center's postal address is not a complete address",
                                "set center.postal_address to a street address, PO box or CMRA box with ZIP"))
    return _gate("postal", "SPAM-8", refusals, "postal address set")


def unsubscribe_gate(rt: Runtime) -> Gate:
    from urllib.parse import urlsplit

    base = rt.settings.unsubscribe.base_url
    parts = urlsplit(base)
    refusals = []
    if parts.scheme != "https" or not parts.netloc:
        refusals.append(Refusal("STD-3", "the unsubscribe base URL is not https",
                                "set unsubscribe.base_url to an https URL that `mailer serve` answers"))
    else:
        sample = base + "A" * 22
        refusals += list_unsubscribe_refusals([("List-Unsubscribe", f"<{sample}>"),
                                               ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")])
    return _gate("unsubscribe", "STD-3", refusals, f"one-click https unsubscribe at {parts.netloc}, "
                 f"tokens valid {rt.settings.unsubscribe.token_days} days")


def tls_gate(rt: Runtime) -> Gate:
    s = rt.settings.smtp
    refusals = []
    if s.tls not in ("starttls", "implicit"):
        refusals.append(Refusal("TLS-1", f"TLS mode {s.tls!r} is not required TLS", "smtp.tls = implicit or starttls"))
    elif s.tls == "starttls" and s.port == 465:
        refusals.append(Refusal("TLS-1", "port 465 is implicit TLS, but smtp.tls is starttls", 'smtp.tls = "implicit"'))
    elif s.tls == "implicit" and s.port in (25, 587):
        refusals.append(Refusal("TLS-1", f"port {s.port} speaks STARTTLS, but smtp.tls is implicit", 'smtp.tls = "starttls"'))
    if s.ca_file is not None and not Path(s.ca_file).is_file():
        refusals.append(Refusal("TLS-3", "smtp.ca_file does not exist", "point smtp.ca_file at the relay's CA bundle"))
    return _gate("tls", "TLS-1", refusals, f"{s.tls} required, certificates verified, TLS 1.2 minimum")


def files_gate(rt: Runtime, c: Campaign) -> Gate:
    """SEC-6: the submitted content is what is sent; files edited on disk since are a new
    version (a warning naming both hashes, never a silent change or a revoked approval)."""
    if not snapshots.has_snapshot(rt, c):
        return Gate("files", "SEC-6", True, "campaign made before content snapshots: the files on disk are used")
    drifts = snapshots.drift(c)
    edited = [d for d in drifts if d.on_disk is not None]
    if not edited:
        where = "; ".join(d.message(c.id or 0) for d in drifts) or "the files on disk match it"
        return Gate("files", "SEC-6", True, f"sending the submitted content; {where}", severity=WARNING)
    refusals = tuple(Refusal("SEC-6", d.message(c.id or 0), f"mailer campaign submit {c.id} (then a new approval), "
                             "or restore the file") for d in edited)
    return Gate("files", "SEC-6", False, "; ".join(r.reason for r in refusals), refusals, WARNING)


def login_gate(rt: Runtime) -> Gate:
    """SEC-8: a relay login with an empty password fails every message; say so by name now."""
    s = rt.settings.smtp
    if not s.username:
        return Gate("login", "SEC-8", True, "no relay login configured")
    refusals = []
    if s.password() is None:
        refusals.append(Refusal("SEC-8", f"smtp.username is set but the password variable {s.password_env} is empty "
                                "or not set", f"export {s.password_env}=... in the sender's environment "
                                "(or set smtp.password_env to the variable that holds it)"))
    return _gate("login", "SEC-8", refusals, f"relay login as {s.username} (password from {s.password_env})")


def connection_gate(rt: Runtime) -> Gate:
    """The probe a send makes before claiming anyone: connect, TLS, AUTH (`check --connect`)."""
    import asyncio

    from mailer.errors import TransportError

    transport = rt.transport()

    async def go() -> str:
        try:
            return await transport.probe()
        finally:
            await transport.close()

    try:
        agreed = asyncio.run(go())
    except TransportError as err:
        rule = (err.rules or ("SEC-8",))[0]
        return Gate("connection", rule, False, err.message,
                    (Refusal(rule, err.message, err.hint or "check smtp.host, smtp.port and the network path"),))
    return Gate("connection", "SEC-8", True, f"connected to {transport.relay}: {agreed}"
                + (", login accepted" if transport.username else ""))


def dkim_gate(rt: Runtime) -> Gate:
    d = rt.settings.dkim
    if not d.enabled:
        return Gate("dkim", "STD-4", False, "DKIM signing is disabled",
                    (Refusal("STD-4", "DKIM signing is disabled",
                             "mailer keys add-dkim --type rsa --type ed25519, publish what `mailer dkim` prints, set dkim.enabled = true"),), WARNING)
    refusals = []
    if not rt.keyring.dkim_private_pem:
        refusals.append(Refusal("STD-4", "dkim.enabled but the key file holds no DKIM key",
                                "mailer keys add-dkim --type rsa --type ed25519, then publish what `mailer dkim` prints"))
    if not d.domain or not d.selector:
        refusals.append(Refusal("STD-4", "dkim.domain and dkim.selector must be set", "set both in [dkim]"))
    from mailer.dkim import selectors

    keys = ", ".join(f"{sel}._domainkey.{d.domain} ({kind})" for sel, kind, _ in
                     selectors(rt.keyring.dkim_private_pem, d.selector)) if not refusals else ""
    return _gate("dkim", "STD-4", refusals, f"DKIM keys: {keys}")


def assets_gate(rt: Runtime, c: Campaign, at: datetime) -> Gate:
    from mailer.compliance import assets

    template = snapshots.source(rt, c).template  # the submitted content (issue 15)
    used = assets.packet(rt, template, at)
    return _gate("assets", "TST-5", assets.template_refusals(rt, template, at),
                 f"{len(used)} asset(s), each with a consent covering email" if used else "no patient asset used")


def risk_gate(rt: Runtime, c: Campaign) -> Gate:
    from mailer.compliance import risk

    new, refusals = risk.campaign_refusals(rt, c)
    return _gate("risk", "RSK-1", refusals, f"new initiative, covered by an approved risk assessment: "
                 f"{', '.join(sorted(new))}" if new else "no new purpose, vendor, channel or data field")


def evaluate(rt: Runtime, campaign: Campaign, *, at: datetime | None = None, count: bool = False,
             connect: bool = False) -> Report:
    """Every gate, whatever the others say (one report). `count` evaluates the audience (SEG-4)."""
    at = at or utcnow()
    report = Report(campaign.id or 0, campaign.status)
    report.gates = [
        _guard("approval", "SEC-6", lambda: approval_gate(rt, campaign)),
        _guard("files", "SEC-6", lambda: files_gate(rt, campaign)),
        _guard("purpose", "MKT-1", lambda: purpose_gate(rt, campaign)),
        _guard("lint", "PHI-1", lambda: lint_gate(rt, campaign)),
        _guard("assets", "TST-5", lambda: assets_gate(rt, campaign, at)),  # issue 17
        _guard("risk", "RSK-1", lambda: risk_gate(rt, campaign)),  # issue 17
        _guard("segment", "SEG-1", lambda: segment_gate(rt, campaign, count=count)),
        _guard("relay", "BAA-1", lambda: relay_gate(rt, at)),
        _guard("postal", "SPAM-8", lambda: postal_gate(rt)),
        _guard("unsubscribe", "STD-3", lambda: unsubscribe_gate(rt)),
        _guard("tls", "TLS-1", lambda: tls_gate(rt)),
        _guard("login", "SEC-8", lambda: login_gate(rt)),
        _guard("dkim", "STD-4", lambda: dkim_gate(rt)),
    ]
    if connect:
        report.gates.append(_guard("connection", "SEC-8", lambda: connection_gate(rt)))
    return report


def check(rt: Runtime, campaign_id: int, *, actor: str | None = None, count: bool = True,
          connect: bool = False) -> Report:
    """`mailer campaign check`: invalidate on changed content, then report every gate
    (`connect`: also open a connection to the relay, as a send does first)."""
    c = campaigns.invalidate_if_changed(rt, campaigns.get(rt, campaign_id), actor=actor)
    return evaluate(rt, c, count=count, connect=connect)


def require(rt: Runtime, campaign: Campaign, *, actor: str | None = None) -> None:
    """Raise ComplianceRefusal naming each failing gate's rule ID and fix."""
    if campaign.status in ("paused", "cancelled") and not campaigns.stopped_by_run(campaign):
        raise StateError(f"campaign {campaign.id} is {campaign.status}",
                         hint="resume it first: mailer campaign resume ID" if campaign.status == "paused" else "")
    campaign = campaigns.invalidate_if_changed(rt, campaign, actor=actor)
    report = evaluate(rt, campaign)
    failing = [g for g in report.gates if g.blocking]
    if failing:
        rt.ledger.append([Event(kind=REFUSAL, outcome="preflight", campaign_id=campaign.id, actor=actor,
                                template_hash=campaign.template_hash,
                                rule_ids=tuple(dict.fromkeys(r.rule for g in failing for r in g.refusals)),
                                detail={"gates": [g.name for g in failing]})])
        raise ComplianceRefusal(report.refusals())
    rt.ledger.append([Event(kind=CAMPAIGN, outcome="preflight-ok", campaign_id=campaign.id, actor=actor,
                            template_hash=campaign.template_hash,
                            rule_ids=tuple(g.rule for g in report.gates if g.ok),
                            detail={"segment_hash": campaign.segment_hash,
                                    "warnings": [g.rule for g in report.gates if not g.ok]})])
