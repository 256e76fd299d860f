"""Accounts and roles: who acts is authenticated, everywhere (issue 12; SEC-1, SEC-3, SEC-6, SEC-7).

    from mailer.accounts.permissions import Action, Principal, PermissionDenied, require
    from mailer.accounts import service as accounts

Identity: a frozen `Principal(account_id, name, roles, via, os_user)`; `via` is how it
signed in ("password", "token", "session", "service"). Build one only through the service:
    accounts.authenticate(rt, name, password, totp_code, os_user=...) -> SignIn(principal, must_change_password)
    accounts.open_session(rt, sign_in, os_user=...) -> IssuedToken(token shown once; stored as a hash)
    accounts.resolve_token(rt, token, os_user=...) -> Principal  (API token "mlt_..." or session "mls_...")
    accounts.close_session(rt, token);  accounts.service_principal(rt, "worker")  (in-process service)
Failures raise AuthenticationFailed (exit 3): one message whatever the cause, so nobody learns
whether an account exists; the cause goes to the ledger (kind "access").

Permission: `require(principal, Action.CAMPAIGN_APPROVE)` raises PermissionDenied (a MailerError,
exit 3, rule SEC-10, or SEC-6 for approve/reject, SEC-1 when nobody is signed in). The roles x
actions table is `permissions.PERMISSIONS`; roles: admin, marketer, staff, reviewer, service.
Four eyes (author != approver) stays in mailer.approvals; it compares account names.

Administration (each takes the acting Principal `by`, checks USERS_MANAGE, writes an access entry):
    create_account(rt, by, name, roles, password=None) -> (AccountInfo, one_time_password, TotpEnrolment|None)
    bootstrap_admin(rt) (fresh database only), set_disabled, reset_password, set_roles, enrol_totp,
    issue_api_token(rt, by, name, days=...), revoke_tokens, list_accounts, account_info, change_password.
Ledger: `rt.act_as(principal)` makes every entry the process appends carry actor=account name
and detail["by"] = {"account_id", "via", "os_user"}. Settings: [accounts] in the config file.
"""

from mailer.accounts.permissions import (
    ROLES,
    Action,
    PermissionDenied,
    Principal,
    Role,
    allowed,
    require,
)

__all__ = ["ROLES", "Action", "PermissionDenied", "Principal", "Role", "allowed", "require"]
