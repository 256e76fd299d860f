"""The real CLI against a config file written for the test (the fixtures of tests/cli)."""

from tests.cli.conftest import config_file, mailer  # noqa: F401 - fixtures
