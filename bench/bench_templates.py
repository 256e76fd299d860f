"""Templates and lint: compile and lint time per template (once per campaign), render and
send-time rendered-output check per recipient (CSS already inlined at compile time), and the
same two from a per-shape skeleton (mailer.personalize)."""

from __future__ import annotations

import secrets
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ("newsletter", "service-announcement", "condition-targeted")
CENTER = {"name": "Riverside Imaging Center", "postal_address": "100 Main Street, Springfield, IL 62701",
          "phone": "(217) 555-0100", "website": "https://riverside-imaging.example"}


def _median_us(fn: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def run(quick: bool) -> list[dict[str, Any]]:
    from mailer.lint import LintSettings, check_rendered, lint_template_dir
    from mailer.personalize import FastTemplate
    from mailer.templates import compile_template

    settings = LintSettings(center_phone=CENTER["phone"], center_address=CENTER["postal_address"],
                            center_website=CENTER["website"], sender_domains=("riverside-imaging.example",))
    per_template, per_recipient = (5, 500) if quick else (20, 5000)
    rows: list[dict[str, Any]] = []
    for name in TEMPLATES:
        path = ROOT / "templates" / name
        compile_us = _median_us(lambda path=path: compile_template(path), per_template)
        lint_us = _median_us(lambda path=path: lint_template_dir(path, settings), per_template)
        t = compile_template(path)
        contexts = [{"contact": {"first_name": f"Pat{i}", "preferred_name": "", "language": "en"}, "center": CENTER,
                     "campaign": {"name": "bench"}, "unsubscribe_url": f"https://riverside-imaging.example/u/{secrets.token_urlsafe(16)}"}
                    for i in range(per_recipient)]
        t0 = time.perf_counter()
        rendered = [t.render(c) for c in contexts]
        render_us = (time.perf_counter() - t0) / per_recipient * 1e6
        values = ["osteopenia", "hypertension", "mri knee", "2023-04-11", "asthma"]
        t0 = time.perf_counter()
        for r in rendered:
            check_rendered(r.parts(), recipient_values=values, settings=settings)
        check_us = (time.perf_counter() - t0) / per_recipient * 1e6
        fast = FastTemplate(t, center=CENTER, campaign={"name": "bench"},
                            unsubscribe_base="https://riverside-imaging.example/u/")
        t0 = time.perf_counter()
        for c in contexts:
            fast.render(c["contact"], c["unsubscribe_url"]).blocking_rules(values, settings)
        fast_us = (time.perf_counter() - t0) / per_recipient * 1e6
        size = len(rendered[0].html) + len(rendered[0].text)
        rows += [
            {"measure": f"{name}: compile (sandbox, PHI-1 check, CSS inline, hash)", "value": compile_us / 1000,
             "unit": "ms/template", "note": f"median of {per_template}; once per campaign"},
            {"measure": f"{name}: full lint", "value": lint_us / 1000, "unit": "ms/template",
             "note": f"median of {per_template}"},
            {"measure": f"{name}: render per recipient", "value": render_us, "unit": "µs",
             "note": f"HTML + text + subject, {size / 1024:.1f} KB, CSS already inlined"},
            {"measure": f"{name}: send-time rendered check", "value": check_us, "unit": "µs",
             "note": "Safe Harbor patterns + 5 of the recipient's values"},
            {"measure": f"{name}: skeleton render + incremental check", "value": fast_us, "unit": "µs",
             "note": f"FastTemplate, same recipients and values; the two rows above: {render_us + check_us:.0f} µs"},
        ]
    return rows
