"""A scratch Dovecot IMAP server for tests: its own config, run and state directories.

`dovecot -c CONF -F` (never the system instance; nothing under /etc/dovecot is read or
changed), listening on 127.0.0.1 on a free port with implicit TLS only (IMAPS), one
user whose Maildir the test fills, stopped at the end.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> str:
    if not Path(DOVECOT).exists():
        return "dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "a scratch Dovecot must start as root"
    for user in ("dovecot", "dovenull", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"the {user} user does not exist"
    return ""


@dataclass
class DovecotInstance:
    root: Path
    port: int
    cert_file: Path
    key_file: Path
    user: str = "bounces"
    password: str = "imap-test-password"  # noqa: S105 - a throwaway test server's
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def maildir(self) -> Path:
        return self.root / "home" / self.user / "Maildir"

    def write(self) -> None:
        nobody = pwd.getpwnam("nobody")
        for d in ("run", "state", "home"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        conf = f"""
protocols = imap
listen = 127.0.0.1
base_dir = {self.root / 'run'}
state_dir = {self.root / 'state'}
instance_name = mailer-test-{self.port}
log_path = {self.root / 'dovecot.log'}
ssl = required
ssl_cert = <{self.cert_file}
ssl_key = <{self.key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = {nobody.pw_uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root / 'passwd'}
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={self.root / 'home'}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port}
    ssl = yes
  }}
}}
"""
        (self.root / "dovecot.conf").write_text(conf)

    def fill(self, messages: list[bytes]) -> None:
        import mailbox

        nobody = pwd.getpwnam("nobody")
        self.maildir.parent.mkdir(parents=True, exist_ok=True)
        md = mailbox.Maildir(str(self.maildir), create=True)
        for raw in messages:
            md.add(raw)
        for path in [self.root / "home", *(self.root / "home").rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)

    def start(self) -> None:
        self.write()
        log = (self.root / "stdout.log").open("wb")
        self.proc = subprocess.Popen([DOVECOT, "-c", str(self.root / "dovecot.conf"), "-F"], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"dovecot did not listen: {self.log_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_text(self) -> str:
        out = ""
        for name in ("dovecot.log", "stdout.log"):
            try:
                out += (self.root / name).read_text(errors="replace")
            except OSError:
                pass
        return out
