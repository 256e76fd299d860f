"""A piece of template text and where it sits in its file, so findings point at the right place."""

from __future__ import annotations

from dataclasses import dataclass, field

HTML = "html"
TEXT = "text"
HEADER_PARTS = ("subject", "preheader", "from_name")


@dataclass(frozen=True)
class Source:
    """Text of one template part; `line0`/`col0` locate text[0] in PATH (1-based).

    Body files start at 1:1; a subject from template.toml starts inside its quotes.
    """

    path: str
    text: str
    kind: str  # "html" | "text" | "subject" | "preheader" | "from_name"
    line0: int = 1
    col0: int = 1
    lines: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.text.split("\n")))

    def position(self, offset: int) -> tuple[int, int]:
        """(line, column) in the file of character OFFSET of the text."""
        offset = max(0, min(offset, len(self.text)))
        nl = self.text.rfind("\n", 0, offset)
        line = self.line0 + self.text.count("\n", 0, offset)
        col = self.col0 + offset if nl == -1 else offset - nl
        return line, col

    def locate(self, lineno: int, needle: str = "") -> tuple[int, int]:
        """(line, column) in the file of NEEDLE on text line LINENO (1-based), or its start.

        An attribute is looked for as `.name` or `'name'` first, so `name` does not land
        inside `first_name`.
        """
        lineno = max(1, min(lineno, len(self.lines)))
        start = sum(len(s) + 1 for s in self.lines[: lineno - 1])
        text = self.lines[lineno - 1]
        idx = -1
        for probe, shift in ((f".{needle}", 1), (f"'{needle}'", 1), (f'"{needle}"', 1), (needle, 0)) if needle else ():
            idx = text.find(probe)
            if idx != -1:
                idx += shift
                break
        return self.position(start + max(idx, 0))
