"""Start and stop the local sink: certificates, the listening socket, the settings to paste."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailer.devcerts import DevCerts, make_dev_certs
from mailer.devsink import start_sink
from mailer.sink.files import EmlWriter

CERT_DAYS = 30  # a stack left running keeps a valid certificate; every start renews it


class PortInUse(OSError):
    """The address is taken: one clear line for the user, not a traceback."""


def smtp_settings(host: str, port: int, ca_file: Path) -> str:
    """The `[smtp]` table a config needs to send through this sink."""
    return (f'[smtp]\nhost = "{host}"\nport = {port}\ntls = "starttls"\nca_file = "{ca_file}"\n'
            "operated_by_covered_entity = true  # the sink is on this machine: no vendor, no BAA (BAA-1)\n")


def _check_free(host: str, port: int) -> None:
    """Bind once ourselves, so a taken port is one clear error before aiosmtpd starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(e.errno, f"port {port} on {host} is already in use") from None
            raise


@dataclass
class LocalSink:
    """A running sink: `start()` returns the port; `stop()` closes it."""

    out: Path
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "localhost"  # the name clients connect with; in the certificate
    certs_dir: Path | None = None
    report: Callable[[str], None] = print
    certs: DevCerts | None = field(default=None, init=False)
    writer: EmlWriter | None = field(default=None, init=False)
    _controller: Any = field(default=None, init=False, repr=False)

    def start(self) -> int:
        if self.port:
            _check_free(self.host, self.port)
        folder = self.certs_dir or self.out / "tls"
        self.certs = make_dev_certs(folder, hostname=self.hostname, days=CERT_DAYS, reuse_ca=True)
        self.writer = EmlWriter(self.out, report=self.report)
        try:
            self._controller, self.port = start_sink(
                self.writer, cert_file=self.certs.cert_file, key_file=self.certs.key_file,  # type: ignore[arg-type]
                host=self.host, port=self.port)
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(e.errno, f"port {self.port} on {self.host} is already in use") from None
            raise
        return self.port

    def settings(self) -> str:
        assert self.certs is not None, "start() first"
        return smtp_settings(self.hostname, self.port, self.certs.ca_file.resolve())

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
