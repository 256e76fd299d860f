"""A scratch Postfix instance for tests: its own config, queue and data directories.

Started with `postfix -c DIR start` (never the system instance, never postmulti: nothing
under /etc/postfix is touched), listening on 127.0.0.1 on a free port with STARTTLS
required, and stopped (`postfix -c DIR stop`, then `abort` if it lingers) at the end.

Mail for `patients.test` is accepted at RCPT time whatever the local part
(`smtpd_reject_unlisted_recipient = no`); the addresses listed in the alias table are
discarded as delivered, every other one is bounced by Postfix itself ("User unknown in
virtual alias table", status 5.1.1), which sends a DSN to the envelope sender. Mail for
the bounce domain goes by SMTP with STARTTLS (`encrypt`) to the given receiver port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


def available() -> str:
    """'' when a scratch Postfix can run here, else why not."""
    if not Path(POSTFIX).exists():
        return "postfix is not installed (apt-get install postfix)"
    if os.geteuid() != 0:
        return "a scratch Postfix master must start as root"
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user does not exist"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_MASTER = """\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class PostfixInstance:
    root: Path
    port: int
    bounce_port: int
    existing: tuple[str, ...]
    cert_file: Path
    key_file: Path
    patient_domain: str = "patients.test"
    bounce_domain: str = "bounce.test"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def log(self) -> Path:
        return self.root / "maillog"

    def write(self) -> None:
        for d in ("conf", "queue", "data"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        q = self.root / "queue"
        aliases = self.conf / "virtual_alias"
        aliases.write_text("".join(f"{a} delivered@discard.test\n" for a in self.existing))
        transport = self.conf / "transport"
        transport.write_text(f"{self.bounce_domain} smtp:[127.0.0.1]:{self.bounce_port}\n"
                             "discard.test discard:\n")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(q),
            "data_directory": str(self.root / "data"),
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "relay.test",
            "mydomain": "relay.test",
            "myorigin": "relay.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "smtp_dns_support_level": "disabled",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_reject_unlisted_recipient": "no",
            "virtual_alias_domains": self.patient_domain,
            "virtual_alias_maps": f"texthash:{aliases}",
            "transport_maps": f"texthash:{transport}",
            "smtpd_tls_cert_file": str(self.cert_file),
            "smtpd_tls_key_file": str(self.key_file),
            "smtpd_tls_security_level": "encrypt",
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtp_tls_security_level": "encrypt",
            "smtp_tls_protocols": ">=TLSv1.2",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.root),
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "delay_warning_time": "0h",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "notify_classes": "",
            "bounce_queue_lifetime": "1h",
            "maximal_queue_lifetime": "1h",
            "multi_instance_enable": "no",
            "master_service_disable": "",
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.conf / "master.cf").write_text(_MASTER.replace("smtp      inet", f"127.0.0.1:{self.port} inet", 1))
        # the master and its daemons need these owned as `postfix set-permissions` would make them
        import pwd

        pw = pwd.getpwnam("postfix")
        os.chown(self.root / "data", pw.pw_uid, pw.pw_gid)
        for p in (self.root, self.conf, q):
            p.chmod(0o755)
        subprocess.run([POSTFIX, "-c", str(self.conf), "check"], check=False, capture_output=True, text=True)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MAIL_CONFIG": str(self.conf)}
        return subprocess.run([POSTFIX, "-c", str(self.conf), *args], check=check, capture_output=True,
                              text=True, env=env, timeout=60)

    def start(self) -> None:
        self.write()
        res = self._run("start", check=False)
        if res.returncode != 0:
            raise RuntimeError(f"postfix start failed: {res.stdout}{res.stderr}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"postfix did not listen on 127.0.0.1:{self.port}: {self.log_text()[-2000:]}")

    def flush(self) -> None:
        self._run("flush", check=False)

    def stop(self) -> None:
        res = self._run("stop", check=False)
        if res.returncode != 0:
            self._run("abort", check=False)
        pid = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while pid.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
