"""A bounded memo that keeps a result only once a second message asked for the same key.

The send path memoises per line and per value (rendered lines, quoted-printable lines,
lint results), because a campaign's messages share almost everything. But a key can
hold a recipient's name or clinical value: remembering it on first sight would keep PHI
of one recipient in memory for the rest of the run. On first sight only the key's hash
is noted; a key seen twice is shared by at least two messages and is kept. Both tables
are cleared when full, which bounds memory on a million-recipient run.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

LIMIT = 4096


class RepeatMemo(Generic[K, V]):
    def __init__(self, limit: int = LIMIT) -> None:
        self.values: dict[K, V] = {}
        self._seen: set[int] = set()
        self.limit = limit

    def __contains__(self, key: K) -> bool:
        return key in self.values

    def __getitem__(self, key: K) -> V:
        return self.values[key]

    def get(self, key: K) -> V | None:
        return self.values.get(key)

    def offer(self, key: K, value: V) -> None:
        """Remember VALUE for KEY if KEY was offered before (see the module docstring)."""
        h = hash(key)
        if h not in self._seen:
            if len(self._seen) >= self.limit:
                self._seen.clear()
            self._seen.add(h)
            return
        if len(self.values) >= self.limit:
            self.values.clear()
        self.values[key] = value
