"""Refusals as values: which rule said no, for whom (counts, ids), and what would satisfy it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Refusal:
    rule: str  # a rule ID from shared/spec/rules.md, e.g. "SEG-1"
    reason: str  # no PHI: ids, counts, field names only
    fix: str = ""
    count: int | None = None
    ids: tuple[int, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "reason": self.reason,
            "fix": self.fix,
            "count": self.count,
            "ids": list(self.ids),
        }
