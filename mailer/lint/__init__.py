"""PHI lint for campaign templates (issues 5 and 13): static checks at approval, a rendered
check per message.

    lint_template_dir(path, settings)   one template folder
    lint_paths(paths, settings)         folders, folders of templates, single .j2 files
    check_rendered(parts, recipient_values=..., settings=...)   send-time check, per message

Every finding carries a stable code from CODES (code -> rule ID, severity, hint); the
severity is `error` (blocks), `review` (acknowledged one by one at approval, see
mailer.reviews) or `info`. Both checks read text through mailer.lint.normalize and share
the Safe Harbor detectors (mailer.lint.patterns, mailer.lint.detect).
"""

from typing import TYPE_CHECKING, Any

from mailer.lint.findings import CODES, UNWAIVABLE, Finding, has_errors
from mailer.lint.runner import lint_paths, lint_template_dir
from mailer.lint.settings import (
    ALLOWED_CONTEXT,
    CLINICAL_WORDS,
    PURPOSES,
    LintSettings,
    from_app_settings,
)

if TYPE_CHECKING:
    from mailer.lint.rendered import check_rendered


def __getattr__(name: str) -> Any:
    """check_rendered loads on first use: `mailer lint` never needs it (issue 13, start-up)."""
    if name == "check_rendered":
        from mailer.lint.rendered import check_rendered

        return check_rendered
    raise AttributeError(f"module 'mailer.lint' has no attribute {name!r}")


__all__ = [
    "ALLOWED_CONTEXT",
    "CLINICAL_WORDS",
    "CODES",
    "PURPOSES",
    "UNWAIVABLE",
    "Finding",
    "LintSettings",
    "check_rendered",
    "from_app_settings",
    "has_errors",
    "lint_paths",
    "lint_template_dir",
]
