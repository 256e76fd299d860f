"""Per-recipient messages from a skeleton: render once per recipient shape, fill in values.

Rendering the five parts with Jinja and running the send-time PHI check cost ~90 µs a
message, and nearly all of it repeats work that is the same for every recipient
(perf-notes: "build the message skeleton once per campaign and fill in only what
differs per recipient"). A campaign's context differs per recipient only in
contact.first_name, contact.preferred_name, contact.language and unsubscribe_url. So
FastTemplate renders every part once per *shape* - (first name given?, preferred name
given?, unsubscribe URL given?, language) - with sentinel strings in place of the three
values, splits the output on the sentinels into a skeleton, and per recipient only pastes
the values in: HTML-escaped where the environment autoescapes (the HTML part), raw
elsewhere, and the headers whitespace-normalised after filling, as
CompiledTemplate.render does.

Why the result is byte-identical to CompiledTemplate.render:

1. Static whitelist. The constructor parses the five sources with the environment's own
   parser and walks the AST. A per-recipient value may only be printed as it is (a
   child of {{ }}, possibly through `or`, `and`, `a if c else b`) or tested for
   truthiness (`if`, `not`, and `or`/`and`/`a if c else b` inside a test); only
   `{{ }}` and `{% if %}` statements may occur. The output is then a function of the
   shape alone, with each value's text pasted at fixed places: nothing can branch on,
   transform, measure, store or loop over a value, and the shape fixes every branch.
   Anything else (a filter, a comparison, a call, `~`, `set`, `for`, macros, includes,
   `random`, `lipsum`) makes the template ineligible: every recipient gets the full
   render. contact.language is allowed anywhere: it is part of the shape, never pasted.
2. Double-sentinel verification. Per shape every part is rendered twice, with two sets
   of random letters-only, mixed-case sentinels of different lengths, and the second
   render must equal the first skeleton filled with the second sentinels. This is the
   backstop for a template that passed (1) but does not paste values verbatim after all
   (compiled code that differs from the kept source): output that depends on a value's
   length, changes its case or drops it fails, and that shape falls back to the full
   render. It is a test, not a proof; (1) is the proof.
3. Fallback. An ineligible template, an unverified shape, a contact that is not a dict
   or a value that is not a plain str all go through CompiledTemplate.render, which
   raises the usual TemplateError (PHI-1) wherever it would. For a verified shape the
   branches taken equal the sentinel renders', which raised nothing.

The send-time check is incremental in the same way. `Filled.blocking_rules` returns
exactly the blocking rule IDs of `check_rendered` (PHI-2, PHI-3, PHI-5), but see the
last paragraph:

- Safe Harbor (PHI-3, PHI-5): a line's scan sees only the line and the previous line's
  tail, so only a line holding a value and the line after it can change. Every other
  line, with the line before it, is static text of the shape: scanned once per shape
  and LintSettings. The changing lines are scanned per message, memoised on the values
  they hold (a repeated first name costs a dict lookup).
- The recipient's clinical values (PHI-2): the shape's static text is searched once per
  spelling, with a pad letter at each value so an occurrence touching a value is not
  counted there; per message only headers holding a value and a window of characters
  around each value are searched. A window reaches past the longest spelling's word
  characters and ends next to a character that is not a letter or digit, so every
  occurrence touching a value lies inside one and the whole-word test at its ends is
  the message's own.

Sentinels never reach a scanned line. Memo entries that hold a value (a name, a URL, a
clinical value) are kept only once two messages had them, like rendered._LineCache, so
nothing unique to one recipient outlives its message but a hash. Findings and reasons
name rule IDs and constructs, never a value (style rule 5).

One deliberate difference from the full check: given `unsubscribe_base`, an unsubscribe
URL that is that base plus a token in mailer's token alphabet is scanned with a fixed
placeholder for the token. The token is mailer's own random value (PHI-6), never the
recipient's data; scanned, it only finds chance look-alikes (a digit run shaped like an
SSN) that would block a recipient for nothing, and being unique it could never be
memoised (~20 µs a message). The base, and any other URL, is scanned as it is.
"""

from __future__ import annotations

import bisect
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from jinja2 import nodes
from markupsafe import escape

from mailer.errors import TemplateError
from mailer.lint.findings import CODES, ERROR
from mailer.lint.patterns import Hit
from mailer.lint.rendered import _cache_for, _find_words, _needles, _scan_lines, check_rendered
from mailer.lint.settings import LintSettings
from mailer.memo import RepeatMemo
from mailer.templates import CompiledTemplate, Rendered

__all__ = ["FastTemplate", "Filled"]

PARTS = ("subject", "preheader", "from_name", "html", "text")
_HEADERS = frozenset({"subject", "preheader", "from_name"})
_CONTACT_FIELDS = frozenset({"first_name", "preferred_name", "language"})
_PRINTED, _TESTED, _USED = "printed", "tested", "used"
_NONDETERMINISTIC = frozenset({"random", "lipsum"})  # a filter and a global: differ per call
_MAX_SHAPES = 64
_MAX_CACHED = 4096
_SENTINEL_LENGTHS = (16, 23)  # different lengths: output that depends on a length shows
_BLOCKING = {code: rule for code, (rule, severity, _) in CODES.items() if severity == ERROR}
_SEPARATOR = re.compile(r"[ \t\r\n\f\v\xa0+]|&nbsp;|%20")  # what _find_words skips between words
_PAD_CHARS = string.ascii_lowercase + string.digits + "αβγδεζηθικλμνξοπρστυφχψω"
_HTML_SPECIAL = re.compile(r"[<>&'\"]").search  # what markupsafe.escape changes
_NONE: frozenset[str] = frozenset()
_SIGMA = "\u03a3"  # the one character whose lower() depends on its neighbours


# -- static eligibility ------------------------------------------------------------------
class _Ineligible(Exception):
    """Why a template cannot be filled from a skeleton (names a construct, never a value)."""


def _ref(node: nodes.Node) -> str | None:
    """'first_name', 'preferred_name', 'language', 'unsubscribe_url' or None."""
    if isinstance(node, nodes.Name):
        return "unsubscribe_url" if node.name == "unsubscribe_url" and node.ctx == "load" else None
    if isinstance(node, nodes.Getattr):
        key: object = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
    else:
        return None
    inner = node.node
    if isinstance(inner, nodes.Name) and inner.name == "contact" and key in _CONTACT_FIELDS:
        return str(key)
    return None


def _label(ref: str) -> str:
    return ref if ref == "unsubscribe_url" else f"contact.{ref}"


class _Walker:
    """Checks one part's AST against the whitelist; raises _Ineligible."""

    def __init__(self, part: str) -> None:
        self.part = part

    def _fail(self, node: nodes.Node, what: str) -> _Ineligible:
        return _Ineligible(f"{self.part} line {getattr(node, 'lineno', '?')}: {what}")

    def stmt(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Template):
            for child in node.body:
                self.stmt(child)
        elif isinstance(node, nodes.Output):
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    self.expr(child, _PRINTED)
        elif isinstance(node, nodes.If):
            self.expr(node.test, _TESTED)
            for child in (*node.body, *node.elif_, *node.else_):
                self.stmt(child)
        else:
            raise self._fail(node, f"a {type(node).__name__} statement is not supported, only {{{{ }}}} and if")

    def expr(self, node: nodes.Node, pos: str) -> None:
        ref = _ref(node)
        if ref is not None:
            if ref != "language" and pos == _USED:
                raise self._fail(node, f"{_label(ref)} is used in an expression; only printing or testing it is supported")
            return
        if isinstance(node, nodes.Name) and node.name == "contact":
            raise self._fail(node, "contact is used other than as contact.first_name/preferred_name/language")
        # `a or b`, `a and b`, `a if c else b` yield one operand unchanged (printed) or
        # pass its truthiness on (tested); `not a` only ever looks at a's truthiness.
        if isinstance(node, (nodes.Or, nodes.And)):
            self.expr(node.left, pos)
            self.expr(node.right, pos)
        elif isinstance(node, nodes.CondExpr):
            self.expr(node.test, _TESTED)
            self.expr(node.expr1, pos)
            if node.expr2 is not None:
                self.expr(node.expr2, pos)
        elif isinstance(node, nodes.Not):
            self.expr(node.node, _TESTED)
        else:
            if (isinstance(node, nodes.Filter) and node.name in _NONDETERMINISTIC) or (
                    isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name)
                    and node.node.name in _NONDETERMINISTIC):
                raise self._fail(node, "random output cannot be rendered once per shape")
            for child in node.iter_child_nodes():
                self.expr(child, _USED)


def _sources(template: CompiledTemplate) -> dict[str, tuple[Any, str]]:
    """Part -> (its Jinja template, its source); raises _Ineligible when a source is not kept."""
    if template.html_source is None or template.text_source is None:
        raise _Ineligible("the template was compiled without keeping its sources")
    out = {"subject": (template._subject, str(template.meta.get("subject", ""))),
           "preheader": (template._preheader, str(template.meta.get("preheader", ""))),
           "html": (template._html, template.html_source),
           "text": (template._text, template.text_source)}
    if template.static_from_name is None:
        out["from_name"] = (template._from_name, str(template.meta.get("from_name", "")))
    return out


def _check_eligible(template: CompiledTemplate) -> dict[str, bool]:
    """Part -> autoescaped?, or raises _Ineligible (the static half of the safety argument)."""
    escaped: dict[str, bool] = {}
    for part, (compiled, source) in _sources(template).items():
        env = compiled.environment
        if not isinstance(env.autoescape, bool) or env.finalize is not None:
            raise _Ineligible(f"{part}: the environment's autoescape or finalize is not fixed")
        try:
            tree = env.parse(source)
        except Exception as err:  # it compiled once; a source that no longer parses is not the one compiled
            raise _Ineligible(f"{part}: the kept source does not parse ({type(err).__name__})") from None
        _Walker(part).stmt(tree)
        escaped[part] = env.autoescape
    return escaped


# -- skeletons ---------------------------------------------------------------------------
Piece = str | int  # static text, or a value's slot: 0 first_name, 1 preferred_name, 2 unsubscribe_url
Values = tuple[str, str, str]


def _normalize(pieces: Iterable[Piece]) -> list[Piece]:
    """Text and slots alternating, starting and ending with (possibly empty) text."""
    out: list[Piece] = []
    text = ""
    for piece in pieces:
        if isinstance(piece, int):
            out += [text, piece]
            text = ""
        else:
            text += piece
    out.append(text)
    return out


class _Filler:
    """Static text with values pasted in: one tuple concatenation, one itemgetter, one join.

    str.format would re-parse a 4 KB skeleton on every call (8 µs against 0.2 µs).
    """

    __slots__ = ("statics", "slots", "_pick", "_key")

    def __init__(self, pieces: Iterable[Piece]) -> None:
        norm = _normalize(pieces)
        self.statics = tuple(p for p in norm if isinstance(p, str))
        self.slots = tuple(sorted({p for p in norm if isinstance(p, int)}))
        order, i = [], 0
        for piece in norm:
            if isinstance(piece, int):
                order.append(len(self.statics) + piece)
            else:
                order.append(i)
                i += 1
        self._pick = itemgetter(*order)
        self._key = itemgetter(*self.slots) if self.slots else None

    def __call__(self, values: tuple[str, ...]) -> str:
        picked = self._pick(self.statics + values)
        return picked if isinstance(picked, str) else "".join(picked)

    def key(self, values: tuple[str, ...]) -> object:
        """The values this text depends on (a memo key)."""
        return self._key(values) if self._key is not None else ()


def _word_chars(low: str) -> list[int]:
    """Prefix counts of the characters of LOW that can belong to a word of a value.

    The separators _find_words skips between words do not count. A separator inside an
    occurrence is always one of the tokens found here (they cannot overlap one another),
    so a stretch of an occurrence counts at most its word characters, plus at most five
    for a token cut at either end.
    """
    sep = bytearray(len(low))
    for m in _SEPARATOR.finditer(low):
        sep[m.start():m.end()] = b"\x01" * (m.end() - m.start())
    out, count = [0], 0
    for flag in sep:
        count += not flag
        out.append(count)
    return out


@dataclass(frozen=True)
class _Region:
    """Lines a value can change: each line holding a value and the line after it."""

    prev: str  # the static line before (the scan looks into its tail)
    fill: _Filler


class _Body:
    """The HTML or text part of a shape: skeleton lines, the lines a value can change."""

    def __init__(self, name: str, pieces: list[Piece], escaped: bool) -> None:
        self.name = name
        self.escaped = escaped
        pieces = _normalize(pieces)
        self.fill = _Filler(pieces)
        lines: list[list[Piece]] = [[]]
        for piece in pieces:
            if isinstance(piece, int):
                lines[-1].append(piece)
                continue
            first, *rest = piece.split("\n")
            lines[-1].append(first)
            lines.extend([seg] for seg in rest)
        n = len(lines)
        self.slot_line = [any(isinstance(p, int) for p in line) for line in lines]
        self.static_text = ["" if slot else "".join(p for p in line if isinstance(p, str))
                            for line, slot in zip(lines, self.slot_line, strict=True)]
        self._lines = lines
        dynamic = [False] * n
        for k in range(n):
            if self.slot_line[k]:
                dynamic[k] = True
                if k + 1 < n:
                    dynamic[k + 1] = True  # its scan looks back into the value's line
        # Safe Harbor: runs of dynamic lines with the (static) line before; the other lines
        # are static, and so is the line before each of them.
        self.regions: list[_Region] = []
        self.static_lines: list[tuple[str, str]] = []
        k = 0
        while k < n:
            prev = self.static_text[k - 1] if k else ""
            if not dynamic[k]:
                self.static_lines.append((prev, self.static_text[k]))
                k += 1
                continue
            end = k
            while end < n and dynamic[end]:
                end += 1
            self.regions.append(_Region(prev, self._lines_filler(k, end)))
            k = end
        # Value search: the static text between values, lower-cased, and the values' order.
        self.sigma = any(_SIGMA in p for p in pieces if isinstance(p, str))
        self.segments = [p.lower() for p in pieces if isinstance(p, str)]
        self.slot_order = [p for p in pieces if isinstance(p, int)]
        self._counts = [_word_chars(seg) for seg in self.segments]

    def _lines_filler(self, start: int, end: int) -> _Filler:
        pieces: list[Piece] = []
        for k in range(start, end):
            if k > start:
                pieces.append("\n")
            pieces.extend(self._lines[k])
        return _Filler(pieces)

    def _left(self, j: int, target: int) -> int:
        """Start, in segment J, of the context before the value that follows it (0: all)."""
        seg, counts = self.segments[j], self._counts[j]
        if counts[-1] < target:
            return 0
        s = bisect.bisect_right(counts, counts[-1] - target) - 1
        while s > 0 and seg[s - 1].isalnum():
            s -= 1
        return s

    def _right(self, j: int, target: int) -> int:
        """End, in segment J, of the context after the value before it (len: all)."""
        seg, counts = self.segments[j], self._counts[j]
        if counts[-1] < target:
            return len(seg)
        e = bisect.bisect_left(counts, target)
        while e < len(seg) and seg[e].isalnum():
            e += 1
        return e

    def windows(self, need: int, offset: int) -> list[Piece]:
        """The lower-cased text around every value, windows separated by NUL (PHI-2).

        A window reaches out on either side until the static text holds NEED + 10 word
        characters, then on to a character that is not a letter or digit; if that runs
        into another value or its context, the windows merge; at the part's ends it
        stops. So an occurrence of a spelling of fewer than NEED word characters that
        touches a value lies inside one window, and at each window end the whole-word
        test sees what it sees in the whole message (no letter or digit, or the part's
        end). Slots are shifted by OFFSET (3: the escaped values).
        """
        target = need + 10
        spans: list[list[int]] = []  # [first segment, start in it, last segment, end in it]
        for j in range(len(self.slot_order)):
            s = self._left(j, target)
            e = self._right(j + 1, target)
            if spans and spans[-1][3] >= s:  # overlaps, or s == 0: the previous value is next to it
                spans[-1][2:] = [j + 1, e]
            else:
                spans.append([j, s, j + 1, e])
        out: list[Piece] = []
        for first, s, last, e in spans:
            if out:
                out.append("\x00")
            out.append(self.segments[first][s:])
            for t in range(first, last):
                out.append(self.slot_order[t] + offset)
                out.append(self.segments[t + 1] if t + 1 < last else self.segments[last][:e])
        return out


def _pad(words: tuple[str, ...]) -> str | None:
    """A letter or digit that no occurrence of WORDS can contain (words nor separators)."""
    used = set("".join(words)) | set("nbsp20")
    return next((ch for ch in _PAD_CHARS if ch not in used), None)


def _found(low: str, words: tuple[str, ...]) -> bool:
    return next(_find_words(low, words), None) is not None


def _rules(hits: list[Hit]) -> frozenset[str]:
    if not hits:
        return _NONE
    return frozenset(rule for rule in map(_BLOCKING.get, (h.code for h in hits)) if rule is not None)


class _Checks:
    """One shape's check results for one LintSettings: static lines once, the rest memoised.

    A memo entry holds values (a first name, a URL), so, like rendered._LineCache, it is
    kept only once two messages had the same key; a key unique to one recipient leaves
    only its hash behind.
    """

    def __init__(self, shape: _Shape, settings: LintSettings) -> None:
        self.settings = settings
        self.cache = _cache_for(settings)
        rules: set[str] = set()
        for text in shape.texts.values():
            rules |= _rules(_scan_lines(text, settings, self.cache))
        for body in shape.bodies:
            for prev, line in body.static_lines:
                rules |= _rules(_scan_lines(line, settings, self.cache, prev=prev))
        self.static_rules = frozenset(rules)
        # (which header or region, the values it holds) -> blocking rules
        self.memo: RepeatMemo[tuple[int, object], frozenset[str]] = RepeatMemo(_MAX_CACHED)

    def scan(self, key: tuple[int, object], text: str, prev: str) -> frozenset[str]:
        """Blocking rules of TEXT after the line PREV, remembered under KEY (see `memo`)."""
        rules = _rules(_scan_lines(text, self.settings, self.cache, prev=prev))
        self.memo.offer(key, rules)
        return rules


class _Shape:
    """One recipient shape's verified skeleton, its static check results, its caches."""

    def __init__(self, texts: dict[str, str], headers: dict[str, tuple[_Filler, bool]],
                 bodies: list[_Body]) -> None:
        self.texts = texts  # parts without a value: their final text
        self.headers = headers  # headers holding a value: filler, escaped? (normalised after filling)
        self.bodies = bodies  # html/text parts holding a value
        plan: list[tuple[int, Any, bool]] = []
        for name in PARTS:
            if name in texts:
                plan.append((0, texts[name], False))
            elif name in headers:
                plan.append((1, headers[name][0], headers[name][1]))
            else:
                body = next(b for b in bodies if b.name == name)
                plan.append((2, body.fill, body.escaped))
        self.plan = plan
        # What blocking_rules scans per message: (id, filler, escaped?, line before, header).
        dynamic = [(filler, escaped, "", name) for name, (filler, escaped) in headers.items()]
        for body in bodies:
            dynamic += [(region.fill, body.escaped, region.prev, "") for region in body.regions]
        self.dynamic = [(i, *entry) for i, entry in enumerate(dynamic)]
        self.escapes = any(escaped for kind, _, escaped in plan if kind)
        self._checks: dict[LintSettings, _Checks] = {}
        self._last: _Checks | None = None
        self._low_texts = [text.lower() for text in texts.values()]
        self._static_values: RepeatMemo[tuple[str, ...], bool | None] = RepeatMemo(_MAX_CACHED)
        self._windows: dict[int, _Filler] = {}

    def windows(self, need: int) -> _Filler:
        """Every body's value windows (see _Body.windows), filled from raw + escaped values."""
        filler = self._windows.get(need)
        if filler is None:
            pieces: list[Piece] = []
            for body in self.bodies:
                if not body.sigma:
                    pieces += ["\x00", *body.windows(need, 3 if body.escaped else 0)]
            filler = _Filler(pieces)
            if len(self._windows) >= 64:
                self._windows.clear()
            self._windows[need] = filler
        return filler

    def fill(self, raw: Values, esc: Values) -> list[str]:
        out = []
        for kind, what, escaped in self.plan:
            if kind == 0:
                out.append(what)
            elif kind == 1:
                out.append(" ".join(what(esc if escaped else raw).split()))
            else:
                out.append(what(esc if escaped else raw))
        return out

    def checks(self, settings: LintSettings) -> _Checks:
        last = self._last
        if last is not None and last.settings is settings:
            return last
        checks = self._checks.get(settings)
        if checks is None:
            if len(self._checks) >= 8:
                self._checks.clear()
            checks = self._checks[settings] = _Checks(self, settings)
        self._last = checks
        return checks

    def static_value(self, words: tuple[str, ...]) -> bool | None:
        """Does WORDS occur in static text with static neighbours? None: cannot tell.

        The text between two values is searched padded with a letter that cannot be part
        of an occurrence, so one that touches a value is left to the windows. Like the
        check memo, a spelling (a clinical value) is remembered only once two messages
        asked for it.
        """
        if words in self._static_values:
            return self._static_values[words]
        found: bool | None = any(_found(t, words) for t in self._low_texts)
        if not found:
            pad = _pad(words)
            for body in self.bodies:
                if body.sigma:
                    continue  # searched whole, per message
                if pad is None:
                    found = None
                    break
                last = len(body.segments) - 1
                if any(_found(("" if i == 0 else pad) + seg + ("" if i == last else pad), words)
                       for i, seg in enumerate(body.segments)):
                    found = True
                    break
        self._static_values.offer(words, found)
        return found


_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}\Z").match  # crypto.new_token's alphabet (urlsafe base64)
_PLACEHOLDER = "mailerunsubscribetoken"


def _esc(value: str) -> str:
    return str(escape(value)) if _HTML_SPECIAL(value) else value


# -- the filled message and its check ------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Filled(Rendered):
    """A rendered message that remembers its shape, so the send-time check can be incremental.

    Compares equal to the Rendered that CompiledTemplate.render returns for the same context.
    """

    shape: _Shape | None = field(default=None, repr=False)
    values: Values = field(default=("", "", ""), repr=False)
    escaped_values: Values = field(default=("", "", ""), repr=False)
    # what the check scans: `values` with mailer's own unsubscribe token as a placeholder
    scanned: Values | None = field(default=None, repr=False)
    scanned_escaped: Values | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rendered):
            return self.parts() == other.parts()
        return NotImplemented

    __hash__ = Rendered.__hash__

    @property
    def personalized(self) -> bool:
        """True when filled from a verified skeleton, False after a full render."""
        return self.shape is not None

    def blocking_rules(self, recipient_values: Sequence[str], settings: LintSettings) -> list[str]:
        """The rule IDs of check_rendered's blocking findings (PHI-2, PHI-3, PHI-5), sorted.

        Scans only the lines a value can change; the rest is cached per shape. Any rule
        means: do not send this message.
        """
        shape = self.shape
        needles = _needles(recipient_values) if recipient_values else []
        spellings = [words for spelled in needles for words in spelled]
        # A NUL inside a value could match across two parts of check_rendered's joined text.
        if shape is None or any("\x00" in w for words in spellings for w in words):
            findings = check_rendered(self.parts(), recipient_values=recipient_values, settings=settings)
            return sorted({f.rule for f in findings if f.blocking})
        checks = shape.checks(settings)
        memo = checks.memo
        rules = set(checks.static_rules)
        raw, esc = self._scanned()
        for i, fill, escaped, prev, header in shape.dynamic:
            vals = esc if escaped else raw
            key = (i, fill.key(vals))
            found = memo.get(key)
            if found is None:  # a header is scanned as filled and normalised
                found = checks.scan(key, getattr(self, header) if header else fill(vals), prev)
            if found:
                rules |= found
        if spellings and "PHI-2" not in rules and self._has_value(shape, spellings):
            rules.add("PHI-2")
        return sorted(rules)

    def _scanned(self) -> tuple[Values, Values]:
        if self.scanned is not None and self.scanned_escaped is not None:
            return self.scanned, self.scanned_escaped
        return self.values, self.escaped_values

    def _has_value(self, shape: _Shape, spellings: list[tuple[str, ...]]) -> bool:
        """PHI-2: does any spelling of the recipient's values occur as whole words?"""
        whole = False
        for words in spellings:
            found = shape.static_value(words)
            if found:
                return True
            whole = whole or found is None
        texts = [getattr(self, name).lower() for name in shape.headers]
        raw, esc = self._scanned()
        # lower() works per character except for a capital sigma, which looks at its
        # neighbours: without one, lower-cased values pasted into lower-cased static text
        # give the lower-cased message.
        if whole or any(_SIGMA in v for v in raw):
            texts += [getattr(self, body.name).lower() for body in shape.bodies]
            texts += [text.lower() for text in shape.texts.values()] if whole else []
        else:
            longest = max(map(len, map(" ".join, spellings)))  # >= its word characters
            windows = shape.windows((longest + 8) // 8 * 8)  # > longest; bucketed
            texts.append(windows((raw[0].lower(), raw[1].lower(), raw[2].lower(),
                                  esc[0].lower(), esc[1].lower(), esc[2].lower())))
            texts += [getattr(self, body.name).lower() for body in shape.bodies if body.sigma]
        # One search: NUL is no separator and no letter, so, like the line and part ends
        # the texts end at, it stops an occurrence and passes the whole-word test (no
        # spelling holds a NUL, see blocking_rules).
        low = "\x00".join(texts)
        return any(words[0] in low and _found(low, words) for words in spellings)


# -- the template ------------------------------------------------------------------------
class FastTemplate:
    """A CompiledTemplate bound to one campaign's center and name, rendered per shape.

    `eligible` and `reason` say whether the static whitelist admits the skeleton path;
    `reason` names a construct and a line of the template, never a value.
    """

    def __init__(self, template: CompiledTemplate, *, center: Mapping[str, str],
                 campaign: Mapping[str, str], unsubscribe_base: str = "") -> None:
        if not isinstance(center, Mapping) or not isinstance(campaign, Mapping):
            raise TemplateError(f"template {template.name}: center and campaign must be mappings")
        self.template = template
        # An unsubscribe URL that is this base plus a token mailer made (PHI-6: random, never
        # the recipient's data) is scanned with a fixed placeholder for the token: scanning
        # 128 random bits finds only chance look-alikes (digit runs, words) and could block
        # a recipient for nothing; the base itself is still scanned.
        self._own_base = unsubscribe_base
        self._center = center
        self._campaign = campaign
        self._shapes: dict[tuple[bool, bool, bool, str], _Shape | None] = {}
        self._escaped: dict[str, bool] = {}
        self._avoid: tuple[str, ...] = ()
        try:
            self._escaped = _check_eligible(template)
        except _Ineligible as err:
            self.eligible, self.reason = False, str(err)
        else:
            self.eligible, self.reason = True, ""
            known = [source for _, source in _sources(template).values()]
            self._avoid = (*known, *(str(v) for v in (*center.values(), *campaign.values())))

    def render(self, contact: Mapping[str, str], unsubscribe_url: str) -> Filled:
        """Exactly CompiledTemplate.render's output for this recipient's context (PHI-1 errors too)."""
        if self.eligible and type(contact) is dict and type(unsubscribe_url) is str:
            first = contact.get("first_name")
            preferred = contact.get("preferred_name")
            language = contact.get("language")
            if type(first) is str and type(preferred) is str and type(language) is str:
                key = (first != "", preferred != "", unsubscribe_url != "", language)
                shape = self._shapes[key] if key in self._shapes else self._build(key)
                if shape is not None:
                    raw = (first, preferred, unsubscribe_url)
                    esc = (_esc(first), _esc(preferred), _esc(unsubscribe_url)) if shape.escapes else raw
                    subject, preheader, from_name, html, text = shape.fill(raw, esc)
                    scanned = scanned_esc = None
                    base = self._own_base
                    if base and unsubscribe_url.startswith(base) and _TOKEN(unsubscribe_url, len(base)):
                        url = base + _PLACEHOLDER
                        scanned = (first, preferred, url)
                        scanned_esc = (esc[0], esc[1], _esc(url)) if shape.escapes else scanned
                    return Filled(subject, preheader, from_name, html, text, shape=shape, values=raw,
                                  escaped_values=esc, scanned=scanned, scanned_escaped=scanned_esc)
        r = self.template.render(self._context(contact, unsubscribe_url))
        return Filled(r.subject, r.preheader, r.from_name, r.html, r.text)

    def _context(self, contact: object, unsubscribe_url: object) -> dict[str, Any]:
        return {"contact": contact, "center": self._center, "campaign": self._campaign,
                "unsubscribe_url": unsubscribe_url}

    def _sentinels(self, length: int, taken: Sequence[str]) -> Values:
        """Three random letters-only strings, mixed case, found nowhere in the template."""
        out: list[str] = []
        while len(out) < 3:
            s = "".join(secrets.choice(string.ascii_letters) for _ in range(length))
            if s.islower() or s.isupper() or any(s in t or t in s for t in (*out, *taken)):
                continue
            if not any(s in known for known in self._avoid):
                out.append(s)
        return out[0], out[1], out[2]

    def _render_raw(self, key: tuple[bool, bool, bool, str], values: Values) -> dict[str, str]:
        first, preferred, url, language = key
        context = self._context({"first_name": values[0] if first else "",
                                 "preferred_name": values[1] if preferred else "",
                                 "language": language}, values[2] if url else "")
        return {part: compiled.render(context) for part, (compiled, _) in _sources(self.template).items()}

    def _build(self, key: tuple[bool, bool, bool, str]) -> _Shape | None:
        """Render the shape twice with sentinels, split, verify; None means: full render."""
        a = self._sentinels(_SENTINEL_LENGTHS[0], ())
        b = self._sentinels(_SENTINEL_LENGTHS[1], a)
        try:
            first, second = self._render_raw(key, a), self._render_raw(key, b)
        except Exception:  # the full render reproduces the error (PHI-1) for the real recipient
            shape = None
        else:
            shape = self._skeleton(key, a, b, first, second)
        if len(self._shapes) >= _MAX_SHAPES:
            self._shapes.clear()
        self._shapes[key] = shape
        return shape

    def _skeleton(self, key: tuple[bool, bool, bool, str], a: Values, b: Values,
                  first: dict[str, str], second: dict[str, str]) -> _Shape | None:
        on = [s for s, used in zip(a, key[:3], strict=True) if used]
        slot = {s: i for i, s in enumerate(a)}
        splitter = re.compile("(" + "|".join(map(re.escape, on)) + ")") if on else None
        texts: dict[str, str] = {}
        headers: dict[str, tuple[_Filler, bool]] = {}
        bodies: list[_Body] = []
        if self.template.static_from_name is not None:
            texts["from_name"] = self.template.static_from_name
        for name, out in first.items():
            chunks = splitter.split(out) if splitter else [out]
            pieces: list[Piece] = [c if i % 2 == 0 else slot[c] for i, c in enumerate(chunks)]
            filler = _Filler(pieces)
            if filler(b) != second[name]:
                return None  # not pasted verbatim after all: this shape falls back
            if not filler.slots:
                texts[name] = " ".join(out.split()) if name in _HEADERS else out
            elif name in _HEADERS:
                headers[name] = (filler, self._escaped[name])
            else:
                bodies.append(_Body(name, pieces, self._escaped[name]))
        return _Shape(texts, headers, bodies)
