"""`make demo`: a whole campaign on embedded defaults, against a local STARTTLS sink.

Runs the real CLI commands in-process in a scratch folder, with a certificate made on
the spot and trusted only by this run. Sample data is synthetic (example.* domains).
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

from mailer.devcerts import make_dev_certs
from mailer.devsink import RecordingHandler, start_sink

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
    certs = make_dev_certs(folder / "certs")
    handler = RecordingHandler()
    controller, port = start_sink(handler, cert_file=certs.cert_file, key_file=certs.key_file)
    config = _config(folder, port, certs.ca_file)
    console.print(Rule("mailer demo"))
    console.print(f"scratch folder {folder}; STARTTLS sink on 127.0.0.1:{port} with a certificate made for this run")

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
        # -- issue 17: training records gate submission and approval (TRN-1) -------------
        from mailer.compliance.demo_steps import demo_tokens

        tokens = demo_tokens(config)

        def as_account(who: str, *args: str, expect: int = 0) -> None:
            console.print(f"\n[bold cyan]$ MAILER_TOKEN=<{who}'s token> mailer {shlex.join(args)}[/]")
            import os

            os.environ["MAILER_TOKEN"] = tokens[who]
            try:
                code = app(["--config", str(config), *args], standalone_mode=False, prog_name="mailer") or 0
            finally:
                os.environ.pop("MAILER_TOKEN", None)
            if code != expect:
                raise SystemExit(f"demo step failed: mailer {' '.join(args)} exited {code}, expected {expect}")

        console.print("\n[dim]Training (TRN-1): the author holds no HIPAA-marketing training yet:[/]")
        mailer("campaign", "submit", "1", expect=3)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        for person in ("marketer", "compliance"):
            as_account("admin", "training", "record", person, "--course", "HIPAA marketing", "--completed", today)
        def assess(campaign: str, title: str) -> None:  # RSK-1: a new initiative, assessed and approved
            as_account("marketer", "risk", "draft", "--campaign", campaign, "--title", title, "--phi",
                       "name and email address; clinical fields only under authorization", "--recipients",
                       "the center's own relay", "--safeguards", "TLS 1.2+, encryption at rest, four-eyes approval",
                       "--residual-risk", "low")
            as_account("compliance", "risk", "approve", campaign)

        assess("1", "Monthly newsletter by email")
        # -- end of the issue 17 block -------------------------------------------------
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
        assess("2", "Condition-targeted follow-up")  # issue 17: new data fields (RSK-1)
        mailer("campaign", "freeze", "2")
        console.print("\n[dim]A patient's written revocation arrives after the audience was frozen (AUTH-7):[/]")
        mailer("authorizations", "revoke", "--contact", "3", "--scope", "condition-targeted-marketing", who="compliance")
        mailer("campaign", "send", "2")
        # -- issue 17: a patient's testimonial, used only with its written consent (TST-5) --
        console.print("\n[dim]A patient's quote is a registered asset with a consent covering email (TST-5):[/]")
        consent = folder / "consent-signed.pdf"
        consent.write_bytes(b"%PDF-1.4 synthetic signed consent for the demo\n")
        year = time.gmtime().tm_year
        as_account("marketer", "assets", "register", "mri-quiet-quote", "--kind", "testimonial", "--contact", "1",
                   "--signed", today, "--expires", f"{year + 2}-12-31", "--channels", "email,web",
                   "--consent-document", str(consent), "--uses", "the quoted sentence, unedited, no name or photo",
                   "--text", "The new scanner was so quiet I almost fell asleep.")
        mailer("campaign", "create", "--name", "Quieter MRI, in a patient's words", "--template",
               str(ROOT / "templates/testimonial"), "--segment", str(ROOT / "segments/newsletter.toml"))
        mailer("campaign", "submit", "3")
        mailer("campaign", "approve", "3", who="compliance")
        mailer("campaign", "check", "3", who="compliance")
        mailer("campaign", "send", "3")
        # -- end of the issue 17 block ---------------------------------------------------
        mailer("ledger", "tail", "-n", "8", who="compliance")
        mailer("ledger", "verify", who="compliance")
    finally:
        controller.stop()
    msgs = handler.messages
    one_rcpt = all(m.rcpt_commands == 1 and len(m.rcpt_tos) == 1 for m in msgs)
    tls = all(m.tls_at_mail_from for m in msgs)
    versions = sorted({m.tls_version or "none" for m in msgs})
    console.print(Rule("what the sink received"))
    console.print(f"{len(msgs)} message(s); one RCPT TO per transaction: {'yes' if one_rcpt else 'NO'} (SEND-1); "
                  f"TLS before MAIL FROM: {'yes' if tls else 'NO'} ({', '.join(versions)}) (TLS-1)")
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
    return 0 if msgs and one_rcpt and tls else 1
