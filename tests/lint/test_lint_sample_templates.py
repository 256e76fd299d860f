"""The shipped sample templates lint clean, with default and with a real center's settings."""

from __future__ import annotations

import pytest
from lintcases import REPO, SETTINGS

from mailer.lint import LintSettings, lint_template_dir

SAMPLES = sorted(p for p in (REPO / "templates").iterdir() if (p / "template.toml").is_file())


def test_the_three_samples_exist() -> None:
    assert {"service-announcement", "condition-targeted"} <= {p.name for p in SAMPLES}
    # newsletter is the lead's; it is linted below whenever it is present


@pytest.mark.parametrize("folder", SAMPLES, ids=[p.name for p in SAMPLES])
@pytest.mark.parametrize("settings", [LintSettings(), SETTINGS], ids=["defaults", "center"])
def test_sample_lints_clean(folder, settings: LintSettings) -> None:
    findings = lint_template_dir(folder, settings)
    assert findings == [], "\n".join(f.format() for f in findings)
