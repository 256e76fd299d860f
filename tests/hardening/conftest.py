"""The real CLI against a config file written for the test (the fixtures of tests/cli)."""

import pytest

from tests.cli.conftest import config_file, mailer  # noqa: F401 - fixtures


@pytest.fixture
def sqlite_rt(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An initialised SQLite runtime shared by the examples of one property test (file readers
    do not depend on the database engine; the PostgreSQL variants run in the other tests)."""
    from mailer.crypto import Keyring
    from mailer.db import make_engine, migrate
    from mailer.runtime import Runtime
    from tests.conftest import make_settings

    tmp = tmp_path_factory.mktemp("rt")
    settings = make_settings(f"sqlite:///{tmp / 'mailer.db'}", tmp)
    ring = Keyring.generate()
    ring.save(settings.keys.file)
    rt = Runtime(settings, _engine=make_engine(settings.database.url), _keyring=ring)
    migrate(rt.engine)
    yield rt
    rt.dispose()
