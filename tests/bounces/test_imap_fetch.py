"""`mailer bounces fetch --imap` against a real Dovecot over implicit TLS (issue 19).

Skips with the reason when Dovecot is not installed, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.bounces.mailbox import fetch_imap
from mailer.bounces.process import Processor
from mailer.contacts import normalize_email
from mailer.devcerts import make_dev_certs
from mailer.errors import TLSPolicyError
from mailer.models import Suppression
from tests.bounces.dovecot_instance import DovecotInstance, available
from tests.bounces.helpers import arf, bounce_settings, dsn, import_patients, send_campaign
from tests.bounces.postfix_instance import free_port
from tests.conftest import IN_CI


@pytest.fixture
def imap(monkeypatch):  # type: ignore[no-untyped-def]
    why = available()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true: the IMAP test must run ({why}); .ci/run installs dovecot-imapd")
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
    root.chmod(0o755)
    certs = make_dev_certs(root / "certs")
    server = DovecotInstance(root / "dovecot", free_port(), certs.cert_file, certs.key_file)
    monkeypatch.setenv("MAILER_TEST_IMAP_PASSWORD", server.password)
    try:
        yield server, certs
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_imap_fetch_processes_and_files_away(runtime_factory, tmp_path, imap) -> None:
    server, certs = imap
    rt = runtime_factory(None, **bounce_settings(imap_host="localhost", imap_port=server.port,
                                                 imap_username=server.user,
                                                 imap_password_env="MAILER_TEST_IMAP_PASSWORD",
                                                 imap_ca_file=str(certs.ca_file), batch=2))
    import_patients(rt, tmp_path)
    _cid, sent = await send_campaign(rt)
    server.fill([dsn(sent[0]), arf(sent[1]), b"Subject: hello\r\n\r\nnot a bounce\r\n"])
    server.start()
    totals = fetch_imap(Processor(rt, actor="ops"))
    assert totals.by_disposition == {"applied": 2, "review": 1}, server.log_text()[-2000:]
    with rt.engine.connect() as conn:
        sup = {r.email_hash: r.reason for r in conn.execute(select(Suppression.__table__))}
    assert sup == {rt.keyring.lookup_hash(normalize_email(sent[0].recipient)): "bounce",
                   rt.keyring.lookup_hash(normalize_email(sent[1].recipient)): "complaint"}
    # filed into folders on the server, nothing deleted; a second pass finds nothing new
    folders = {p.name: len(list((p / "cur").iterdir())) + len(list((p / "new").iterdir()))
               for p in server.maildir.glob(".mailer-*")}
    assert folders == {".mailer-processed": 2, ".mailer-review": 1, ".mailer-rejected": 0}
    assert fetch_imap(Processor(rt)).total == 0


async def test_imap_certificate_is_verified(runtime_factory, tmp_path, imap) -> None:
    server, _certs = imap
    rt = runtime_factory(None, **bounce_settings(imap_host="localhost", imap_port=server.port,
                                                 imap_username=server.user,
                                                 imap_password_env="MAILER_TEST_IMAP_PASSWORD"))
    server.fill([])
    server.start()
    with pytest.raises(TLSPolicyError):  # no CA given: the server's private CA is not trusted (TLS-3)
        fetch_imap(Processor(rt))
