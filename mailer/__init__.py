"""mailer: HIPAA-aware email campaigns. The names most callers need, in one place."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailer.config import Settings, load_settings
    from mailer.crypto import Keyring
    from mailer.errors import (
        ComplianceRefusal,
        ConfigError,
        InputError,
        MailerError,
        TemplateError,
        TransportError,
    )
    from mailer.ledger import Event, Ledger
    from mailer.refusal import Refusal
    from mailer.runtime import Runtime

# Imported on first use, so `import mailer.lint` (an editor's or a pre-commit hook's
# `mailer lint`) does not load the database layer (issue 13).
_LAZY = {
    "Settings": "mailer.config", "load_settings": "mailer.config", "Keyring": "mailer.crypto",
    "ComplianceRefusal": "mailer.errors", "ConfigError": "mailer.errors", "InputError": "mailer.errors",
    "MailerError": "mailer.errors", "TemplateError": "mailer.errors", "TransportError": "mailer.errors",
    "Event": "mailer.ledger", "Ledger": "mailer.ledger", "Refusal": "mailer.refusal", "Runtime": "mailer.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mailer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ComplianceRefusal",
    "ConfigError",
    "Event",
    "InputError",
    "Keyring",
    "Ledger",
    "MailerError",
    "Refusal",
    "Runtime",
    "Settings",
    "TemplateError",
    "TransportError",
    "load_settings",
]
__version__ = "0.1.0"
