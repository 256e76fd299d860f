"""Wiring: settings -> engine, keyring, ledger, transport, composer. Built once, passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from mailer.compose import Composer
from mailer.config import Settings
from mailer.crypto import Keyring
from mailer.db import NotInitialised, head_revision, make_engine, migrate, readiness, where
from mailer.errors import KeyFileError
from mailer.ledger import Ledger
from mailer.transport import SMTPTransport, TLSPolicy

if TYPE_CHECKING:
    from mailer.accounts.permissions import Principal


@dataclass
class Runtime:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)
    _keyring: Keyring | None = field(default=None, repr=False)
    principal: Principal | None = None  # who this process acts for (mailer.accounts)
    #: `mailer init` creates the database; every other command needs it initialised
    #: ("not initialised: run `mailer init`", exit 2, and no file is created).
    initialising: bool = False

    @cached_property
    def engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        engine = make_engine(self.settings.database.url, create=self.initialising)
        if not self.initialising:
            self._require_schema(engine)
        return engine

    def _require_schema(self, engine: Engine) -> None:
        """Initialised, and at the newest schema (a newer mailer migrates on first use)."""
        rev = readiness(engine)
        if rev is None:
            engine.dispose()
            raise NotInitialised(f"not initialised: the database at {where(engine)} has no mailer schema; "
                                 "run `mailer init`")
        if rev != head_revision():
            migrate(engine)

    @cached_property
    def keyring(self) -> Keyring:
        if self._keyring is not None:
            return self._keyring
        try:
            return Keyring.load(self.settings.keys.file)
        except KeyFileError as err:
            if "not found" not in err.message or self.initialising:
                raise
            ids = self.key_ids_in_use()
            if not ids:
                raise
            raise KeyFileError(
                f"key file {self.settings.keys.file} not found, and this database was initialised with key ids "
                f"{', '.join(ids)}: its data can only be read with that key file",
                hint=f"restore that key file to {self.settings.keys.file} (or set keys.file to where it is); "
                "`mailer init` would not help: new keys cannot read this data") from None

    def key_ids_in_use(self) -> list[str]:
        """Key ids the database's rows and ledger rely on (empty: a database with no data)."""
        from sqlalchemy import text

        found: set[str] = set()
        with self.engine.connect() as conn:
            for sql in ("SELECT DISTINCT key_id FROM contact", "SELECT DISTINCT key_id FROM ledger"):
                try:
                    found |= {r[0] for r in conn.execute(text(sql)) if r[0]}
                except Exception:  # noqa: BLE001 - a table of an older schema: nothing there
                    conn.rollback()
        return sorted(found)

    @cached_property
    def ledger(self) -> Ledger:
        from mailer.ledger_anchor import anchor_path

        return Ledger(self.engine, self.keyring, anchor_file=anchor_path(self.settings.keys.file))

    def act_as(self, principal: Principal | None) -> None:
        """Every ledger entry written from now on names this authenticated account."""
        self.principal = principal
        self.ledger.acting = principal

    def migrate(self) -> None:
        migrate(self.engine)

    def center_context(self) -> dict[str, str]:
        return self.settings.center.context()

    def transport(self) -> SMTPTransport:
        s = self.settings.smtp
        pw = s.password()
        return SMTPTransport(
            host=s.host, port=s.port, policy=TLSPolicy(s.tls, s.ca_file), connections=s.connections,
            timeout=s.timeout, local_hostname=s.local_hostname, username=s.username,
            password=pw.get_secret_value() if pw else "",
        )

    def composer(self, campaign_id: int) -> Composer:
        snd = self.settings.sender
        return Composer(
            from_address=snd.from_address, envelope_from=self.settings.envelope_from,
            list_id=snd.list_id, reply_to=snd.reply_to, campaign_id=campaign_id,
            signer=self.dkim_signer(),
        )

    def dkim_signer(self):  # type: ignore[no-untyped-def]
        d = self.settings.dkim
        if not d.enabled:
            return None
        from mailer.dkim import make_signer

        return make_signer(self.keyring, domain=d.domain, selector=d.selector)

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
