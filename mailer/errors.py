"""The one exception tree of mailer; every message carries ids and rule IDs, never PHI.

    MailerError                       base; .rules (spec rule IDs), .hint (how to fix)
    ├── ConfigError                   a bad setting: names the key and the fix (exit 2)
    ├── InputError                    bad user input: names file, line, field (exit 2)
    │   ├── ImportRejected            a CSV import with bad rows (.problems)
    │   ├── SegmentFileError          a segment file that does not parse
    │   └── TemplateError             a template that does not compile
    ├── ComplianceRefusal             a rule refused (.refusals), exit 3
    │   └── RetentionRefusal          a purge inside the retention period (AUTH-9)
    ├── CryptoError                   keys and ciphertexts
    │   ├── KeyFileError              missing, unreadable, or would be overwritten
    │   └── DecryptionError           wrong key, tampered ciphertext
    ├── StoreError                    database problems
    │   └── LedgerIntegrityError      the hash chain or a signature does not verify
    ├── StateError                    an operation not allowed in the current state
    └── TransportError                SMTP delivery (.code: SMTP reply code if any)
        ├── TLSPolicyError            TLS-1..TLS-4 not met: abort before MAIL FROM
        ├── AuthenticationError       530/535 at login: pause, never retry per recipient
        ├── TemporaryDeliveryError    4xx, timeout, disconnect: retry later
        └── PermanentDeliveryError    5xx: do not retry

ConfigError deliberately shares the base with the rest: the CLI maps every MailerError
to an exit code in one place (`exit_code`), so nothing catches and hides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.refusal import Refusal

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3


class MailerError(Exception):
    """Base of every error mailer raises on purpose."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, rules: Sequence[str] = (), hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.rules = tuple(rules)
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.rules:
            text = f"[{', '.join(self.rules)}] {text}"
        if self.hint:
            text = f"{text} (fix: {self.hint})"
        return text


class ConfigError(MailerError):
    exit_code = EXIT_USAGE


class InputError(MailerError):
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class RowProblem:
    """One bad input row: where, which field, why. Never the value itself."""

    line: int
    field: str
    reason: str


@dataclass
class ImportRejected(InputError):
    """Raised with every problem of a file, so one run shows them all."""

    path: str
    problems: list[RowProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        InputError.__init__(
            self,
            f"{self.path}: {len(self.problems)} bad row(s); nothing was imported",
            hint="correct the rows listed, or pass --skip-invalid to import only the good rows",
        )

    def __str__(self) -> str:
        return self.message


class SegmentFileError(InputError):
    pass


class TemplateError(InputError):
    pass


class ComplianceRefusal(MailerError):
    """A compliance gate said no; carries the refusals that explain who and why."""

    exit_code = EXIT_REFUSED

    def __init__(self, refusals: Sequence[Refusal], message: str = "") -> None:
        rules = tuple(dict.fromkeys(r.rule for r in refusals))
        text = message or "; ".join(r.reason for r in refusals) or "refused"
        hint = "; ".join(r.fix for r in refusals if r.fix)
        super().__init__(text, rules=rules, hint=hint)
        self.refusals = tuple(refusals)


class RetentionRefusal(ComplianceRefusal):
    pass


class CryptoError(MailerError):
    pass


class KeyFileError(CryptoError):
    exit_code = EXIT_USAGE


class DecryptionError(CryptoError):
    pass


class StoreError(MailerError):
    pass


class LedgerIntegrityError(StoreError):
    pass


class StateError(MailerError):
    exit_code = EXIT_USAGE


class CampaignBusy(StateError):
    """Another run is sending this campaign right now: nothing was done (exit 1)."""

    exit_code = EXIT_FAILURE


class TransportError(MailerError):
    def __init__(
        self, message: str, *, code: int | None = None, rules: Sequence[str] = (), hint: str = ""
    ) -> None:
        super().__init__(message, rules=rules, hint=hint)
        self.code = code


class TLSPolicyError(TransportError):
    pass


class TemporaryDeliveryError(TransportError):
    pass


class AuthenticationError(TransportError):
    """The relay refused the login (530/534/535): every message would fail the same way,
    and retrying locks the account, so the run pauses on the first one."""


class PermanentDeliveryError(TransportError):
    pass


def exit_code(err: BaseException) -> int:
    """The CLI's exit code for an error: 2 usage/input, 3 refused, 1 anything else."""
    if isinstance(err, MailerError):
        return err.exit_code
    return EXIT_FAILURE
