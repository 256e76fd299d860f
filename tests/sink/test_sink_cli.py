"""`mailer sink` as a user runs it: a separate process, its printed settings pasted into a config."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from mailer.transport import tls_context

MAILER = [sys.executable, "-m", "mailer.cli.app"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    def __init__(self, proc: subprocess.Popen[str], banner: str) -> None:
        self.proc = proc
        self.banner = banner

    def smtp(self) -> dict[str, object]:
        table = self.banner[self.banner.index("[smtp]"):self.banner.index("waiting for messages")]
        return tomllib.loads(table)["smtp"]

    def next_line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()


def start(*args: str) -> Running:
    proc = subprocess.Popen([*MAILER, "sink", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("waiting for messages"):
            return Running(proc, "".join(lines))
    raise AssertionError(f"sink did not start: {''.join(lines)} {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = start("--out", str(tmp_path / "out"), "--port", str(_free_port()))
    try:
        yield r
    finally:
        r.proc.send_signal(signal.SIGINT)
        r.proc.wait(timeout=20)


def _message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "news@riverside-imaging.example"
    msg["To"] = to
    msg["Subject"] = "Evening hours"
    msg["Message-ID"] = "<42.abc@riverside-imaging.example>"
    msg.set_content("Hello from the walk-through.")
    return msg


def test_pasted_settings_send_over_verified_starttls_and_the_message_is_kept_privately(
        running: Running, tmp_path: Path) -> None:
    smtp = running.smtp()
    assert smtp["tls"] == "starttls" and smtp["host"] == "localhost"
    ca_file = Path(str(smtp["ca_file"]))
    assert ca_file.is_file()

    async def send() -> None:
        # the client mailer uses: certificate and hostname verified against the printed CA (TLS-3)
        client = aiosmtplib.SMTP(hostname=str(smtp["host"]), port=int(str(smtp["port"])), start_tls=True,
                                 tls_context=tls_context(ca_file))
        async with client:
            await client.send_message(_message("jane.roe@patients.example"))

    asyncio.run(send())
    line = running.next_line()
    assert re.fullmatch(r"received <42\.abc@riverside-imaging\.example> \d+ bytes -> 000001\.eml\n", line), line
    assert "jane.roe" not in running.banner + line
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    eml = out / "000001.eml"
    assert stat.S_IMODE(eml.stat().st_mode) == 0o600
    assert b"Hello from the walk-through." in eml.read_bytes()


def test_a_client_that_does_not_trust_the_throwaway_ca_is_refused(running: Running) -> None:
    smtp = running.smtp()

    async def send() -> None:
        client = aiosmtplib.SMTP(hostname="localhost", port=int(str(smtp["port"])), start_tls=True,
                                 tls_context=tls_context(None))
        async with client:
            await client.send_message(_message("someone@patients.example"))

    with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError)):
        asyncio.run(send())


def test_a_taken_port_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([*MAILER, "sink", "--out", str(tmp_path / "o"), "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"mailer sink: port {port} on 127.0.0.1 is already in use; stop the other server or pick another port with --port"]
    assert "Traceback" not in res.stdout + res.stderr


def test_restart_renews_the_certificate_and_keeps_the_ca(tmp_path: Path) -> None:
    from cryptography import x509

    first = start("--out", str(tmp_path / "o"), "--port", "0")
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(timeout=20)
    tls = tmp_path / "o" / "tls"
    ca1, leaf1 = (tls / "dev-ca.pem").read_bytes(), (tls / "sink-cert.pem").read_bytes()
    second = start("--out", str(tmp_path / "o"), "--port", "0")
    second.proc.send_signal(signal.SIGTERM)
    second.proc.wait(timeout=20)
    assert (tls / "dev-ca.pem").read_bytes() == ca1
    leaf2 = x509.load_pem_x509_certificate((tls / "sink-cert.pem").read_bytes())
    assert leaf2.serial_number != x509.load_pem_x509_certificate(leaf1).serial_number
    days = (leaf2.not_valid_after_utc - leaf2.not_valid_before_utc).days
    assert days >= 30, "a stack left running for weeks keeps a valid certificate"
    assert stat.S_IMODE((tls / "sink-key.pem").stat().st_mode) == 0o600
    assert os.access(tls / "dev-ca.pem", os.R_OK)
