"""Shared fixtures: real parts only. A STARTTLS aiosmtpd sink with a certificate made here,
a real SQLite file, and PostgreSQL (a fresh schema per test) when MAILER_TEST_POSTGRES_URL
is set. With CI=true the PostgreSQL variant must run, so a missing URL fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from mailer.config import Settings, settings_from_mapping
from mailer.crypto import Keyring
from mailer.db import make_engine, migrate, normalize_url
from mailer.devcerts import DevCerts, make_dev_certs
from mailer.devsink import RecordingHandler, start_sink
from mailer.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("MAILER_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"

# CI machines are slower and busier than a laptop: a property must fail on its logic,
# never on hypothesis's per-example time limit.
hypothesis_settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
if IN_CI:
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


@dataclass
class Sink:
    handler: RecordingHandler
    port: int
    certs: DevCerts
    controller: Any

    @property
    def messages(self) -> list[Any]:
        return self.handler.messages


@pytest.fixture
def sink(certs: DevCerts) -> Iterator[Sink]:
    """A real aiosmtpd server on port 0 that requires STARTTLS."""
    handler = RecordingHandler()
    controller, port = start_sink(handler, cert_file=certs.cert_file, key_file=certs.key_file)
    try:
        yield Sink(handler, port, certs, controller)
    finally:
        controller.stop()


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{normalize_url(base)}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: an SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailer.db'}"
        return
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but MAILER_TEST_POSTGRES_URL is not set: the PostgreSQL tests must run in CI")
        pytest.skip("PostgreSQL tests need MAILER_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_settings(db_url: str, tmp_path: Path, sink: Sink | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "keys": {"file": str(tmp_path / "keys.json")},
        "center": {"name": "Riverside Imaging Center", "postal_address": "100 Main Street, Springfield, IL 62701",
                   "phone": "(217) 555-0100", "website": "https://riverside-imaging.example"},
        "sender": {"from_address": "news@riverside-imaging.example", "from_name": "Riverside Imaging",
                   "envelope_from": "bounces@riverside-imaging.example", "list_id": "news.riverside-imaging.example"},
        "smtp": {"host": "localhost", "port": sink.port if sink else 2525, "tls": "starttls",
                 "ca_file": str(sink.certs.ca_file) if sink else "", "connections": 2,
                 "local_hostname": "test.riverside-imaging.example", "operated_by_covered_entity": True,
                 "timeout": 10.0},
        "unsubscribe": {"base_url": "https://riverside-imaging.example/u/"},
        "limits": {"retry_base_seconds": 0.01},
        # The issue-17 gates (TRN-1 training, RSK-1 risk assessments) are on by default; tests
        # of other mechanics run without them, tests/compliance turn them on.
        "compliance": {"training_required": False, "risk_assessment_required": False},
    }
    for key, value in overrides.items():
        data.setdefault(key, {}).update(value)
    return settings_from_mapping(data, source="<test>")


@pytest.fixture
def runtime_factory(db_url: str, tmp_path: Path) -> Iterator[Any]:
    """Build an initialised Runtime (keys + migrated database) for a given sink/overrides."""
    made: list[Runtime] = []

    def build(sink: Sink | None = None, **overrides: Any) -> Runtime:
        settings = make_settings(db_url, tmp_path, sink, **overrides)
        keyring = Keyring.generate()
        if not settings.keys.file.exists():
            keyring.save(settings.keys.file)
        else:
            keyring = Keyring.load(settings.keys.file)
        rt = Runtime(settings, _engine=make_engine(settings.database.url), _keyring=keyring)
        migrate(rt.engine)
        made.append(rt)
        return rt

    yield build
    for rt in made:
        rt.dispose()


@pytest.fixture
def rt(runtime_factory: Any, sink: Sink) -> Runtime:
    """An initialised Runtime whose SMTP settings point at the test sink."""
    return runtime_factory(sink)


@pytest.fixture
def sample_rt(rt: Runtime) -> Runtime:
    """`rt` with the shipped sample contacts and authorizations imported."""
    from mailer.store.auth_records import import_authorizations
    from mailer.store.contacts import import_contacts

    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))
    import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
    return rt


def NO_GATES(rt: Runtime, campaign: Any) -> None:  # noqa: N802 - a constant-like callable
    """For tests of sending mechanics only: skips preflight (approval, BAA, ...).

    The gates themselves are tested in the preflight/approval tests; end-to-end
    acceptance tests go through them.
    """
    return None
