"""Segment files -> SegmentPlan, and the authorization-first decision per contact: pure, no I/O.

A segment that targets on a clinical field is condition-based marketing, so the plan
refuses it unless it names the authorization scope it relies on (SEG-1), and evaluation
checks each contact's authorization *before* its clinical fields are decrypted (SEG-2).
The store streams contacts and calls `Evaluator.decide`; this module never touches the
database, only builds SQLAlchemy expressions for the non-PHI part (`to_sql`).

Messages name files, lines, fields, operators, rule IDs and counts; never a patient value.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, not_, or_
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import ColumnElement

from mailer.authorizations import MARKETING_SCOPES, AuthorizationLike, Status, best_validity
from mailer.config import FieldSettings
from mailer.errors import SegmentFileError
from mailer.refusal import Refusal

__all__ = [
    "EXCLUSION_REASONS",
    "NON_PHI_FIELDS",
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Condition",
    "Decision",
    "Evaluator",
    "Node",
    "Not",
    "Segment",
    "SegmentCounts",
    "SegmentPlan",
    "describe",
    "field_types",
    "gate",
    "load_segment",
    "matches",
    "parse_segment",
    "plan_segment",
    "segment_hash",
    "to_sql",
]

#: Contact columns stored in clear and usable in SQL (never PHI). Type names: text, bool,
#: date, plus "list" for clinical multi-valued fields.
NON_PHI_FIELDS: Mapping[str, str] = {
    "language": "text",
    "newsletter_opt_in": "bool",
    "created_at": "date",
}

#: Operators accepted for each field type.
OPERATORS: Mapping[str, tuple[str, ...]] = {
    "text": ("equals", "in", "contains", "exists"),
    "bool": ("equals", "exists"),
    "date": ("equals", "before", "after", "within", "exists"),
    "list": ("contains", "in", "exists"),
}
ALL_OPERATORS: tuple[str, ...] = ("equals", "in", "contains", "before", "after", "within", "exists")

#: Keys of SegmentCounts.excluded_no_authorization, one per non-valid Status.
EXCLUSION_REASONS: tuple[str, ...] = tuple(str(s) for s in Status if s is not Status.VALID)

_TOP_KEYS = ("name", "description", "authorization_scope", "third_party", "match")
_COND_KEYS = ("field", "op", "value")
_NODE_KEYS = ("all", "any", "not")
_DURATION = re.compile(r"^\s*(\d{1,5})\s*([dw])\s*$", re.IGNORECASE)
_MAX_DAYS = 36_600  # about a century; keeps date arithmetic in range


# --------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Condition:
    """One test on one field. `value` is already typed: str, bool, date, timedelta
    (`within`), tuple[str, ...] (`in`)."""

    field: str
    op: str
    value: Any
    line: int = _field(default=0, compare=False)


@dataclass(frozen=True)
class AllOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = Condition | AllOf | AnyOf | Not


def iter_conditions(node: Node) -> list[Condition]:
    """Every condition in the tree, in document order."""
    if isinstance(node, Condition):
        return [node]
    if isinstance(node, Not):
        return iter_conditions(node.child)
    return [c for child in node.children for c in iter_conditions(child)]


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.days}d"
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    return repr(value)


def describe(node: Node) -> str:
    """One-line human form of a tree (segment values are the marketer's, not a patient's)."""
    if isinstance(node, Condition):
        if node.op == "exists":
            return f"{node.field} exists" if node.value else f"{node.field} does not exist"
        return f"{node.field} {node.op} {_fmt_value(node.value)}"
    if isinstance(node, Not):
        return f"not ({describe(node.child)})"
    word = "all" if isinstance(node, AllOf) else "any"
    return f"{word}(" + "; ".join(describe(c) for c in node.children) + ")"


# --------------------------------------------------------------------------- parsing


def field_types(fields: FieldSettings) -> dict[str, str]:
    """Every field a segment may use, name -> type; clinical declarations win over the
    non-PHI defaults, so a column configured as PHI is never pushed to SQL."""
    types = dict(NON_PHI_FIELDS)
    types.update(fields.clinical)
    return types


def clinical_names(fields: FieldSettings) -> frozenset[str]:
    return frozenset(fields.clinical)


def segment_hash(content: str | bytes) -> str:
    """SHA-256 (hex) of the segment file's bytes: approvals and the ledger bind to it."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


class _Locator:
    """Finds the source line of a key or value; tomllib keeps no positions.

    Walks forward with a cursor so that repeated fields resolve to successive lines,
    falling back to a search from the top; never fails (line 1 at worst)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0  # after the last located field / group key
        self.anchor = 0  # start of the line of the last located field

    def line_at(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def _search(self, pattern: str, start: int) -> re.Match[str] | None:
        rx = re.compile(pattern, re.MULTILINE)
        return rx.search(self.text, start) or rx.search(self.text, 0)

    @staticmethod
    def _key(name: str) -> str:
        return rf"""(?<![\w-])["']?{re.escape(name)}["']?\s*="""

    def key(self, name: str, *, advance: bool = False, from_anchor: bool = False) -> int:
        m = self._search(self._key(name), self.anchor if from_anchor else self.pos)
        if m is None:
            return 1
        if advance:
            self.pos = m.end()
        return self.line_at(m.start())

    def top_key(self, name: str) -> int:
        m = re.search(rf"""^\s*["']?{re.escape(name)}["']?\s*=""", self.text, re.MULTILINE)
        return self.line_at(m.start()) if m else 1

    def key_value(
        self, key: str, value: str, *, advance: bool = False, anchored: bool = False
    ) -> int | None:
        pattern = self._key(key) + rf"""\s*(["']){re.escape(value)}\1"""
        m = self._search(pattern, self.anchor if anchored else self.pos)
        if m is None:
            return None
        if advance:
            self.pos = m.end()
            self.anchor = self.text.rfind("\n", 0, m.start()) + 1
        return self.line_at(m.start())

    def section(self, name: str) -> int:
        m = re.search(rf"^\s*\[+\s*{re.escape(name)}[\].]", self.text, re.MULTILINE)
        return self.line_at(m.start()) if m else self.top_key(name)


MAX_DEPTH = 20  # nested all/any/not groups
MAX_CONDITIONS = 256  # conditions in one segment (SQL engines limit expression depth; `in` takes a list)


class _Parser:
    def __init__(self, text: str, path: str, fields: FieldSettings) -> None:
        self.path = path
        self.loc = _Locator(text)
        self.types = field_types(fields)
        self.clinical = clinical_names(fields)
        self.depth = 0
        self.conditions = 0

    def error(self, line: int, message: str, hint: str = "") -> SegmentFileError:
        return SegmentFileError(f"{self.path}:{line}: {message}", hint=hint)

    def accepted_fields(self) -> str:
        plain = ", ".join(sorted(n for n in self.types if n not in self.clinical))
        clinical = ", ".join(sorted(self.clinical)) or "(none configured)"
        return f"accepted fields: {plain} (non-PHI); {clinical} (clinical)"

    # top level ---------------------------------------------------------------

    def segment(self, data: dict[str, Any], text: str) -> Segment:
        for key in data:
            if key not in _TOP_KEYS:
                raise self.error(
                    self.loc.top_key(key)
                    if not isinstance(data[key], dict)
                    else self.loc.section(key),
                    f"unknown key '{key}'; accepted keys: {', '.join(_TOP_KEYS)}",
                )
        name = self.string(data, "name", required=True)
        description = self.string(data, "description", required=False) or ""
        scope = self.string(data, "authorization_scope", required=False)
        if scope is not None and scope not in MARKETING_SCOPES:
            raise self.error(
                self.loc.top_key("authorization_scope"),
                f"unknown authorization_scope; accepted scopes: {', '.join(MARKETING_SCOPES)}",
            )
        third_party = self.string(data, "third_party", required=False)
        if "match" not in data:
            raise self.error(
                1,
                "missing [match] table",
                hint="add a [match] table with all/any/not or one condition",
            )
        match = self.node(data["match"], where=self.loc.section("match"), label="'match'")
        assert name is not None
        return Segment(
            name=name,
            description=description,
            scope=scope,
            third_party=third_party,
            match=match,
            source_path=self.path,
            content_hash=segment_hash(text),
            declared_clinical=self.clinical,
        )

    def string(self, data: dict[str, Any], key: str, *, required: bool) -> str | None:
        if key not in data:
            if required:
                raise self.error(
                    1, f"missing required key '{key}'", hint=f'add {key} = "..." at the top'
                )
            return None
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(self.loc.top_key(key), f"'{key}' must be a non-empty string")
        return value.strip()

    # match tree ----------------------------------------------------------------

    def node(self, raw: Any, *, where: int, label: str) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.error(where, f"groups are nested more than {MAX_DEPTH} deep",
                                 hint="flatten the conditions: all/any take arrays")
            return self._node(raw, where=where, label=label)
        finally:
            self.depth -= 1

    def _node(self, raw: Any, *, where: int, label: str) -> Node:
        if not isinstance(raw, dict):
            raise self.error(
                where,
                f"{label} must be a table: {{ all = [...] }}, {{ any = [...] }}, {{ not = {{...}} }} "
                "or a condition { field = ..., op = ..., value = ... }",
            )
        node_keys = [k for k in raw if k in _NODE_KEYS]
        if node_keys:
            if len(raw) != 1:
                key = node_keys[0]
                raise self.error(
                    self.loc.key(key),
                    f"a '{key}' table must hold only '{key}'; found keys: {', '.join(raw)}",
                    hint="nest conditions inside all/any/not, one group per table",
                )
            key = node_keys[0]
            line = self.loc.key(key, advance=True)
            body = raw[key]
            if key == "not":
                return Not(self.node(body, where=line, label="'not'"))
            if not isinstance(body, list) or not body:
                raise self.error(line, f"'{key}' must be a non-empty array of conditions or groups")
            children = tuple(
                self.node(child, where=line, label=f"each item of '{key}'") for child in body
            )
            return AllOf(children) if key == "all" else AnyOf(children)
        return self.condition(raw, where=where)

    def condition(self, raw: dict[str, Any], *, where: int) -> Condition:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.error(where, f"more than {MAX_CONDITIONS} conditions",
                             hint="use one condition with op = \"in\" and a list of values")
        unknown = [k for k in raw if k not in _COND_KEYS]
        name = raw.get("field")
        line = where
        if isinstance(name, str):
            line = self.loc.key_value("field", name, advance=True) or where
        if unknown:
            raise self.error(
                self.loc.key(unknown[0], from_anchor=isinstance(name, str)),
                f"unknown key '{unknown[0]}' in a condition; accepted keys: field, op, value "
                f"(or a group: {', '.join(_NODE_KEYS)})",
            )
        if not isinstance(name, str):
            raise self.error(line, "condition without a 'field' name; " + self.accepted_fields())
        if name not in self.types:
            raise self.error(line, f"unknown field '{name}'; " + self.accepted_fields())
        ftype = self.types[name]
        op = raw.get("op")
        accepted_ops = OPERATORS[ftype]
        if not isinstance(op, str):
            raise self.error(
                line,
                f"condition on '{name}' without an 'op'; accepted operators for a {ftype} field: "
                + ", ".join(accepted_ops),
            )
        op_line = self.loc.key_value("op", op, anchored=True) or line
        if op not in ALL_OPERATORS:
            raise self.error(
                op_line,
                f"unknown operator '{op}'; accepted operators for a {ftype} field: {', '.join(accepted_ops)}",
            )
        if op not in accepted_ops:
            raise self.error(
                op_line,
                f"operator '{op}' does not apply to '{name}' (a {ftype} field); accepted operators: "
                + ", ".join(accepted_ops),
            )
        value_line = self.loc.key("value", from_anchor=True) if "value" in raw else line
        value = self.value(name, ftype, op, raw, value_line)
        return Condition(name, op, value, line)

    def value(self, name: str, ftype: str, op: str, raw: dict[str, Any], line: int) -> Any:
        where = f"'{name}' {op}"
        if op == "exists":
            value = raw.get("value", True)
            if not isinstance(value, bool):
                raise self.error(line, f"{where}: value must be true or false (or omitted)")
            return value
        if "value" not in raw:
            raise self.error(line, f"{where}: missing 'value'")
        value = raw["value"]
        if op in ("before", "after") or (op == "equals" and ftype == "date"):
            parsed = _parse_date(value)
            if parsed is None:
                raise self.error(line, f'{where}: value must be an ISO date like "2024-01-01"')
            return parsed
        if op == "within":
            days = _parse_duration(value)
            if days is None:
                raise self.error(
                    line, f'{where}: value must be a duration like "365d" or "12w" (days or weeks)'
                )
            return timedelta(days=days)
        if op == "equals" and ftype == "bool":
            if not isinstance(value, bool):
                raise self.error(line, f"{where}: value must be true or false")
            return value
        if op == "in":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) and v.strip() for v in value)
            ):
                raise self.error(line, f"{where}: value must be a non-empty array of strings")
            return tuple(v.strip() for v in value)
        # equals / contains on text or list
        if not isinstance(value, str) or not value.strip():
            raise self.error(line, f"{where}: value must be a non-empty string")
        return value.strip()


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            try:
                return datetime.fromisoformat(value.strip()).date()
            except ValueError:
                return None
    return None


def _parse_duration(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value)
    if not m:
        return None
    days = int(m.group(1)) * (7 if m.group(2).lower() == "w" else 1)
    return days if days <= _MAX_DAYS else None


def parse_segment(text: str, *, path: str, fields: FieldSettings) -> Segment:
    """Parse and type-check a segment file's text; errors name the file, the line and the
    accepted names (SegmentFileError, exit 2)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SegmentFileError(
            f"{path}: not valid TOML: {err}", hint="see segments/newsletter.toml"
        ) from None
    except RecursionError:
        raise SegmentFileError(f"{path}: nested too deeply to read (groups go at most {MAX_DEPTH} deep)",
                               hint="see segments/newsletter.toml") from None
    return _Parser(text, path, fields).segment(data, text)


def load_segment(path: Path, fields: FieldSettings) -> Segment:
    """Read and parse a segment file; its content hash is over the exact bytes read."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise SegmentFileError(f"{path}: cannot read segment file ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SegmentFileError(f"{path}: not UTF-8 text") from None
    return parse_segment(text, path=str(path), fields=fields)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    scope: str | None  # authorization_scope the segment relies on (SEG-1)
    third_party: str | None  # sponsor of a paid campaign (MKT-3, SEG-5)
    match: Node
    source_path: str
    content_hash: str
    #: fields the configuration declared clinical when the file was parsed; any field not
    #: in NON_PHI_FIELDS counts as clinical too, so a hand-built Segment fails safe.
    declared_clinical: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SegmentPlan:
    """How a segment is evaluated: what SQL may see, what needs decryption, what is refused."""

    segment: Segment
    sql_filter: Node | None  # non-PHI only, ANDed into the SQL query
    clinical_filter: Node | None  # evaluated after decryption, for authorized contacts only
    clinical_fields: frozenset[str]
    requires_authorization: bool
    refusals: tuple[Refusal, ...]

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    def explain(self) -> list[str]:
        """The reviewer's view of the plan: which conditions run where, and why."""
        seg = self.segment
        lines = [f"segment {seg.name} ({seg.source_path}, sha256 {seg.content_hash[:12]})"]
        if self.sql_filter is not None:
            lines.append(f"in SQL (non-PHI fields): {describe(self.sql_filter)}")
        else:
            lines.append("in SQL (non-PHI fields): nothing; every contact is streamed")
        lines.append("suppressed contacts (unsubscribed, bounced, complaints) are excluded")
        if self.requires_authorization:
            party = (
                ", stating remuneration and naming the third party (MKT-6, SEG-5)"
                if seg.third_party
                else ""
            )
            lines.append(
                f"authorization first (SEG-2): only contacts holding a valid '{seg.scope or '?'}' "
                f"authorization at evaluation time{party} go further"
            )
        if self.clinical_filter is not None:
            lines.append(
                "after decryption, authorized contacts only (clinical fields "
                f"{', '.join(sorted(self.clinical_fields))}): {describe(self.clinical_filter)}"
            )
        for r in self.refusals:
            lines.append(f"REFUSED [{r.rule}] {r.reason}" + (f" (fix: {r.fix})" if r.fix else ""))
        return lines


def _uses(node: Node, names: frozenset[str]) -> bool:
    return any(c.field in names for c in iter_conditions(node))


def plan_segment(segment: Segment) -> SegmentPlan:
    """Split the tree into a SQL-safe part and a clinical part, and decide the static
    refusals (SEG-1, SEG-5).

    Only top-level `all` conjuncts (or a whole tree) using nothing but non-PHI fields go to
    SQL; any group mixing in a clinical field is evaluated after decryption, so SQL never
    sees a clinical field. A field counts as clinical unless it is one of NON_PHI_FIELDS
    and was not declared clinical by the configuration.

    SEG-5 decision: a `third_party` segment must rely on the "third-party-marketing" scope,
    and that scope needs a `third_party`; each recipient's authorization must then state
    remuneration and name the sponsor (checked per contact by `best_validity`).
    `requires_authorization` is also true when a segment names a scope without clinical
    rules: it declared it relies on authorizations, so it gets them.
    """
    used = {c.field for c in iter_conditions(segment.match)}
    clinical = frozenset(
        n for n in used if n not in NON_PHI_FIELDS or n in segment.declared_clinical
    )

    match = segment.match
    sql_parts: list[Node]
    late_parts: list[Node]
    if not _uses(match, clinical):
        sql_parts, late_parts = [match], []
    elif isinstance(match, AllOf):
        sql_parts = [c for c in match.children if not _uses(c, clinical)]
        late_parts = [c for c in match.children if _uses(c, clinical)]
    else:
        sql_parts, late_parts = [], [match]

    def join(parts: list[Node]) -> Node | None:
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    requires = bool(clinical) or segment.third_party is not None or segment.scope is not None
    refusals: list[Refusal] = []
    if clinical and segment.scope is None:
        refusals.append(
            Refusal(
                rule="SEG-1",
                reason=(
                    f"segment '{segment.name}' targets on clinical field(s) "
                    f"{', '.join(sorted(clinical))} but names no authorization_scope"
                ),
                fix='add authorization_scope = "condition-targeted-marketing" (or remove the clinical rules)',
            )
        )
    if segment.third_party is not None and segment.scope != "third-party-marketing":
        refusals.append(
            Refusal(
                rule="SEG-5",
                reason=f"segment '{segment.name}' is paid by a third party but does not rely on "
                "the 'third-party-marketing' authorization scope",
                fix='set authorization_scope = "third-party-marketing"',
            )
        )
    if segment.scope == "third-party-marketing" and segment.third_party is None:
        refusals.append(
            Refusal(
                rule="SEG-5",
                reason=f"segment '{segment.name}' relies on 'third-party-marketing' authorizations "
                "but does not name the third party",
                fix='add third_party = "<sponsor as named on the authorizations>"',
            )
        )
    return SegmentPlan(
        segment=segment,
        sql_filter=join(sql_parts),
        clinical_filter=join(late_parts),
        clinical_fields=clinical,
        requires_authorization=requires,
        refusals=tuple(refusals),
    )


# --------------------------------------------------------------------------- evaluation


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        return _parse_date(value)
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _as_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None]
    return None


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def _within(d: date, span: timedelta, at: datetime) -> bool:
    """`within Nd`: on a day from N days before the evaluation time up to that day."""
    return (at - span).date() <= d <= at.date()


def _test(cond: Condition, raw: Any, at: datetime) -> bool:
    """One condition on one value; a missing or malformed value never matches."""
    op, want = cond.op, cond.value
    if op == "exists":
        return _present(raw) is want
    if raw is None:
        return False
    if isinstance(want, timedelta):  # within
        d = _as_date(raw)
        return d is not None and _within(d, want, at)
    if isinstance(want, date):  # equals / before / after on a date field
        d = _as_date(raw)
        if d is None:
            return False
        if op == "before":
            return d < want
        if op == "after":
            return d > want
        return d == want
    if isinstance(want, bool):
        return _as_bool(raw) is want
    if isinstance(raw, list | tuple):
        items = [s.lower() for s in _as_list(raw) or []]
        if op == "contains":
            return want.lower() in items
        if op == "in":
            wanted = {w.lower() for w in want}
            return any(item in wanted for item in items)
        return False
    if not isinstance(raw, str):
        return False
    text = raw.lower()
    if op == "equals":
        return text == want.lower()
    if op == "in":
        return text in {w.lower() for w in want}
    if op == "contains":
        return want.lower() in text
    return False


def matches(node: Node, values: Mapping[str, Any], at: datetime) -> bool:
    """Evaluate a tree on one contact's field values (non-PHI plus decrypted clinical).

    Text comparisons are case-insensitive; dates compare by day; a missing value fails
    every operator except `exists = false`."""
    if isinstance(node, Condition):
        return _test(node, values.get(node.field), at)
    if isinstance(node, AllOf):
        return all(matches(c, values, at) for c in node.children)
    if isinstance(node, AnyOf):
        return any(matches(c, values, at) for c in node.children)
    return not matches(node.child, values, at)


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time())


def to_sql(
    node: Node, columns: Mapping[str, Any], *, at: datetime | None = None
) -> ColumnElement[bool]:
    """SQLAlchemy expression equal to `matches` for non-PHI nodes (never NULL, so `not`
    agrees with Python on missing values). `columns` maps field -> Column; a field without
    a column (any clinical field) raises ValueError, so PHI can never reach SQL. `at` is
    required for `within`."""
    if isinstance(node, AllOf):
        return and_(*(to_sql(c, columns, at=at) for c in node.children))
    if isinstance(node, AnyOf):
        return or_(*(to_sql(c, columns, at=at) for c in node.children))
    if isinstance(node, Not):
        return not_(to_sql(node.child, columns, at=at))
    if node.field not in columns:
        raise ValueError(
            f"field '{node.field}' has no SQL column (clinical fields are never queried in SQL)"
        )
    col = columns[node.field]
    op, want = node.op, node.value
    present = col.is_not(None)
    is_text = isinstance(getattr(col, "type", None), sqltypes.String)
    if op == "exists":
        has = and_(present, col != "") if is_text else present
        return has if want else not_(has)
    is_datetime = isinstance(getattr(col, "type", None), sqltypes.DateTime)

    def bound(d: date) -> Any:
        return _day_start(d) if is_datetime else d

    if isinstance(want, timedelta):
        if at is None:
            raise ValueError("to_sql needs `at` for a 'within' condition")
        start = (at - want).date()
        return and_(present, col >= bound(start), col < bound(at.date() + timedelta(days=1)))
    if isinstance(want, date):
        if op == "before":
            return and_(present, col < bound(want))
        if op == "after":
            return and_(present, col >= bound(want + timedelta(days=1)))
        return and_(present, col >= bound(want), col < bound(want + timedelta(days=1)))
    if isinstance(want, bool):
        return and_(present, col == want)
    low = func.lower(col)  # text comparisons are case-insensitive, as in `matches`
    if op == "equals":
        return and_(present, low == want.lower())
    if op == "in":
        return and_(present, low.in_([w.lower() for w in want]))
    if op == "contains":
        return and_(present, low.contains(want.lower(), autoescape=True))
    raise ValueError(f"operator '{op}' cannot be translated to SQL")


# --------------------------------------------------------------------------- counts & gate


def _zero_reasons() -> dict[str, int]:
    return {reason: 0 for reason in EXCLUSION_REASONS}


@dataclass
class SegmentCounts:
    """The reviewer's numbers for one evaluation: counts only, never names or addresses.

    considered = suppressed + sum(excluded_no_authorization) + matched + unmatched;
    authorized counts contacts that passed the authorization check (SEG-4)."""

    segment: str
    considered: int = 0
    suppressed: int = 0
    authorized: int = 0
    matched: int = 0
    unmatched: int = 0
    excluded_no_authorization: dict[str, int] = _field(default_factory=_zero_reasons)
    refused: bool = False
    rules: list[str] = _field(default_factory=list)
    refusals: list[Refusal] = _field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "considered": self.considered,
            "excluded_no_authorization": dict(self.excluded_no_authorization),
            "suppressed": self.suppressed,
            "authorized": self.authorized,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "refused": self.refused,
            "rules": list(self.rules),
            "refusals": [r.as_dict() for r in self.refusals],
        }


def gate(plan: SegmentPlan, counts: SegmentCounts) -> list[Refusal]:
    """Every refusal for this segment: the plan's (SEG-1, SEG-5) plus SEG-4 when an
    authorization is required and no considered contact holds one. Also records them on
    `counts` (refused, rules, refusals) so the report and the exit code agree."""
    refusals = list(plan.refusals)
    if plan.requires_authorization and not plan.refusals and counts.authorized == 0:
        excluded = ", ".join(f"{k}: {v}" for k, v in counts.excluded_no_authorization.items())
        refusals.append(
            Refusal(
                rule="SEG-4",
                reason=(
                    f"segment '{plan.segment.name}': 0 of {counts.considered} considered contact(s) "
                    f"hold a valid '{plan.segment.scope}' authorization ({counts.suppressed} suppressed; "
                    f"excluded without authorization: {excluded})"
                ),
                fix="record the patients' signed authorizations for this scope, or target without clinical fields",
                count=counts.considered,
            )
        )
    counts.refusals = refusals
    counts.refused = bool(refusals)
    counts.rules = list(dict.fromkeys(r.rule for r in refusals))
    return refusals


@dataclass(frozen=True)
class Decision:
    included: bool
    reason: str  # matched, unmatched, suppressed, not-selected, refused, or a Status value
    authorization_id: int | None = None
    rules: tuple[str, ...] = ()


class Evaluator:
    """Decides contact by contact, authorization first (SEG-2), and keeps the counts.

    The store streams contacts (ideally pre-filtered with `to_sql(plan.sql_filter)`) and
    passes the non-PHI values plus a closure that decrypts the clinical fields; the closure
    is called only for a contact that is not suppressed, passes the non-PHI conditions and
    holds a valid authorization for the plan's scope.

    A refused plan (SEG-1, SEG-5) can be constructed, so callers can still record the
    refusal with its (zero) counts, but it includes nobody and decrypts nothing."""

    def __init__(self, plan: SegmentPlan, at: datetime) -> None:
        self.plan = plan
        self.at = at
        self.counts = SegmentCounts(segment=plan.segment.name)
        self._refused_rules = tuple(dict.fromkeys(r.rule for r in plan.refusals))

    def decide(
        self,
        contact_values: Mapping[str, Any],
        authorizations: Sequence[AuthorizationLike],
        suppressed: bool,
        decrypt_clinical: Callable[[], Mapping[str, Any]],
    ) -> Decision:
        plan, counts = self.plan, self.counts
        if self._refused_rules:
            return Decision(False, "refused", None, self._refused_rules)
        # Non-PHI conditions first: a contact SQL would have filtered out is not counted,
        # so the numbers are the same whether or not the store pushed the filter down.
        if plan.sql_filter is not None and not matches(plan.sql_filter, contact_values, self.at):
            return Decision(False, "not-selected")
        counts.considered += 1
        if suppressed:
            counts.suppressed += 1
            return Decision(False, "suppressed")
        auth_id: int | None = None
        if plan.requires_authorization:
            validity, auth = best_validity(
                authorizations, plan.segment.scope or "", self.at, plan.segment.third_party
            )
            auth_id = auth.id if auth is not None else None
            if not validity.valid:
                counts.excluded_no_authorization[str(validity.status)] += 1
                return Decision(False, str(validity.status), auth_id, validity.rules)
            counts.authorized += 1
        if plan.clinical_filter is not None:
            decrypted = decrypt_clinical()
            values = dict(contact_values)
            # Minimum necessary: only the clinical fields this segment uses.
            values.update({k: decrypted.get(k) for k in plan.clinical_fields})
            if not matches(plan.clinical_filter, values, self.at):
                counts.unmatched += 1
                return Decision(False, "unmatched", auth_id)
        counts.matched += 1
        return Decision(True, "matched", auth_id)
