"""One recipient's details, shown to a person on purpose (issue 16; SEC-5, minimum necessary).

Everywhere else a recipient is a contact id, a count or a hash. Seeing who stands behind
one is a separate action: the account's roles must allow `contacts.view`, the person says
why, and an `access` ledger entry records the account, the reason, the contact id and its
address hash (never the address, a name or a clinical value). Clinical fields are not
decrypted here at all: the page says how many are on file, not what they hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailer.accounts.permissions import Action, Principal, require
from mailer.errors import InputError
from mailer.ledger import ACCESS, Event
from mailer.models import utcnow
from mailer.redact import scrub
from mailer.runtime import Runtime

REASON_MIN, REASON_MAX = 8, 300


@dataclass(frozen=True)
class AuthorizationLine:
    id: int
    scope: str
    status: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class RecipientDetail:
    contact_id: int
    email_hash: str
    email: str
    identity: dict[str, str]
    language: str
    newsletter_opt_in: bool
    created_at: datetime
    clinical_on_file: bool
    authorizations: list[AuthorizationLine]
    seq: int  # the access entry that recorded this view


def check_reason(reason: str) -> str:
    """The reason as recorded; refused (SEC-5) when missing or too short to mean anything.
    An address or a long number typed into it (phone, record number) is not kept."""
    reason = scrub(" ".join((reason or "").split()))
    if len(reason) < REASON_MIN:
        raise InputError("say why you need this recipient's details before they are shown", rules=("SEC-5",),
                         hint=f"at least {REASON_MIN} characters, e.g. 'patient called about the 3 May email, "
                              "ticket 4411'; the reason is recorded in the ledger with your account")
    if len(reason) > REASON_MAX:
        raise InputError(f"the reason is longer than {REASON_MAX} characters", rules=("SEC-5",),
                         hint="say it briefly; a ticket number is enough context")
    return reason


def view_recipient(rt: Runtime, principal: Principal, contact_id: int, reason: str, *,
                   channel: str = "web") -> RecipientDetail:
    """Decrypt one contact's identity for `principal` and record why (refused without a reason)."""
    from mailer.authorizations import is_valid
    from mailer.store.auth_records import authorizations_for
    from mailer.store.contacts import contacts_by_id, decrypt_identity

    require(principal, Action.CONTACTS_VIEW)
    reason = check_reason(reason)
    row = contacts_by_id(rt.engine, [contact_id]).get(contact_id)
    if row is None:
        raise InputError(f"contact {contact_id} does not exist", hint="check the contact id")
    view = decrypt_identity(rt.keyring, row)
    now = utcnow()
    lines = [AuthorizationLine(int(r.id or 0), r.scope, v.status, tuple(v.rules))
             for r in authorizations_for(rt.engine, rt.keyring, [contact_id]).get(contact_id, [])
             for v in (is_valid(r, r.scope, now),)]
    seq = rt.ledger.append([Event(kind=ACCESS, outcome="recipient-viewed", actor=principal.name,
                                  contact_id=contact_id, recipient_hash=row.email_hash, rule_ids=("SEC-5",),
                                  detail={"channel": channel, "reason": reason,
                                          "account_id": principal.account_id})])[0]
    return RecipientDetail(contact_id=contact_id, email_hash=row.email_hash, email=view.email,
                           identity=dict(view.identity), language=view.language,
                           newsletter_opt_in=bool(row.newsletter_opt_in), created_at=row.created_at,
                           clinical_on_file=row.phi_enc is not None, authorizations=lines, seq=seq)
