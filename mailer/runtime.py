"""Wiring: settings -> engine, keyring, ledger, transport, composer. Built once, passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from mailer.compose import Composer
from mailer.config import Settings
from mailer.crypto import Keyring
from mailer.db import make_engine, migrate
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

    @cached_property
    def engine(self) -> Engine:
        return self._engine or make_engine(self.settings.database.url)

    @cached_property
    def keyring(self) -> Keyring:
        return self._keyring or Keyring.load(self.settings.keys.file)

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
