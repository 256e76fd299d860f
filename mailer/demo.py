"""`make demo`: a whole campaign on embedded defaults, against `mailer sink`.

Runs the real CLI commands in-process in a scratch folder, against the same local
STARTTLS sink as `mailer sink` (a throwaway CA trusted only by this run's config; each
message kept as an .eml file in .demo/sink/). Sample data is synthetic (example.* domains).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyotp
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
[web]
templates_dir = "{ROOT / 'templates'}"
segments_dir = "{ROOT / 'segments'}"
[compliance]
training_required = true
risk_assessment_required = true
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

    tokens: dict[str, str] = {}
    saved_env = {k: os.environ.get(k) for k in ("MAILER_TOKEN", "XDG_CONFIG_HOME")}
    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")  # the demo's session file stays in its folder

    def mailer(*args: str, expect: int = 0, who: str | None = "marketer", stdin: str | None = None) -> str:
        """Run one CLI command as `who` (an API token; None: the `mailer login` session);
        returns what it printed (also shown)."""
        shown = who or ("nobody signed in yet" if args[0] == "init" else "admin's session from mailer login")
        console.print(f"\n[bold cyan]$ mailer {shlex.join(args)}[/]  [dim]({shown})[/]")
        os.environ["MAILER_TOKEN"] = tokens.get(who, "") if who else ""
        buf = io.StringIO()
        old_in = sys.stdin
        try:
            if stdin is not None:
                sys.stdin = io.StringIO(stdin)
            with contextlib.redirect_stdout(buf):
                code = app(["--config", str(config), *args], standalone_mode=False, prog_name="mailer")
        finally:
            sys.stdin = old_in
        text = buf.getvalue()
        sys.stdout.write(text)
        code = code or 0
        if code != expect:
            raise SystemExit(f"demo step failed: mailer {' '.join(args)} exited {code}, expected {expect}")
        return text

    def grab(label: str, text: str) -> str:
        m = re.search(rf"{label}: (\S+)", text)
        if m is None:
            raise SystemExit(f"demo step failed: no {label} in the output")
        return m.group(1)

    try:
        made = mailer("init", who=None)
        admin_totp = grab("TOTP secret for admin", made)
        console.print("\n[dim]The first administrator signs in (password + TOTP code) and must change the "
                      "one-time password now:[/]")
        mailer("login", "--user", "admin", "--password-stdin", "--totp", pyotp.TOTP(admin_totp).now(), who=None,
               stdin=f"{grab('one-time password for admin', made)}\n{secrets.token_urlsafe(16)}\n")
        mailer("users", "add", "marketer", "--role", "marketer", who=None)
        mailer("users", "add", "compliance", "--role", "reviewer", who=None)
        for name in ("marketer", "compliance"):
            tokens[name] = mailer("users", "token", name, "--label", "demo", who=None).strip().splitlines()[-1]
        console.print("\n[dim]A wrong password is one line, exit 3, and recorded; it never says whether the "
                      "account exists:[/]")
        mailer("login", "--user", "marketer", "--password-stdin", who=None, stdin="not the password\n", expect=3)
        mailer("whoami")
        mailer("contacts", "import", str(ROOT / "examples/contacts.csv"))
        mailer("authorizations", "import", str(ROOT / "examples/authorizations.csv"))
        mailer("segment", "check", str(ROOT / "segments/newsletter.toml"))
        mailer("segment", "check", str(ROOT / "segments/osteoporosis-followup.toml"), "--explain")
        mailer("lint", str(ROOT / "templates/newsletter"), str(ROOT / "templates/condition-targeted"))
        mailer("campaign", "create", "--name", "Evening hours newsletter", "--template", str(ROOT / "templates/newsletter"),
               "--segment", str(ROOT / "segments/newsletter.toml"))
        for step in extra_steps:
            mailer(*step)
        # -- issue 17: training records gate submission and approval (TRN-1) -------------
        console.print("\n[dim]Training (TRN-1): the author holds no HIPAA-marketing training yet:[/]")
        mailer("campaign", "submit", "1", expect=3)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        for person in ("marketer", "compliance"):
            mailer("training", "record", person, "--course", "HIPAA marketing", "--completed", today, who=None)

        def assess(campaign: str, title: str) -> None:  # RSK-1: a new initiative, assessed and approved
            mailer("risk", "draft", "--campaign", campaign, "--title", title, "--phi",
                   "name and email address; clinical fields only under authorization", "--recipients",
                   "the center's own relay", "--safeguards", "TLS 1.2+, encryption at rest, four-eyes approval",
                   "--residual-risk", "low")
            mailer("risk", "approve", campaign, who="compliance")

        assess("1", "Monthly newsletter by email")
        # -- end of the issue 17 block -------------------------------------------------
        mailer("campaign", "submit", "1")
        console.print("\n[dim]Four eyes (SEC-6): the author's account may not approve its own campaign:[/]")
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
        consent.write_bytes(b"%PDF-" + b"1.4 synthetic signed consent for the demo\n")  # split: not a rule ID
        year = time.gmtime().tm_year
        mailer("assets", "register", "mri-quiet-quote", "--kind", "testimonial", "--contact", "1",
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
        mailer("ledger", "show", "--kind", "access", "--limit", "12", who="compliance")
        mailer("ledger", "tail", "-n", "8", who="compliance")
        mailer("ledger", "verify", who="compliance")
        mailer("logout", who=None)
    finally:
        sink.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
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
    from mailer.web.workspace.demo import demo_accounts

    demo_accounts(config, console)
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
    return 0 if stats.messages and stats.one_rcpt_each and stats.tls_each else 1
