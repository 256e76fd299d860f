"""The roles x actions table, cell by cell: every role, every action, an expected answer.

The expectation below is written out by hand (a second copy, on purpose): a change to
PERMISSIONS that is not also made here fails, so nobody widens a role by accident.
"""

from __future__ import annotations

import dataclasses

import pytest

from mailer.accounts.permissions import (
    NEVER,
    PERMISSIONS,
    ROLES,
    Action,
    PermissionDenied,
    Principal,
    Role,
    allowed,
    require,
)
from mailer.errors import EXIT_REFUSED, MailerError

A = Action
ADMIN, MARKETER, STAFF, REVIEWER, SERVICE = "admin", "marketer", "staff", "reviewer", "service"

EXPECTED: dict[Action, set[str]] = {
    A.CONTACTS_IMPORT: {MARKETER, STAFF},
    A.CONTACTS_BACKUP: {ADMIN},
    A.CONTACTS_RESTORE: {ADMIN},
    A.CONTACTS_VIEW: {STAFF, REVIEWER},
    A.AUTHORIZATIONS_GRANT: {STAFF, REVIEWER},
    A.AUTHORIZATIONS_REVOKE: {MARKETER, STAFF, REVIEWER},
    A.AUTHORIZATIONS_IMPORT: {MARKETER, STAFF},
    A.AUTHORIZATIONS_PURGE: {ADMIN},
    A.SEGMENT_REGISTER: {MARKETER},
    A.TEMPLATE_REGISTER: {MARKETER, STAFF},
    A.CAMPAIGN_CREATE: {MARKETER, STAFF},
    A.CAMPAIGN_SUBMIT: {MARKETER, STAFF},
    A.CAMPAIGN_CHECK: {MARKETER, STAFF, REVIEWER, SERVICE},
    A.CAMPAIGN_APPROVE: {REVIEWER},
    A.CAMPAIGN_REJECT: {REVIEWER},
    A.CAMPAIGN_SCHEDULE: {MARKETER, STAFF},
    A.CAMPAIGN_SEND: {MARKETER, STAFF, SERVICE},
    A.CAMPAIGN_PAUSE: {MARKETER, STAFF, REVIEWER, SERVICE},
    A.CAMPAIGN_RESUME: {MARKETER, STAFF},
    A.CAMPAIGN_CANCEL: {MARKETER, STAFF, REVIEWER},
    A.CAMPAIGN_RUN: {SERVICE},
    A.BOUNCES_PROCESS: {ADMIN, SERVICE},
    A.VENDORS_MANAGE: {ADMIN},
    A.KEYS_ROTATE: {ADMIN},
    A.USERS_MANAGE: {ADMIN},
    A.LEDGER_READ: {ADMIN, REVIEWER},
    A.LEDGER_EXPORT: {ADMIN, REVIEWER},
    A.LEDGER_EVIDENCE: {REVIEWER},
    A.LEDGER_PURGE: {ADMIN},
    A.COMPLIANCE_READ: {ADMIN, REVIEWER},
    A.TRAINING_RECORD: {ADMIN, REVIEWER},
    A.ASSETS_READ: {MARKETER, STAFF, REVIEWER},
    A.ASSETS_REGISTER: {MARKETER, STAFF},
    A.ASSETS_REVOKE: {MARKETER, STAFF, REVIEWER},
    A.RISK_DRAFT: {MARKETER, STAFF, REVIEWER},
    A.RISK_APPROVE: {REVIEWER},
    A.COMPLAINTS_RECORD: {MARKETER, STAFF, REVIEWER},
    A.COMPLAINTS_RESOLVE: {REVIEWER},
    A.FORMS_PRINT: {MARKETER, STAFF, REVIEWER},
    A.REVIEW_SIGN: {REVIEWER},
}

CELLS = [(role, action) for role in ROLES for action in Action]


def _p(*roles: str, name: str = "someone") -> Principal:
    return Principal(7, name, frozenset(roles), "session", os_user="tester")


def test_the_expectation_covers_every_action_and_the_table_every_role() -> None:
    assert set(EXPECTED) == set(Action)
    assert set(PERMISSIONS) == set(ROLES) == {r.value for r in Role}


@pytest.mark.parametrize(("role", "action"), CELLS, ids=[f"{r}-{a.value}" for r, a in CELLS])
def test_one_cell_of_the_table(role: str, action: Action) -> None:
    p = _p(role)
    if role in EXPECTED[action]:
        assert require(p, action) is p
        assert p.can(action)
    else:
        with pytest.raises(PermissionDenied) as exc:
            require(p, action)
        e = exc.value
        assert isinstance(e, MailerError) and e.exit_code == EXIT_REFUSED
        assert e.rules == (("SEC-6",) if action in (A.CAMPAIGN_APPROVE, A.CAMPAIGN_REJECT) else ("SEC-10",))
        assert action.value in e.message and "someone" in e.message
        # the refusal names who may do it, never how to act as someone else
        assert "--actor" not in str(e) and "MAILER_USER" not in str(e)


@pytest.mark.parametrize("role", sorted(NEVER))
def test_never_list_holds(role: str) -> None:
    assert not (PERMISSIONS[role] & NEVER[role])


def test_the_worker_can_send_but_never_approve() -> None:
    worker = _p(SERVICE, name="worker")
    require(worker, A.CAMPAIGN_RUN)
    require(worker, A.CAMPAIGN_SEND)
    for action in (A.CAMPAIGN_APPROVE, A.CAMPAIGN_REJECT, A.USERS_MANAGE):
        with pytest.raises(PermissionDenied):
            require(worker, action)


def test_roles_add_up() -> None:
    both = _p(MARKETER, REVIEWER)
    for action in Action:
        assert allowed(both.roles, action) == bool(EXPECTED[action] & {MARKETER, REVIEWER})


def test_nobody_signed_in_is_refused_with_sec_1() -> None:
    with pytest.raises(PermissionDenied) as exc:
        require(None, A.CAMPAIGN_CREATE)
    assert exc.value.rules == ("SEC-1",)
    assert "mailer login" in exc.value.hint


def test_unknown_roles_grant_nothing() -> None:
    assert not any(allowed({"superuser", "root", ""}, a) for a in Action)


def test_principal_is_frozen_and_records_how_it_signed_in() -> None:
    p = _p(REVIEWER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"  # type: ignore[misc]
    assert p.ledger_detail() == {"account_id": 7, "via": "session", "os_user": "tester"}
