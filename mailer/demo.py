"""`make demo`: a whole campaign on embedded defaults, against `mailer sink`.

Runs the real CLI commands in-process in a scratch folder, against the same local
STARTTLS sink as `mailer sink` (a throwaway CA trusted only by this run's config; each
message kept as an .eml file in .demo/sink/). Sample data is synthetic (example.* domains).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from mailer.sink import LocalSink

ROOT = Path(__file__).resolve().parent.parent


def _config(folder: Path, port: int, ca_file: Path) -> Path:
    text = f"""
[database]
url = "sqlite:///{folder / 'mailer.db'}"
[keys]
file = "{folder / 'keys.json'}"
[center]
name = "Riverside Imaging Center"
postal_address = "100 Main Street, Springfield, IL 62701"
phone = "(217) 555-0100"
website = "https://riverside-imaging.example"
timezone = "America/Chicago"
[sender]
from_address = "news@riverside-imaging.example"
from_name = "Riverside Imaging"
envelope_from = "bounces@riverside-imaging.example"
list_id = "news.riverside-imaging.example"
[smtp]
host = "localhost"
port = {port}
tls = "starttls"
ca_file = "{ca_file}"
local_hostname = "demo.riverside-imaging.example"
connections = 4
operated_by_covered_entity = true
[unsubscribe]
base_url = "https://riverside-imaging.example/u/"
"""
    path = folder / "mailer.toml"
    path.write_text(text)
    return path


def run_demo(folder: Path, console: Console | None = None, *, extra_steps: Sequence[Sequence[str]] = ()) -> int:
    from mailer.cli.app import app

    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    started = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    received: list[str] = []
    sink = LocalSink(out=folder / "sink", port=0, report=received.append)
    port = sink.start()
    assert sink.certs is not None
    config = _config(folder, port, sink.certs.ca_file)
    console.print(Rule("mailer demo"))
    console.print(f"scratch folder {folder}; `mailer sink --out {folder / 'sink'} --port 0` listening on "
                  f"127.0.0.1:{port} with a CA made for this run; its settings:")
    console.print(sink.settings(), markup=False)

    def mailer(*args: str, expect: int = 0, who: str = "marketer") -> None:
        console.print(f"\n[bold cyan]$ mailer {shlex.join(args)}[/]  [dim]({who})[/]")
        code = app(["--config", str(config), "--actor", who, *args], standalone_mode=False, prog_name="mailer")
        code = code or 0
        if code != expect:
            raise SystemExit(f"demo step failed: mailer {' '.join(args)} exited {code}, expected {expect}")

    try:
        mailer("init", who="admin")
        mailer("contacts", "import", str(ROOT / "examples/contacts.csv"))
        mailer("authorizations", "import", str(ROOT / "examples/authorizations.csv"), who="compliance")
        mailer("segment", "check", str(ROOT / "segments/newsletter.toml"))
        mailer("segment", "check", str(ROOT / "segments/osteoporosis-followup.toml"), "--explain")
        mailer("lint", str(ROOT / "templates/newsletter"), str(ROOT / "templates/condition-targeted"))
        mailer("campaign", "create", "--name", "Evening hours newsletter", "--template", str(ROOT / "templates/newsletter"),
               "--segment", str(ROOT / "segments/newsletter.toml"))
        for step in extra_steps:
            mailer(*step)
        mailer("campaign", "submit", "1")
        console.print("\n[dim]Four eyes (SEC-6): the marketer may not approve their own campaign:[/]")
        mailer("campaign", "approve", "1", expect=3)
        mailer("campaign", "approve", "1", who="compliance")
        mailer("campaign", "check", "1", who="compliance")
        mailer("campaign", "send", "1")
        mailer("campaign", "create", "--name", "Bone density follow-up", "--template",
               str(ROOT / "templates/condition-targeted"), "--segment", str(ROOT / "segments/osteoporosis-followup.toml"))
        mailer("campaign", "submit", "2")
        mailer("campaign", "approve", "2", who="compliance")
        mailer("campaign", "freeze", "2")
        console.print("\n[dim]A patient's written revocation arrives after the audience was frozen (AUTH-7):[/]")
        mailer("authorizations", "revoke", "--contact", "3", "--scope", "condition-targeted-marketing", who="compliance")
        mailer("campaign", "send", "2")
        mailer("ledger", "tail", "-n", "8", who="compliance")
        mailer("ledger", "verify", who="compliance")
    finally:
        sink.stop()
    assert sink.writer is not None
    stats = sink.writer.stats
    console.print(Rule("what the sink received"))
    for line in received[:3]:
        console.print(line, markup=False)
    if len(received) > 3:
        console.print(f"... {len(received) - 3} more in {folder / 'sink'}/", markup=False)
    console.print(f"{stats.messages} message(s); one RCPT TO per transaction: {'yes' if stats.one_rcpt_each else 'NO'} "
                  f"(SEND-1); TLS before MAIL FROM: {'yes' if stats.tls_each else 'NO'} "
                  f"({', '.join(sorted(stats.tls_versions))}) (TLS-1)")
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
    return 0 if stats.messages and stats.one_rcpt_each and stats.tls_each else 1
