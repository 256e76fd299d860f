"""Who may do what: ONE table of roles x actions, the acting Principal, and `require`.

Every state-changing command, web handler and the worker call `require(principal, action)`
before they act. The table below is the only place a permission is granted; it is read as
data (and tested cell by cell), never patched by callers. Rule IDs:

    SEC-1   unique user identification: every action runs as one account (no shared
            identities, every API token tied to an account)
    SEC-10  role-based access: an action is allowed only if one of the account's roles
            grants it in PERMISSIONS (mailer's rule; 164.312(a)(1) access control)
    SEC-6   four eyes: approving needs `reviewer` and another account than the author
            (the author check itself lives in mailer.approvals)

Roles: admin (accounts, keys, vendors, retention, bounce processing), marketer (audiences and campaigns),
staff (service announcements and the front desk's authorization paperwork), reviewer
(compliance: approves, rejects, records and revokes authorizations, reads and exports the
ledger, looks up one recipient with a reason), service (the worker: sends
what was approved and takes bounces in, never approves).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from mailer.errors import EXIT_REFUSED, MailerError


class Role(StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    STAFF = "staff"
    REVIEWER = "reviewer"
    SERVICE = "service"


ROLES: tuple[str, ...] = tuple(r.value for r in Role)
PERSON_ROLES: tuple[str, ...] = (Role.ADMIN, Role.MARKETER, Role.STAFF, Role.REVIEWER)
MFA_ROLES: frozenset[str] = frozenset({Role.ADMIN, Role.REVIEWER})  # SEC-7: TOTP required


class Action(StrEnum):
    """Everything an account can be allowed to do. Values are stable (ledger, web, tests)."""

    CONTACTS_IMPORT = "contacts.import"
    CONTACTS_BACKUP = "contacts.backup"
    CONTACTS_RESTORE = "contacts.restore"
    CONTACTS_VIEW = "contacts.view"  # show one recipient's details (PHI): asks a reason, recorded (SEC-5)
    AUTHORIZATIONS_GRANT = "authorizations.grant"
    AUTHORIZATIONS_REVOKE = "authorizations.revoke"
    AUTHORIZATIONS_IMPORT = "authorizations.import"
    AUTHORIZATIONS_PURGE = "authorizations.purge"
    SEGMENT_REGISTER = "segment.register"
    TEMPLATE_REGISTER = "template.register"
    CAMPAIGN_CREATE = "campaign.create"
    CAMPAIGN_SUBMIT = "campaign.submit"
    CAMPAIGN_CHECK = "campaign.check"  # preflight and freeze: record what a send would do
    CAMPAIGN_APPROVE = "campaign.approve"
    CAMPAIGN_REJECT = "campaign.reject"
    CAMPAIGN_SCHEDULE = "campaign.schedule"
    CAMPAIGN_SEND = "campaign.send"  # send an approved campaign now (preflight still gates it)
    CAMPAIGN_PAUSE = "campaign.pause"
    CAMPAIGN_RESUME = "campaign.resume"
    CAMPAIGN_CANCEL = "campaign.cancel"
    CAMPAIGN_RUN = "campaign.run"  # the worker fires scheduled, approved campaigns
    BOUNCES_PROCESS = "bounces.process"  # take bounces/complaints in: suppresses addresses, may pause (BNC-1, STD-7)
    VENDORS_MANAGE = "vendors.manage"
    KEYS_ROTATE = "keys.rotate"
    USERS_MANAGE = "users.manage"
    LEDGER_READ = "ledger.read"
    LEDGER_EXPORT = "ledger.export"
    LEDGER_EVIDENCE = "ledger.evidence"
    LEDGER_PURGE = "ledger.purge"
    # The compliance program's records (issue 17)
    COMPLIANCE_READ = "compliance.read"  # training, risk assessments, complaints, quarterly reviews
    TRAINING_RECORD = "training.record"
    ASSETS_READ = "assets.read"
    ASSETS_REGISTER = "assets.register"  # register a patient's testimonial, story or image with consent
    ASSETS_REVOKE = "assets.revoke"  # record a consent's written revocation
    RISK_DRAFT = "risk.draft"
    RISK_APPROVE = "risk.approve"  # RSK-2: never the assessment's own author (checked in compliance.risk)
    COMPLAINTS_RECORD = "complaints.record"
    COMPLAINTS_RESOLVE = "complaints.resolve"
    FORMS_PRINT = "authorizations.form"
    REVIEW_SIGN = "review.sign"  # sign off the quarterly review (QRV-1)


A = Action
_CAMPAIGN_WORK = frozenset({A.CAMPAIGN_CREATE, A.CAMPAIGN_SUBMIT, A.CAMPAIGN_CHECK, A.CAMPAIGN_SCHEDULE,
                            A.CAMPAIGN_SEND, A.CAMPAIGN_PAUSE, A.CAMPAIGN_RESUME, A.CAMPAIGN_CANCEL})
_PAPERWORK = frozenset({A.CONTACTS_IMPORT, A.AUTHORIZATIONS_REVOKE, A.AUTHORIZATIONS_IMPORT})

_RECORDS_WORK = frozenset({A.ASSETS_READ, A.ASSETS_REGISTER, A.ASSETS_REVOKE, A.RISK_DRAFT,
                           A.COMPLAINTS_RECORD, A.FORMS_PRINT})

# THE table. A role not listed for an action may not do it.
PERMISSIONS: dict[str, frozenset[Action]] = {
    Role.ADMIN: frozenset({A.USERS_MANAGE, A.KEYS_ROTATE, A.VENDORS_MANAGE, A.CONTACTS_BACKUP,
                           A.CONTACTS_RESTORE, A.AUTHORIZATIONS_PURGE, A.LEDGER_READ, A.LEDGER_EXPORT,
                           A.LEDGER_PURGE, A.BOUNCES_PROCESS, A.COMPLIANCE_READ, A.TRAINING_RECORD}),
    # A marketer does not record signed authorizations one by one: the person whose audience
    # grows with them is not the one who vouches for the signature (issue 16: reviewer, staff).
    Role.MARKETER: _CAMPAIGN_WORK | _PAPERWORK | _RECORDS_WORK | {A.SEGMENT_REGISTER, A.TEMPLATE_REGISTER},
    Role.STAFF: _CAMPAIGN_WORK | _PAPERWORK | _RECORDS_WORK | {A.TEMPLATE_REGISTER, A.AUTHORIZATIONS_GRANT,
                                                              A.CONTACTS_VIEW},
    Role.REVIEWER: frozenset({A.CAMPAIGN_APPROVE, A.CAMPAIGN_REJECT, A.CAMPAIGN_CHECK, A.CAMPAIGN_PAUSE,
                              A.CAMPAIGN_CANCEL, A.AUTHORIZATIONS_GRANT, A.AUTHORIZATIONS_REVOKE,
                              A.CONTACTS_VIEW, A.LEDGER_READ, A.LEDGER_EXPORT, A.LEDGER_EVIDENCE,
                              A.COMPLIANCE_READ, A.TRAINING_RECORD, A.ASSETS_READ, A.ASSETS_REVOKE, A.RISK_DRAFT,
                              A.RISK_APPROVE, A.COMPLAINTS_RECORD, A.COMPLAINTS_RESOLVE, A.FORMS_PRINT,
                              A.REVIEW_SIGN}),
    Role.SERVICE: frozenset({A.CAMPAIGN_RUN, A.CAMPAIGN_SEND, A.CAMPAIGN_CHECK, A.CAMPAIGN_PAUSE,
                             A.BOUNCES_PROCESS}),
}

# Actions the table must never grant to a role, whatever edits it gets (tested).
NEVER: dict[str, frozenset[Action]] = {
    Role.SERVICE: frozenset({A.CAMPAIGN_APPROVE, A.CAMPAIGN_REJECT, A.USERS_MANAGE, A.KEYS_ROTATE,
                             A.CONTACTS_VIEW}),
    Role.MARKETER: frozenset({A.CAMPAIGN_APPROVE, A.USERS_MANAGE, A.AUTHORIZATIONS_GRANT, A.CONTACTS_VIEW,
                              A.RISK_APPROVE, A.REVIEW_SIGN, A.TRAINING_RECORD}),
    Role.STAFF: frozenset({A.CAMPAIGN_APPROVE, A.USERS_MANAGE, A.RISK_APPROVE, A.REVIEW_SIGN, A.TRAINING_RECORD}),
}

VIA = ("password", "token", "session", "service")


@dataclass(frozen=True)
class Principal:
    """Who acts, as authenticated: never built from a name someone typed.

    `via` says how the account proved itself: password (just signed in), token (an API
    token, e.g. MAILER_TOKEN), session (a CLI or web session token), service (an in-process
    service identity the program itself vouches for). `os_user` is the operating-system
    user of a CLI process, recorded beside the account in the ledger.
    """

    account_id: int
    name: str
    roles: frozenset[str]
    via: str
    os_user: str | None = None
    token_id: int | None = field(default=None, compare=False)

    def has(self, role: str) -> bool:
        return role in self.roles

    def can(self, action: Action) -> bool:
        return allowed(self.roles, action)

    def ledger_detail(self) -> dict[str, object]:
        """What every ledger entry written by this principal records beside its name."""
        d: dict[str, object] = {"account_id": self.account_id, "via": self.via}
        if self.os_user:
            d["os_user"] = self.os_user
        return d


class PermissionDenied(MailerError):
    """The signed-in account's roles do not allow the action (exit 3, a compliance refusal)."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, *, rule: str = "SEC-10", action: str = "", hint: str = "") -> None:
        super().__init__(message, rules=(rule,), hint=hint)
        self.action = action


def allowed(roles: Iterable[str], action: Action) -> bool:
    """Pure: does any of these roles grant the action?"""
    return any(action in PERMISSIONS.get(r, frozenset()) for r in roles)


def roles_for(action: Action) -> tuple[str, ...]:
    return tuple(r for r in ROLES if action in PERMISSIONS[r])


def require(principal: Principal | None, action: Action) -> Principal:
    """Raise PermissionDenied unless an authenticated principal's roles allow `action`.

    The message names the action and the roles that may do it, never a way to act as
    someone else."""
    if principal is None:
        raise PermissionDenied(f"{action.value} needs a signed-in account", rule="SEC-1", action=action.value,
                               hint="sign in: mailer login (scripts: MAILER_TOKEN or mailer login --password-stdin)")
    if not allowed(principal.roles, action):
        who = ", ".join(sorted(principal.roles)) or "no role"
        may = ", ".join(roles_for(action)) or "no role"
        rule = "SEC-6" if action in (A.CAMPAIGN_APPROVE, A.CAMPAIGN_REJECT) else "SEC-10"
        raise PermissionDenied(f"account {principal.name} ({who}) may not {action.value}; "
                               f"allowed for: {may}", rule=rule, action=action.value)
    return principal
