"""A C SMTP sink for the send benches: Postfix's `smtp-sink` behind stunnel (implicit TLS).

aiosmtpd burns about as much CPU a message as the client, on the same two cores, so it
slows the bare loop as much as the pipeline and hides the gap (perf-notes.md). The C
pair costs a fraction of that. Both come from Debian's packages; the certificate is made
by the bench (a throwaway CA, `mailer.devcerts`) and the client verifies it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = ("the C sink needs Postfix's smtp-sink and stunnel: "
                "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix stunnel4")


class SinkMissing(RuntimeError):
    """smtp-sink or stunnel is not installed (the message says the apt command)."""


@dataclass(frozen=True)
class CSink:
    port: int  # implicit TLS (stunnel), verified against ca_file for "localhost"
    ca_file: Path
    pids: tuple[int, ...]  # smtp-sink and stunnel, to charge their CPU per message


def find_tools() -> tuple[str, str]:
    """Paths of smtp-sink and stunnel, or SinkMissing naming the apt command."""
    sink = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None)
    tunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if not sink or not tunnel:
        missing = ", ".join(n for n, p in (("smtp-sink", sink), ("stunnel", tunnel)) if not p)
        raise SinkMissing(f"{missing} not found; {INSTALL_HINT}")
    return sink, tunnel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-400:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


@contextmanager
def c_sink(folder: Path) -> Iterator[CSink]:
    """smtp-sink on a plain loopback port, stunnel in front of it with a certificate for
    localhost signed by a CA made here. Yields the TLS port and the CA file."""
    from mailer.devcerts import make_dev_certs

    sink_bin, tunnel_bin = find_tools()
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_dev_certs(folder / "certs")
    plain, tls = free_port(), free_port()
    args = [sink_bin, "-c", "-m", "512", "-h", "sink.bench.example"]
    if os.geteuid() == 0:  # smtp-sink refuses to keep root: it needs a user to drop to
        args += ["-u", "nobody"]
    sink = subprocess.Popen([*args, f"127.0.0.1:{plain}", "256"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    procs: list[subprocess.Popen[bytes]] = [sink]
    try:
        _wait_port(plain, sink, "smtp-sink")
        log = folder / "stunnel.log"
        conf = folder / "stunnel.conf"
        conf.write_text("\n".join([
            "foreground = yes", "pid =", f"output = {log}", "debug = 3",
            "[smtps]", f"accept = 127.0.0.1:{tls}", f"connect = 127.0.0.1:{plain}",
            f"cert = {certs.cert_file}", f"key = {certs.key_file}", "sslVersionMin = TLSv1.2", "",
        ]))
        tunnel = subprocess.Popen([tunnel_bin, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(tunnel)
        _wait_port(tls, tunnel, "stunnel", log)
        yield CSink(tls, certs.ca_file, tuple(p.pid for p in procs))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
