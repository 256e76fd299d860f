"""Typed settings from one TOML file plus environment overrides, validated once at start-up.

Components never read the environment themselves: `load_settings` is called where the
pieces are wired (the CLI) and the result is passed in. Secrets (the SMTP password) are
read from the variable the config names and never printed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from mailer.errors import ConfigError

ENV_CONFIG = "MAILER_CONFIG"
ENV_DATABASE_URL = "MAILER_DATABASE_URL"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = "sqlite:///mailer.db"


class KeySettings(_Section):
    file: Path = Path("keys.json")


class CenterSettings(_Section):
    name: str = "Example Imaging Center"
    postal_address: str = ""  # SPAM-8: street address, registered PO box or CMRA box
    phone: str = ""
    website: str = ""
    timezone: str = "UTC"
    staff: str = ""  # staff physicians' names, separated by ";": the PHI lint never takes them for patients

    def context(self) -> dict[str, str]:
        """The `center` a template sees."""
        return {"name": self.name, "postal_address": self.postal_address, "phone": self.phone,
                "website": self.website}

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like America/Chicago") from None
        return value


class SenderSettings(_Section):
    from_address: str = "news@example.org"
    from_name: str = "Example Imaging Center"
    envelope_from: str = ""  # bounce address; defaults to from_address
    reply_to: str = ""
    list_id: str = "newsletter.example.org"  # RFC 2919; carries no PHI

    @field_validator("from_address", "envelope_from", "reply_to")
    @classmethod
    def _addr(cls, value: str) -> str:
        if value and ("@" not in value or any(c in value for c in " <>,")):
            raise ValueError("must be a bare address like news@example.org")
        return value


class SMTPSettings(_Section):
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit"] = "starttls"  # TLS-1: never plaintext
    ca_file: Path | None = None  # trust a private relay's CA; verification stays on (TLS-3)
    username: str = ""
    password_env: str = "MAILER_SMTP_PASSWORD"  # noqa: S105 - the variable's name, not a password
    local_hostname: str = "mailer.localdomain"
    connections: int = Field(default=4, ge=1, le=64)
    timeout: float = Field(default=30.0, gt=0)
    operated_by_covered_entity: bool = False  # BAA-1: relay run by the covered entity itself

    @field_validator("ca_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    def password(self) -> SecretStr | None:
        value = os.environ.get(self.password_env, "")
        return SecretStr(value) if value else None


class UnsubscribeSettings(_Section):
    base_url: str = "https://example.org/u/"  # STD-3: must be https
    token_days: int = Field(default=60, ge=30)  # SPAM-4: works >= 30 days after sending

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("must be an https:// URL that `mailer serve` answers (STD-3), e.g. https://example.org/u/")
        return value


class ContactsSettings(_Section):
    #: staging only: accept addresses at reserved names (.test, .invalid, .localhost, .example)
    allow_reserved_domains: bool = False


class LimitSettings(_Section):
    messages_per_second: float = Field(default=0.0, ge=0)  # 0 = unlimited
    per_domain_per_minute: dict[str, int] = Field(default_factory=dict)
    max_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    pause_after_failures: int = Field(default=20, ge=1)
    claim_batch: int = Field(default=32, ge=1, le=1000)  # the in-flight window
    # a sender whose heartbeat is silent this long is taken for dead: its in-flight rows become
    # uncertain (on its own host a dead process is seen at once); several senders: issue 20
    lease_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)


FieldKind = Literal["list", "date", "text"]
_DEFAULT_CLINICAL: dict[str, FieldKind] = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}


class FieldSettings(_Section):
    """Which contact columns are PHI (clinical) and how they are typed."""

    clinical: dict[str, FieldKind] = Field(default_factory=lambda: dict(_DEFAULT_CLINICAL))
    list_separator: str = ";"


class DKIMSettings(_Section):
    enabled: bool = False
    domain: str = ""
    selector: str = ""


class BounceSettings(_Section):
    """Bounce and complaint processing (issue 19, BNC-1, BNC-2, STD-7)."""

    domain: str = ""  # VERP return path bounces+TOKEN@domain; empty: MAIL FROM is sender.envelope_from
    local_part: str = "bounces"
    max_message_bytes: int = Field(default=1_048_576, ge=4096)  # larger reports are rejected, unread
    soft_limit: int = Field(default=3, ge=1)  # N soft bounces ...
    soft_window_days: int = Field(default=30, ge=1)  # ... within M days suppress the address
    complaint_rate_threshold: float = Field(default=0.003, gt=0, le=1)  # STD-7: pause recurring runs
    batch: int = Field(default=200, ge=1, le=5000)  # messages per commit when fetching
    receiver_host: str = "127.0.0.1"
    receiver_port: int = Field(default=2525, ge=1, le=65535)
    tls_cert_file: Path | None = None  # the receiver's STARTTLS certificate (PEM)
    tls_key_file: Path | None = None
    maildir: Path | None = None
    imap_host: str = ""
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_username: str = ""
    imap_password_env: str = "MAILER_IMAP_PASSWORD"  # noqa: S105 - the variable's name, not a password
    imap_folder: str = "INBOX"
    imap_ca_file: Path | None = None
    fetch_from: Literal["", "maildir", "imap"] = ""  # what `mailer worker` fetches on its own
    fetch_minutes: int = Field(default=5, ge=1)

    @field_validator("tls_cert_file", "tls_key_file", "maildir", "imap_ca_file", mode="before")
    @classmethod
    def _empty_path(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if value and ("@" in value or any(c in value for c in " <>,+")):
            raise ValueError("must be a bare domain like bounces.example.org")
        return value.lower()

    @field_validator("local_part")
    @classmethod
    def _local(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (the token follows a '+')")
        return value

    def imap_password(self) -> SecretStr | None:
        value = os.environ.get(self.imap_password_env, "")
        return SecretStr(value) if value else None
class AccountSettings(_Section):
    """Sign-in policy (issue 12): lockout, password rules, session and token lifetimes."""

    lockout_attempts: int = Field(default=5, ge=1, le=100)  # failed sign-ins before a lock
    lockout_minutes: int = Field(default=15, ge=1)
    password_min_length: int = Field(default=12, ge=8, le=128)
    session_idle_minutes: int = Field(default=15, ge=1, le=24 * 60)  # SEC-3: idle sessions end
    session_max_hours: int = Field(default=12, ge=1, le=24 * 30)
    api_token_days: int = Field(default=90, ge=1, le=3650)
    totp_issuer: str = "mailer"


class WebSettings(_Section):
    """The web workspace (issue 16): session lifetimes (SEC-3 automatic logoff), sign-in rate,
    and where the create form finds template folders and segment files."""

    idle_timeout: int = Field(default=15 * 60, ge=1, le=24 * 3600)  # seconds without a request
    absolute_timeout: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)  # seconds after sign-in
    signin_per_minute: int = Field(default=10, ge=1, le=1000)  # sign-in POSTs per client address
    secure_cookies: Literal["auto", "always", "never"] = "auto"  # auto: Secure when the request is https
    templates_dir: Path = Path("templates")
    segments_dir: Path = Path("segments")


class ComplianceSettings(_Section):
    """The compliance program's records (issue 17): training validity, which gates are on."""

    training_course: str = "HIPAA marketing"  # the course the TRN-1 gate asks for
    training_valid_days: int = Field(default=365, ge=1, le=3 * 366)  # refresher at least annually
    # The gates are off until a center switches them on (config/mailer.example.toml does):
    training_required: bool = False  # TRN-1: author and approver hold current training
    risk_assessment_required: bool = False  # RSK-1: a new initiative needs an approved assessment
    expiring_days: int = Field(default=30, ge=1, le=366)  # the "expiring" views look this far ahead
    form_version: str = "2026-12"  # the authorization form mailer prints (AUTH-1..AUTH-3)


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    keys: KeySettings = KeySettings()
    center: CenterSettings = CenterSettings()
    sender: SenderSettings = SenderSettings()
    smtp: SMTPSettings = SMTPSettings()
    unsubscribe: UnsubscribeSettings = UnsubscribeSettings()
    limits: LimitSettings = LimitSettings()
    fields: FieldSettings = FieldSettings()
    dkim: DKIMSettings = DKIMSettings()
    bounces: BounceSettings = BounceSettings()
    accounts: AccountSettings = AccountSettings()
    web: WebSettings = WebSettings()
    contacts: ContactsSettings = ContactsSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    source: str = "<defaults>"

    @property
    def envelope_from(self) -> str:
        return self.sender.envelope_from or self.sender.from_address

    @property
    def unsubscribe_is_https(self) -> bool:
        return urlsplit(self.unsubscribe.base_url).scheme == "https"


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, f in model.model_fields.items():
        if name == "source":
            continue
        keys.append(prefix + name)
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, prefix + name + ".")
    return keys


def _nearest(key: str) -> str:
    """The setting a misspelt key most likely meant ('' when nothing is close)."""
    import difflib

    known = _known_keys(Settings)
    section = key.rpartition(".")[0]
    same = [k for k in known if k.rpartition(".")[0] == section] or known
    got = difflib.get_close_matches(key, same, n=1, cutoff=0.6) or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return got[0] if got else ""


def settings_from_mapping(data: Mapping[str, Any], *, source: str = "<mapping>") -> Settings:
    """Validated settings; every problem of the file is reported at once (ConfigError)."""
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                near = _nearest(key)
                lines.append(f"setting '{key}' is unknown" + (f"; did you mean '{near}'?" if near else ""))
            else:
                msg = e["msg"].removeprefix("Value error, ")
                lines.append(f"setting '{key}': {msg}")
        head = f"{source}: " + (lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n  " + "\n  ".join(lines))
        raise ConfigError(head, hint="see config/mailer.example.toml for every setting and its accepted values") from None


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from PATH (or $MAILER_CONFIG), then $MAILER_DATABASE_URL on top."""
    env = os.environ if env is None else env
    chosen = path or env.get(ENV_CONFIG)
    data: dict[str, Any] = {}
    source = "<defaults>"
    if chosen:
        p = Path(chosen)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} not found", hint="pass --config PATH or set MAILER_CONFIG") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {p} is a folder, not a file",
                              hint="pass the settings file itself, e.g. --config config/mailer.toml") from None
        except PermissionError:
            raise ConfigError(f"config file {p}: permission denied", hint="make it readable by this user") from None
        except UnicodeDecodeError as err:
            line = p.read_bytes()[:err.start].count(b"\n") + 1
            raise ConfigError(f"{p}:{line}: not UTF-8 text", hint="save the settings file as UTF-8") from None
        except OSError as err:
            raise ConfigError(f"config file {p}: cannot read ({err.strerror or type(err).__name__})") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{p}: not valid TOML: {err}") from None
        source = str(p)
        base = p.parent
        for section, key in (("keys", "file"), ("smtp", "ca_file"), ("bounces", "tls_cert_file"),
                             ("bounces", "tls_key_file"), ("bounces", "maildir"), ("bounces", "imap_ca_file"),
                             ("web", "templates_dir"), ("web", "segments_dir")):
            part = data.get(section, {})
            if isinstance(part, dict) and part.get(key) and not Path(part[key]).is_absolute():
                part[key] = str(base / part[key])
        db = data.get("database", {})
        if isinstance(db, dict) and str(db.get("url", "")).startswith("sqlite:///") and not db["url"].startswith("sqlite:////"):
            rel = db["url"][len("sqlite:///"):]
            if rel and rel != ":memory:":
                db["url"] = "sqlite:///" + str(base / rel)
    if env.get(ENV_DATABASE_URL):
        data.setdefault("database", {})["url"] = env[ENV_DATABASE_URL]
    return settings_from_mapping(data, source=source)
