"""Every file reader, fed random bytes, either reads the file or raises a MailerError (one clear
line, exit 1-3): never another exception, never a traceback (issue 14, "bad files")."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.crypto import Keyring
from mailer.errors import MailerError
from mailer.ledger_anchor import read_anchors
from mailer.lint import LintSettings, lint_template_dir
from mailer.segments import load_segment
from mailer.store.auth_records import import_authorizations
from mailer.store.backup import read_backup
from mailer.store.contacts import import_contacts
from mailer.templates import compile_template
from tests.conftest import ROOT

CLINICAL = {"conditions": "list", "procedures": "list", "last_exam_date": "date"}
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# random bytes, and random bytes after a plausible first line (so the row parsers run too)
CONTACT_HEAD = b"email,first_name,last_name,language,newsletter_opt_in,conditions,last_exam_date\n"
AUTH_HEAD = (ROOT / "examples/authorizations.csv").read_bytes().splitlines(keepends=True)[0]
blobs = st.binary(max_size=600)
texts = st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass"))
payloads = st.one_of(blobs, texts)


def _quietly(fn: Any) -> None:
    try:
        fn()
    except MailerError:
        pass


@SETTINGS
@given(data=payloads, headed=st.booleans())
def test_contact_import(sqlite_rt: Any, tmp_path_factory: Any, data: bytes, headed: bool) -> None:
    f = tmp_path_factory.mktemp("c") / "contacts.csv"
    f.write_bytes((CONTACT_HEAD if headed else b"") + data)
    rt = sqlite_rt
    _quietly(lambda: import_contacts(rt.engine, rt.keyring, rt.ledger, f, CLINICAL, skip_invalid=headed))


@SETTINGS
@given(data=payloads, headed=st.booleans())
def test_authorization_import(sqlite_rt: Any, tmp_path_factory: Any, data: bytes, headed: bool) -> None:
    f = tmp_path_factory.mktemp("a") / "auth.csv"
    f.write_bytes((AUTH_HEAD if headed else b"") + data)
    rt = sqlite_rt
    _quietly(lambda: import_authorizations(rt.engine, rt.keyring, rt.ledger, f, skip_invalid=headed))


@SETTINGS
@given(data=payloads)
def test_segment_file(sqlite_rt: Any, tmp_path_factory: Any, data: bytes) -> None:
    f = tmp_path_factory.mktemp("s") / "seg.toml"
    f.write_bytes(data)
    _quietly(lambda: load_segment(f, sqlite_rt.settings.fields))


@SETTINGS
@given(data=payloads, which=st.sampled_from(["template.toml", "body.html.j2", "body.txt.j2"]))
def test_template_files(tmp_path_factory: Any, data: bytes, which: str) -> None:
    t = tmp_path_factory.mktemp("t") / "tpl"
    shutil.copytree(ROOT / "templates/newsletter", t)
    (t / which).write_bytes(data)
    _quietly(lambda: compile_template(t))
    lint_template_dir(t, LintSettings())  # findings, never an exception


@SETTINGS
@given(data=payloads)
def test_key_file(tmp_path_factory: Any, data: bytes) -> None:
    f = tmp_path_factory.mktemp("k") / "keys.json"
    f.write_bytes(data)
    f.chmod(0o600)
    _quietly(lambda: Keyring.load(f))


@SETTINGS
@given(data=payloads)
def test_anchor_file(tmp_path_factory: Any, data: bytes) -> None:
    f = tmp_path_factory.mktemp("n") / "keys.ledger-anchors.jsonl"
    f.write_bytes(data)
    _quietly(lambda: read_anchors(f))


@SETTINGS
@given(data=payloads)
def test_backup_file(data: bytes) -> None:
    ring = Keyring.generate()

    def read() -> None:
        _meta, frames = read_backup(ring, io.BytesIO(data))
        for _ in frames:
            pass

    _quietly(read)


def test_the_examples_still_read(sqlite_rt: Any) -> None:
    rt = sqlite_rt
    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", CLINICAL)
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    compile_template(ROOT / "templates/newsletter")
    load_segment(ROOT / "segments/newsletter.toml", rt.settings.fields)
    assert Path(ROOT / "examples/contacts.csv").exists()
