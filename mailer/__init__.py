"""mailer: HIPAA-aware email campaigns. The names most callers need, in one place."""

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
