"""Send-time check of one rendered message (issue 5): the last gate before SMTP.

It blocks a message when the recipient's own clinical values, or any Safe Harbor
pattern, appear in a header or body part. Findings name the part and the pattern class,
never the value (style rule 5), so they can go to the ledger as they are.

It runs once per message, so it is built for speed. Recipient values are found with
`str.find` in one lower-cased copy of all parts. The Safe Harbor scan is memoised per
line: messages of a campaign share almost every line, so after the first messages only
the lines that differ (the greeting, the unsubscribe link) are scanned again. A line's
text is kept only once two messages contained it, so a line unique to one recipient is
never held beyond its message (only its hash is).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from urllib.parse import quote

from markupsafe import escape

from mailer.lint.findings import Finding, finding
from mailer.lint.patterns import Hit, scan
from mailer.lint.settings import LintSettings
from mailer.memo import RepeatMemo

_TAIL = 64  # characters of the previous line a pattern may look back into (dates, "fax")
_CACHE_LINES = 4096
_SPACE = frozenset(" \t\r\n\f\v\xa0")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789 ")


def check_rendered(
    parts: Mapping[str, str], *, recipient_values: Iterable[str], settings: LintSettings
) -> list[Finding]:
    """Findings for one rendered message; any error means: do not send it (PHI-2, PHI-3, PHI-5).

    PARTS maps "subject", "preheader", "from_name", "html", "text" or any header name to
    its rendered text. RECIPIENT_VALUES are this recipient's clinical values.
    """
    items = [(name, text) for name, text in parts.items() if text]
    out = _value_findings(items, _needles(recipient_values))
    cache = _cache_for(settings)
    for name, text in items:
        for hit in _scan_lines(text, settings, cache):
            line, col = _position(text, hit.start)
            out.append(finding(hit.code, f"rendered:{name}", line, col, f"rendered {name} contains a {hit.what}"))
    return out


# -- the recipient's own clinical values (PHI-2) ---------------------------------------
def _needles(values: Iterable[str]) -> list[tuple[tuple[str, ...], ...]]:
    return [n for n in map(_spellings, values) if n]


@lru_cache(maxsize=4096)
def _spellings(value: str) -> tuple[tuple[str, ...], ...]:
    """VALUE as word tuples: plain, and HTML-escaped and URL-encoded where those differ.

    Cached: a campaign's recipients share a small vocabulary of clinical values.
    """
    plain = " ".join(str(value).lower().split())
    if sum(ch.isalnum() for ch in plain) < 2:
        return ()  # one character would match everywhere and identifies nothing
    spellings = [plain]
    if not _PLAIN.issuperset(plain):  # separators are handled in _find_words; this is for & ' < %
        spellings += [str(escape(plain)), quote(plain, safe=" ")]
    return tuple(tuple(s.split(" ")) for s in dict.fromkeys(spellings))


def _value_findings(items: list[tuple[str, str]], needles: list[tuple[tuple[str, ...], ...]]) -> list[Finding]:
    if not needles or not items:
        return []
    joined = "\x00".join(text for _, text in items).lower()
    starts, pos = [], 0
    for _, text in items:
        starts.append(pos)
        pos += len(text) + 1
    out: list[Finding] = []
    for spellings in needles:
        reported: set[int] = set()
        for words in spellings:
            for at in _find_words(joined, words):
                part = bisect.bisect_right(starts, at) - 1
                if part in reported:
                    continue
                reported.add(part)
                name, text = items[part]
                line, col = _position(text, at - starts[part])
                out.append(finding("PHI210", f"rendered:{name}", line, col,
                                   f"rendered {name} contains a clinical value of this recipient"))
    return out


def _find_words(low: str, words: tuple[str, ...]) -> Iterator[int]:
    """Starts of whole-word occurrences of WORDS separated by whitespace, &nbsp;, %20 or +.

    One search covers the plain, HTML and URL-encoded spellings of a multi-word value.
    """
    first = words[0]
    n = len(low)
    i = low.find(first)
    while i != -1:
        if i == 0 or not low[i - 1].isalnum():
            j = i + len(first)
            for word in words[1:]:
                k = _skip_space(low, j)
                if k == j or not low.startswith(word, k):
                    break
                j = k + len(word)
            else:
                if j >= n or not low[j].isalnum():
                    yield i
        i = low.find(first, i + 1)


def _skip_space(low: str, j: int) -> int:
    n = len(low)
    while j < n:
        ch = low[j]
        if ch in _SPACE or ch == "+":
            j += 1
        elif ch == "&" and low.startswith("&nbsp;", j):
            j += 6
        elif ch == "%" and low.startswith("%20", j):
            j += 3
        else:
            break
    return j


# -- Safe Harbor patterns (PHI-3, PHI-5), memoised per line ----------------------------
class _LineCache:
    """Scan results per line for one LintSettings.

    An entry is (tail, hits): tail is None when the result does not depend on the
    previous line, else the previous line's tail it was computed with.
    """

    def __init__(self) -> None:
        self.lines: RepeatMemo[str, tuple[str | None, tuple[Hit, ...]]] = RepeatMemo(_CACHE_LINES)

    def store(self, line: str, tail: str | None, hits: tuple[Hit, ...]) -> None:
        self.lines.offer(line, (tail, hits))


@lru_cache(maxsize=8)
def _cache_for(settings: LintSettings) -> _LineCache:
    return _LineCache()


def _scan_lines(text: str, settings: LintSettings, cache: _LineCache, *, prev: str = "") -> list[Hit]:
    """scan() line by line, the previous line's tail as context, memoised per line.

    PREV is the line before TEXT's first line, for a caller that scans only part of a
    text (mailer.personalize rescans only the lines around a recipient's values).
    """
    hits: list[Hit] = []
    get = cache.lines.get
    offset = 0
    for line in text.split("\n"):
        entry = get(line)
        if entry is None or (entry[0] is not None and entry[0] != prev[-_TAIL:]):
            tail = prev[-_TAIL:]
            context = tail + "\n" if tail else ""
            probe: list[int] = []
            n = len(context)
            found = tuple(
                Hit(h.code, h.start - n, h.end - n, h.what)
                for h in scan(context + line, settings, names=False, pos=n, probe=probe)
            )
            entry = (tail if any(p < n + _TAIL for p in probe) else None, found)
            cache.store(line, entry[0], found)
        if entry[1]:
            hits.extend(Hit(h.code, h.start + offset, h.end + offset, h.what) for h in entry[1])
        offset += len(line) + 1
        prev = line
    return hits


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
