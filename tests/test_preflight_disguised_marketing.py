"""Rules §8 item 21 (DIS-2): commercial mail posing as clinical or personal mail is refused."""

from __future__ import annotations

import pytest

from mailer import approvals, campaigns, preflight
from mailer.errors import ComplianceRefusal
from mailer.lint import lint_template_dir
from mailer.sending import lint_settings
from tests.helpers_workflow import AUTHOR, REVIEWER, copy_template, create


@pytest.mark.parametrize("subject", ["Your lab results are ready", "Re: your appointment"],
                         ids=["supplement-ad-results", "newsletter-fake-re"])
def test_disguised_subject_is_dis_2_and_blocks_approval_and_sending(sample_rt, tmp_path, subject) -> None:
    tpl = copy_template(tmp_path)
    meta = tpl / "template.toml"
    meta.write_text(meta.read_text().replace('subject = "News from {{ center.name }}: new evening hours"',
                                              f'subject = "{subject}"'))
    findings = lint_template_dir(tpl, lint_settings(sample_rt))
    assert "DIS-2" in {f.rule for f in findings if f.blocking}
    c = create(sample_rt, template=tpl)
    campaigns.submit(sample_rt, c.id, actor=AUTHOR)
    with pytest.raises(ComplianceRefusal) as err:
        approvals.approve(sample_rt, c.id, reviewer=REVIEWER)
    assert "DIS-2" in err.value.rules
    report = preflight.evaluate(sample_rt, campaigns.get(sample_rt, c.id))
    lint = {g.name: g for g in report.gates}["lint"]
    assert lint.blocking and "DIS-2" in {r.rule for r in lint.refusals}
