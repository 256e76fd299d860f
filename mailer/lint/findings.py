"""Findings: one stable code per check, tied to a rule ID in shared/spec/rules.md.

Codes never change meaning once shipped: approvals, waivers and the ledger refer to
them. A message names a variable or a pattern class, never a value from a template or
a recipient (style rule 5), because lint output lands in CI logs and tickets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

ERROR = "error"  # blocks: recipient data, a high-confidence identifier, missing/invisible opt-out, tracking
REVIEW = "review"  # a reviewer acknowledges it, one by one with a reason, at approval (issue 13)
INFO = "info"  # advice; nothing to do
SEVERITIES = (ERROR, REVIEW, INFO)

# code -> (rule ID, severity, one-line fix hint)
CODES: dict[str, tuple[str, str, str]] = {
    # PHI-1: only the allowlisted context may be resolved; fail closed when unsure.
    "PHI100": ("PHI-1", ERROR, "fix the syntax error; a template that does not parse cannot be verified"),
    "PHI101": ("PHI-1", ERROR, "use only contact, center, campaign and unsubscribe_url"),
    "PHI102": ("PHI-1", ERROR, "use only contact.first_name/preferred_name/language, center.name/postal_address/phone/website, campaign.name"),
    "PHI103": ("PHI-1", ERROR, "name an allowed field directly, e.g. {{ contact.first_name }}"),
    "PHI104": ("PHI-1", ERROR, "remove the expression; underscore attributes and Jinja globals are sandbox escapes"),
    "PHI105": ("PHI-1", ERROR, "fix template.toml: subject, from_name and a known purpose; waivers need code, reason and reviewer"),
    "PHI106": ("PHI-1", ERROR, "inline the content; the lint verifies one template folder at a time"),
    "PHI107": ("PHI-1", ERROR, "simplify the template: it exceeds a resource budget (mailer.sandbox: loops, sizes, powers, time)"),
    # PHI-2: clinical and identifying data never in headers, URLs or alt text.
    "PHI201": ("PHI-2", ERROR, "remove the field from the subject, preheader and From name"),
    "PHI202": ("PHI-2", ERROR, "keep recipient data out of URLs, image sources and alt text"),
    "PHI206": ("PHI-2", ERROR, "use {{ unsubscribe_url }} only as a whole link target; never pass it inside another URL"),
    "PHI203": ("PHI-2", INFO, "consider a subject without the recipient's name (lock screens show it)"),
    "PHI204": ("PHI-2", ERROR, "the From name identifies the center (SPAM-1), never the recipient"),
    "PHI205": ("PHI-2", REVIEW, "use a neutral subject: naming the condition reveals why the recipient was chosen"),
    "PHI210": ("PHI-2", ERROR, "the message was blocked: remove the clinical value from the template or context"),
    # PHI-3: Safe Harbor identifiers in literal text (rules.md section 3 table, rows A-R).
    "PHI301": ("PHI-3", ERROR, "use {{ center.phone }}; other phone or fax numbers may identify a person"),
    "PHI322": ("PHI-3", REVIEW, "check the number is an organization's, not a person's, then acknowledge"),
    "PHI302": ("PHI-3", INFO, "check that the toll-free number belongs to an organization, then waive"),
    "PHI303": ("PHI-3", ERROR, "use an address at the sender's domain; others may identify a person"),
    "PHI304": ("PHI-3", INFO, "check that the role mailbox belongs to an organization, then waive"),
    "PHI305": ("PHI-3", ERROR, "remove the social security number"),
    "PHI306": ("PHI-3", ERROR, "remove the medical record number or patient ID"),
    "PHI307": ("PHI-3", ERROR, "remove the health plan member, subscriber or policy number"),
    "PHI308": ("PHI-3", ERROR, "remove the account or card number"),
    "PHI309": ("PHI-3", ERROR, "remove the license or certificate number"),
    "PHI310": ("PHI-3", ERROR, "remove the vehicle identifier or plate number"),
    "PHI311": ("PHI-3", ERROR, "remove the device identifier or serial number"),
    "PHI312": ("PHI-3", ERROR, "remove person-keyed query parameters (patient=, email=) from the URL"),
    "PHI313": ("PHI-3", ERROR, "remove the IP address"),
    "PHI314": ("PHI-3", REVIEW, "check the biometric wording refers to no one, then waive"),
    "PHI315": ("PHI-3", ERROR, "remove the prescription or other unique code"),
    "PHI316": ("PHI-3", ERROR, "use {{ center.postal_address }}; other street addresses may identify a person"),
    "PHI317": ("PHI-3", INFO, "check the ZIP code or county refers to no one, then waive"),
    "PHI318": ("PHI-3", ERROR, "greet with {{ contact.first_name }} or a generic word, never a literal name"),
    "PHI319": ("PHI-3", ERROR, "remove the person's name; a patient is never named in template text"),
    "PHI320": ("PHI-3", ERROR, "remove the identifying number or code (accession, encounter, claim, group, DICOM UID, personal code)"),
    "PHI321": ("PHI-3", REVIEW, "check the number or code identifies no one (a personal code, a reference number), then acknowledge"),
    # PHI-5: dates keep the year only; ages above 89 become "90 or older".
    "PHI501": ("PHI-5", ERROR, "remove the date of birth, service or visit (an event date is fine)"),
    "PHI502": ("PHI-5", ERROR, "write \"90 or older\" instead of the age"),
    "PHI503": ("PHI-5", ERROR, "keep the year only: the full date implies an age over 89"),
    # PHI-7: no third-party pixels or scripts in patient email.
    "PHI701": ("PHI-7", ERROR, "remove the script, iframe or embed; email clients must not run code"),
    "PHI702": ("PHI-7", ERROR, "remove the third-party pixel or tracker (no BAA covers it)"),
    "PHI703": ("PHI-7", ERROR, "host the stylesheet or font on the center's domain, or inline it: a third party sees every open"),
    "PHI704": ("PHI-7", REVIEW, "host the image on the center's domain, or check a BAA covers the host that sees every open"),
    # SPAM: CAN-SPAM essentials that the template itself must carry.
    "SPAM301": ("SPAM-3", ERROR, "set advertisement_notice = true and label the message as an advertisement"),
    "SPAM302": ("SPAM-3", INFO, "the subject reads as promotional: label it as an advertisement or reword it"),
    "SPAM401": ("SPAM-4", ERROR, "add <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a> to the HTML part (STD-6)"),
    "SPAM402": ("SPAM-4", ERROR, "add {{ unsubscribe_url }} to the text part (STD-6)"),
    "SPAM801": ("SPAM-8", ERROR, "add {{ center.postal_address }} to the footer"),
    # DIS / TST: disguised marketing, sponsors, testimonials.
    "DIS201": ("DIS-2", ERROR, "remove the fake Re:/Fwd: prefix"),
    "DIS202": ("DIS-2", ERROR, "do not pose as a clinical or personal message (\"your results\", \"your diagnosis\")"),
    "DIS203": ("DIS-2", ERROR, "use the center's name as From, not a clinician's"),
    "DIS301": ("DIS-3", ERROR, "name the sponsor, e.g. \"Sponsored by Acme Pharma\""),
    "DIS302": ("DIS-3", ERROR, "label the paid block as an advertisement and name its sponsor, or remove it"),
    "DIS303": ("DIS-1", REVIEW, "a paid block makes this third-party marketing (DIS-1): check the purpose and authorization"),
    "TST101": ("TST-1", REVIEW, "check the authorization covering this quote or story (a registered asset), or anonymise it"),
    "TST102": ("TST-1", REVIEW, "check the authorization covering this patient image (a registered asset), or use a stock or staff photo"),
}

# A waiver cannot silence these: the template compiler refuses the same things, so a
# waiver would only hide why the build fails (PHI-1 is fail-closed).
UNWAIVABLE = frozenset({"PHI100", "PHI101", "PHI102", "PHI103", "PHI104", "PHI105", "PHI106", "PHI107", "PHI210"})


@dataclass(frozen=True)
class Finding:
    """One lint result. `message` never carries a patient or template value."""

    path: str
    line: int
    column: int
    code: str
    severity: str  # "error" | "review" | "info"
    rule: str  # spec rule ID, e.g. "PHI-1"
    message: str
    hint: str
    waived: bool = False
    waiver_reason: str = ""
    waiver_reviewer: str = ""

    def format(self) -> str:
        text = f"{self.path}:{self.line}:{self.column}: {self.code} {self.message}"
        if self.severity != ERROR:
            text = f"{self.path}:{self.line}:{self.column}: {self.code} [{self.severity}] {self.message}"
        if self.waived:
            text += f" [waived by {self.waiver_reviewer}: {self.waiver_reason}]"
        return text

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "rule": self.rule,
            "hint": self.hint,
            "waived": self.waived,
        }
        if self.waived:
            data["waiver_reason"] = self.waiver_reason
            data["waiver_reviewer"] = self.waiver_reviewer
        return data

    @property
    def needs_review(self) -> bool:
        """A `review` finding no waiver covers: acknowledged one by one at approval."""
        return self.severity == REVIEW and not self.waived

    @property
    def key(self) -> str:
        """Stable identity for an acknowledgement: file name, code, line (no template text)."""
        name = self.path.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{name}:{self.line}:{self.code}"

    @property
    def blocking(self) -> bool:
        """True for an error that no waiver covers."""
        return self.severity == ERROR and not self.waived


def finding(code: str, path: str, line: int, column: int, message: str) -> Finding:
    """Build a finding; rule, severity and hint come from CODES so they stay consistent."""
    rule, severity, hint = CODES[code]
    return Finding(
        path=path,
        line=max(1, line),
        column=max(1, column),
        code=code,
        severity=severity,
        rule=rule,
        message=f"{message} ({rule})",
        hint=hint,
    )


def waive(f: Finding, *, reason: str, reviewer: str) -> Finding:
    return replace(f, waived=True, waiver_reason=reason, waiver_reviewer=reviewer)


def has_errors(findings: Iterable[Finding]) -> bool:
    """A findings list fails when any non-waived finding is an error."""
    return any(f.blocking for f in findings)


def sort_unique(findings: Iterable[Finding]) -> list[Finding]:
    """Stable order (path, line, column, code) without duplicates."""
    seen: dict[tuple[str, int, int, str, str], Finding] = {}
    for f in findings:
        seen.setdefault((f.path, f.line, f.column, f.code, f.message), f)
    return sorted(seen.values(), key=lambda f: (f.path, f.line, f.column, f.code, f.message))
