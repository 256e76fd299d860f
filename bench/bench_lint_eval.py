"""The PHI lint against its labelled corpus (issue 13): detection and false alarms per half."""

from __future__ import annotations

from typing import Any


def run(quick: bool) -> list[dict[str, Any]]:
    from bench.lint_eval import evaluate

    return [row for half in ("tuning", "heldout") for row in evaluate(half).rows()]
