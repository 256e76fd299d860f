"""`make lint-eval`: the lint against the labelled gen2 corpus, per half (issue 13).

For each half: leaks flagged (an `error` or `review` finding), clean templates with an
error, clean templates sent to review. A lint that only knows `warning` (the first
generation) has its warnings counted as review. The held-out half is reported as figures
only: its cases are not for tuning, so their names are not printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "lint"))

REVIEW_LIKE = frozenset({"review", "warning"})


@dataclass
class HalfResult:
    half: str
    leaks: int = 0
    leaks_flagged: int = 0
    clean: int = 0
    clean_error: int = 0
    clean_review: int = 0
    missed: list[str] = field(default_factory=list)
    false_errors: list[str] = field(default_factory=list)
    false_reviews: list[str] = field(default_factory=list)
    ms_per_template: float = 0.0

    def pct(self, n: int, d: int) -> float:
        return 100.0 * n / d if d else 0.0

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"measure": f"lint corpus {self.half}: leaks flagged", "value": self.pct(self.leaks_flagged, self.leaks),
             "unit": "%", "note": f"{self.leaks_flagged}/{self.leaks} (error or review); target >= 95 on held-out"},
            {"measure": f"lint corpus {self.half}: clean with an error", "value": self.pct(self.clean_error, self.clean),
             "unit": "%", "note": f"{self.clean_error}/{self.clean}; target 0 on held-out"},
            {"measure": f"lint corpus {self.half}: clean sent to review", "value": self.pct(self.clean_review, self.clean),
             "unit": "%", "note": f"{self.clean_review}/{self.clean}; target <= 20 on held-out"},
            {"measure": f"lint corpus {self.half}: lint time", "value": self.ms_per_template,
             "unit": "ms/template", "note": "mean CPU time over the half; target < 20"},
        ]


def evaluate(half: str) -> HalfResult:
    import gen2cases

    from mailer.lint import lint_template_dir

    result = HalfResult(half)
    cases = gen2cases.load(half)
    elapsed = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            folder = gen2cases.materialise(case, Path(tmp))
            t0 = time.process_time()
            findings = lint_template_dir(folder, gen2cases.SETTINGS)
            elapsed += time.process_time() - t0
            live = [f for f in findings if not f.waived]
            error = any(f.severity == "error" for f in live)
            review = any(f.severity in REVIEW_LIKE for f in live)
            if case.leak:
                result.leaks += 1
                if error or review:
                    result.leaks_flagged += 1
                else:
                    result.missed.append(f"{case.name} ({case.kind})")
            else:
                result.clean += 1
                if error:
                    result.clean_error += 1
                    codes = sorted({f.code for f in live if f.severity == 'error'})
                    result.false_errors.append(f"{case.name}: {' '.join(codes)}")
                elif review:
                    result.clean_review += 1
                    codes = sorted({f.code for f in live if f.severity in REVIEW_LIKE})
                    result.false_reviews.append(f"{case.name}: {' '.join(codes)}")
    result.ms_per_template = elapsed / max(1, len(cases)) * 1000
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--half", choices=("tuning", "heldout", "both"), default="both")
    ap.add_argument("--details", action="store_true", help="name the tuning cases missed or falsely flagged")
    args = ap.parse_args()
    halves = ("tuning", "heldout") if args.half == "both" else (args.half,)
    for half in halves:
        r = evaluate(half)
        print(f"{half:8} leaks flagged {r.leaks_flagged:3}/{r.leaks:<3} ({r.pct(r.leaks_flagged, r.leaks):5.1f}%)  "
              f"clean with error {r.clean_error:2}/{r.clean:<3} ({r.pct(r.clean_error, r.clean):5.1f}%)  "
              f"clean to review {r.clean_review:2}/{r.clean:<3} ({r.pct(r.clean_review, r.clean):5.1f}%)  "
              f"{r.ms_per_template:.1f} ms CPU/template")
        if args.details and half == "tuning":
            for title, items in (("missed", r.missed), ("false error", r.false_errors), ("to review", r.false_reviews)):
                for item in items:
                    print(f"    {title}: {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
