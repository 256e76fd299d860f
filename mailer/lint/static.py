"""PHI-1 on the Jinja AST: every name and attribute must resolve inside ALLOWED_CONTEXT.

The walk follows data, not syntax: an alias (`{% set c = contact %}`), item access,
the `attr` and `map(attribute=)` filters and loops all reach the same check, so an
indirect route to `contact.conditions` is caught like the direct one. Anything that
looks like a sandbox escape (underscore attributes, Jinja globals such as `cycler`)
is a finding, and so is a syntax error: the lint never crashes on a template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from mailer.lint.findings import Finding, finding
from mailer.lint.settings import ALLOWED_CONTEXT, LintSettings, field_class
from mailer.lint.source import Source

# Jinja and framework globals used as SSTI entry points (cycler.__init__.__globals__ ...).
GADGETS = frozenset(
    {
        "self", "cycler", "joiner", "lipsum", "namespace", "config", "request", "session",
        "g", "url_for", "get_flashed_messages", "__builtins__", "builtins", "os", "sys",
        "subprocess", "__import__", "eval", "exec", "open", "getattr", "globals", "locals",
    }
)
# Attributes that reach interpreter internals without a leading underscore.
UNSAFE_ATTRS = frozenset(
    {
        "format", "format_map", "mro", "func_globals", "func_code", "f_globals", "f_locals",
        "f_builtins", "f_back", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame",
        "ag_code", "tb_frame", "tb_next", "im_func", "im_self", "im_class",
    }
)
# Harmless string methods on an allowed value, e.g. {{ contact.first_name.title() }}.
STR_METHODS = frozenset(
    {
        "upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "replace",
        "startswith", "endswith", "split", "splitlines", "center", "ljust", "rjust", "zfill",
        "casefold", "swapcase", "count", "find", "isalpha", "isdigit", "islower", "isupper",
    }
)
# Mapping methods on a context object enumerate or fetch fields by computed name.
MAPPING_METHODS = frozenset({"items", "keys", "values", "get", "pop", "setdefault", "update", "copy"})
# Filters whose arguments name attributes of the items they receive.
ATTRIBUTE_FILTERS = frozenset({"map", "selectattr", "rejectattr", "groupby", "sort", "sum", "unique", "min", "max"})
LOOP_ATTRS = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "cycle", "depth",
     "depth0", "previtem", "nextitem", "changed"}
)

_ENV = SandboxedEnvironment()


class Origin(NamedTuple):
    """Where a value comes from: a context namespace, a context value, a template local."""

    kind: str  # "ns" | "leaf" | "local" | "bad"
    root: str = ""  # the context root it derives from, "" for template-made values


BAD = Origin("bad")
LOCAL = Origin("local")


@dataclass(frozen=True)
class Ref:
    """A resolved reference, for the PHI-2 placement checks (subject, URLs)."""

    name: str  # dotted display name, e.g. "contact.conditions"
    root: str  # the context root or the unknown name it starts from
    allowed: bool
    cls: str | None  # "clinical" | "identifying" | None
    line: int
    column: int


@dataclass
class Analysis:
    findings: list[Finding] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    taint: dict[str, str] = field(default_factory=dict)  # local name -> context root ("" if none)
    locals: set[str] = field(default_factory=set)


def parse(source: Source) -> tuple[nodes.Template | None, Finding | None]:
    """The AST, or a PHI100 finding: a template that does not parse cannot be verified."""
    try:
        return _parse_text(source.text), None
    except TemplateSyntaxError as err:
        line, col = source.locate(err.lineno or 1)
        return None, finding("PHI100", source.path, line, col, f"Jinja syntax error: {_safe(err.message)}")
    except RecursionError:
        line, col = source.position(0)
        return None, finding("PHI100", source.path, line, col, "template nests too deeply to analyse")


@lru_cache(maxsize=32)
def _parse_text(text: str) -> nodes.Template:
    """Jinja's AST of TEXT, parsed once per lint: the context check and the value flow
    both read it (neither changes it). A syntax error is raised again on every call."""
    return _ENV.parse(text)


def _safe(message: str | None) -> str:
    """Jinja's message with quoted template text masked, unless it is a keyword or token type.

    A leaking template is exactly what is being linted, so its literal tokens stay out.
    """
    text = (message or "invalid syntax").splitlines()[0][:160]
    return re.sub(r"'([^']*)'", lambda m: m.group() if _jinja_word(m.group(1)) else "'…'", text)


_JINJA_WORDS = frozenset(
    "if elif else endif for endfor block endblock macro endmacro call endcall filter endfilter set "
    "endset with endwith raw endraw include import from extends autoescape endautoescape trans "
    "endtrans pluralize in is not and or name integer float string operator".split()
) | {"end of print statement", "end of statement block", "end of template", "end of comment"}


def _jinja_word(token: str) -> bool:
    """A Jinja keyword, token type or punctuation: safe to echo; anything else is template text."""
    return token in _JINJA_WORDS or re.fullmatch(r"[^\w\s]{1,3}", token) is not None


def analyse(source: Source, settings: LintSettings) -> Analysis:
    """PHI-1 findings, references and local-variable taint for one template part."""
    tree, error = parse(source)
    result = Analysis()
    if error:
        result.findings.append(error)
        return result
    assert tree is not None
    walker = _Walker(source, settings, result)
    try:
        walker.stmts(tree.body)
    except RecursionError:
        line, col = source.position(0)
        result.findings.append(finding("PHI100", source.path, line, col, "template nests too deeply to analyse"))
    return result


def expression_roots(expr: str, analysis: Analysis) -> set[str]:
    """Context roots (or unknown names) an expression's value derives from, aliases resolved."""
    try:
        tree = _ENV.parse("{{ " + expr + " }}")
    except (TemplateSyntaxError, RecursionError):
        return set()
    roots: set[str] = set()
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load":
            continue
        if name.name in analysis.taint:
            if analysis.taint[name.name]:
                roots.add(analysis.taint[name.name])
        elif name.name not in analysis.locals:
            roots.add(name.name)
    return roots


class _Walker:
    def __init__(self, source: Source, settings: LintSettings, out: Analysis) -> None:
        self.source = source
        self.settings = settings
        self.out = out
        self.scopes: list[dict[str, Origin]] = [{}]

    # -- reporting -------------------------------------------------------------------
    def report(self, code: str, node: nodes.Node, needle: str, message: str) -> None:
        line, col = self.source.locate(getattr(node, "lineno", 1) or 1, needle)
        self.out.findings.append(finding(code, self.source.path, line, col, message))

    def ref(self, node: nodes.Node, name: str, root: str, allowed: bool, last: str) -> None:
        line, col = self.source.locate(getattr(node, "lineno", 1) or 1, last)
        cls = field_class(last, self.settings)
        self.out.refs.append(Ref(name, root, allowed, cls, line, col))

    def _note(self, name: str) -> str:
        cls = field_class(name, self.settings)
        return {"clinical": "; it is a clinical field", "identifying": "; it is an identifying field"}.get(cls or "", "")

    # -- scopes ----------------------------------------------------------------------
    def lookup(self, name: str) -> Origin | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def bind(self, target: nodes.Node, origin: Origin) -> None:
        if isinstance(target, nodes.Name):
            if target.name in ALLOWED_CONTEXT:
                self.report("PHI103", target, target.name, f"assignment shadows the context name '{target.name}'")
            kept = origin if origin.kind in ("ns", "leaf") else LOCAL
            self.scopes[-1][target.name] = kept
            self.out.locals.add(target.name)
            self.out.taint[target.name] = kept.root
        elif isinstance(target, (nodes.Tuple, nodes.List)):
            for item in target.items:
                self.bind(item, Origin("leaf", origin.root) if origin.root else LOCAL)
        elif isinstance(target, nodes.NSRef):
            if self.lookup(target.name) is None:
                self.report("PHI101", target, target.name, f"'{target.name}' is not defined in the template")

    def push(self, names: dict[str, Origin] | None = None) -> None:
        self.scopes.append(dict(names or {}))

    def pop(self) -> None:
        self.scopes.pop()

    # -- statements ------------------------------------------------------------------
    def stmts(self, body: list[nodes.Node]) -> None:
        for node in body:
            self.stmt(node)

    def stmt(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    self.use(child)
        elif isinstance(node, nodes.For):
            self._for(node)
        elif isinstance(node, nodes.Assign):
            origin = self.expr(node.node)
            self.bind(node.target, origin)
        elif isinstance(node, nodes.AssignBlock):
            if node.filter is not None:
                self.use(node.filter)
            self.stmts(node.body)
            self.bind(node.target, LOCAL)
        elif isinstance(node, nodes.Macro):
            self._callable(node, node.args, node.defaults, node.body, extra=("caller", "varargs", "kwargs"))
            self.scopes[-1][node.name] = LOCAL
            self.out.locals.add(node.name)
        elif isinstance(node, nodes.CallBlock):
            self.use(node.call)
            self._callable(node, node.args, node.defaults, node.body, extra=("caller", "varargs", "kwargs"))
        elif isinstance(node, nodes.With):
            values = [self.expr(v) for v in node.values]
            self.push()
            for target, origin in zip(node.targets, values, strict=False):
                self.bind(target, origin)
            self.stmts(node.body)
            self.pop()
        elif isinstance(node, nodes.FilterBlock):
            self.use(node.filter)
            self.stmts(node.body)
        elif isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            kind = type(node).__name__.lower()
            self.report("PHI106", node, "", f"'{kind}' pulls in another template the lint cannot verify")
            if isinstance(node, nodes.Import):
                self.bind(nodes.Name(node.target, "store", lineno=node.lineno), LOCAL)
            elif isinstance(node, nodes.FromImport):
                for item in node.names:
                    alias = item[1] if isinstance(item, tuple) else item
                    self.bind(nodes.Name(alias, "store", lineno=node.lineno), LOCAL)
        else:
            for sub in node.iter_child_nodes():
                if isinstance(sub, nodes.Expr):
                    self.use(sub)
                else:
                    self.stmt(sub)

    def _for(self, node: nodes.For) -> None:
        origin = self.expr(node.iter)
        if origin.kind == "ns":
            self.report("PHI103", node, origin.root, f"loop over the whole '{origin.root}' object reaches every field")
            origin = BAD
        self.push({"loop": Origin("local", "")})
        self.out.locals.add("loop")
        self.bind(node.target, Origin("leaf", origin.root) if origin.root else LOCAL)
        if node.test is not None:
            self.use(node.test)
        self.stmts(node.body)
        self.pop()
        self.stmts(node.else_)

    def _callable(self, node: nodes.Node, args: list[nodes.Name], defaults: list[nodes.Expr],
                  body: list[nodes.Node], extra: tuple[str, ...]) -> None:
        for default in defaults:
            self.use(default)
        self.push({name: LOCAL for name in extra})
        self.out.locals.update(extra)
        for arg in args:
            self.bind(arg, LOCAL)
        self.stmts(body)
        self.pop()

    # -- expressions -----------------------------------------------------------------
    def use(self, node: nodes.Node) -> Origin:
        """Evaluate NODE where a whole context object must not end up (output, concat...)."""
        origin = self.expr(node)
        if origin.kind == "ns":
            self.report("PHI103", node, origin.root, f"the whole '{origin.root}' object is used, exposing every field")
            return BAD
        return origin

    def expr(self, node: nodes.Node) -> Origin:
        if isinstance(node, nodes.Name):
            return self._name(node)
        if isinstance(node, nodes.Getattr):
            return self.member(self.expr(node.node), node.attr, node, "attribute")
        if isinstance(node, nodes.Getitem):
            return self._getitem(node)
        if isinstance(node, nodes.Filter):
            return self._filter(node)
        if isinstance(node, nodes.Test):
            self.expr(node.node)
            self._args(node)
            return LOCAL
        if isinstance(node, nodes.Call):
            return self._call(node)
        if isinstance(node, nodes.CondExpr):
            self.use(node.test)
            options = [self.expr(node.expr1)] + ([self.expr(node.expr2)] if node.expr2 is not None else [])
            return _strongest(options)
        if isinstance(node, nodes.Const):
            return LOCAL
        return _strongest([self.use(c) for c in node.iter_child_nodes() if isinstance(c, nodes.Node)] or [LOCAL])

    def _name(self, node: nodes.Name) -> Origin:
        found = self.lookup(node.name)
        if found is not None:
            return found
        if node.name in ALLOWED_CONTEXT:
            self.ref(node, node.name, node.name, True, node.name)
            return Origin("leaf" if node.name == "unsubscribe_url" else "ns", node.name)
        self.ref(node, node.name, node.name, False, node.name)
        if node.name in GADGETS:
            self.report("PHI104", node, node.name, f"'{node.name}' is a Jinja global used for sandbox escapes")
        else:
            self.report("PHI101", node, node.name,
                        f"'{node.name}' is not in the template context{self._note(node.name)}")
        return Origin("bad", node.name)  # keeps the name for messages about its attributes

    def member(self, base: Origin, name: str, node: nodes.Node, via: str) -> Origin:
        """Access NAME on BASE: the one PHI-1 gate for attributes, items, attr() and map()."""
        if name.startswith("_") or name in UNSAFE_ATTRS:
            self.report("PHI104", node, name, f"{via} '{name}' is a sandbox escape")
            return BAD
        if base.kind == "bad":
            self.ref(node, f"{base.root or '?'}.{name}", base.root.split(".")[0], False, name)
            return Origin("bad", f"{base.root}.{name}" if base.root else "")
        if base.kind == "local":
            return LOCAL
        display = f"{base.root}.{name}"
        if base.kind == "ns":
            allowed = ALLOWED_CONTEXT[base.root]
            if name in allowed:
                self.ref(node, display, base.root, True, name)
                return Origin("leaf", base.root)
            self.ref(node, display, base.root, False, name)
            if name in MAPPING_METHODS:
                self.report("PHI103", node, name, f"'{display}' enumerates or fetches fields by computed name")
            else:
                code = "PHI102" if via == "attribute" else "PHI103"
                how = "" if via == "attribute" else f" (reached by {via})"
                self.report(code, node, name, f"'{display}' is outside the allowed context{how}{self._note(name)}")
            return BAD
        # a leaf: a plain string such as contact.first_name
        if name in STR_METHODS:
            return base
        self.ref(node, f"{base.root}...{name}", base.root, False, name)
        self.report("PHI102", node, name, f"'{name}' on a '{base.root}' value is outside the allowed context")
        return BAD

    def _getitem(self, node: nodes.Getitem) -> Origin:
        base = self.expr(node.node)
        arg = node.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            return self.member(base, arg.value, node, "item access")
        if isinstance(arg, (nodes.Const, nodes.Slice)):
            self.use(arg)
            if base.kind == "ns":
                self.report("PHI103", node, base.root, f"index into the whole '{base.root}' object")
                return BAD
            return base if base.kind == "leaf" else (BAD if base.kind == "bad" else LOCAL)
        self.use(arg)
        if base.kind == "ns":
            self.report("PHI103", node, base.root, f"'{base.root}[...]' uses a computed key the lint cannot verify")
            return BAD
        return base if base.kind == "leaf" else (BAD if base.kind == "bad" else LOCAL)

    def _filter(self, node: nodes.Filter) -> Origin:
        base = self.expr(node.node) if node.node is not None else LOCAL
        if node.name == "attr":
            arg = node.args[0] if node.args else None
            self._args(node)
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                return self.member(base, arg.value, node, "the attr filter")
            self.report("PHI103", node, "attr", "attr() with a computed name cannot be verified")
            return BAD
        for name in self._attribute_args(node):
            for part in name.split("."):
                if part.startswith("_") or part in UNSAFE_ATTRS:
                    self.report("PHI104", node, part, f"{node.name}() attribute '{part}' is a sandbox escape")
                    return BAD
        self._args(node)
        if base.kind == "ns":
            self.report("PHI103", node, node.name, f"filter '{node.name}' receives the whole '{base.root}' object")
            return BAD
        return base if base.kind in ("leaf", "bad") else LOCAL

    @staticmethod
    def _attribute_args(node: nodes.Filter) -> Iterator[str]:
        if node.name not in ATTRIBUTE_FILTERS:
            return
        for kw in node.kwargs:
            if kw.key == "attribute" and isinstance(kw.value, nodes.Const) and isinstance(kw.value.value, str):
                yield kw.value.value
        if node.name in ("selectattr", "rejectattr", "groupby") and node.args:
            first = node.args[0]
            if isinstance(first, nodes.Const) and isinstance(first.value, str):
                yield first.value

    def _args(self, node: nodes.Filter | nodes.Test | nodes.Call) -> None:
        for arg in node.args:
            self.use(arg)
        for kw in node.kwargs:
            self.use(kw.value)
        if node.dyn_args is not None:
            self.use(node.dyn_args)
        if node.dyn_kwargs is not None:
            self.use(node.dyn_kwargs)

    def _call(self, node: nodes.Call) -> Origin:
        callee = node.node
        if isinstance(callee, nodes.Name) and callee.name == "asset" and self.lookup("asset") is None:
            # issue 17 hook: {{ asset('key') }} is a registered, consented asset (TST-5),
            # checked by mailer.compliance.assets; only a literal key can be checked.
            if len(node.args) == 1 and isinstance(node.args[0], nodes.Const) and isinstance(node.args[0].value, str):
                return LOCAL
            self.report("PHI103", node, "asset", "asset() needs one literal key, e.g. asset('knee-story')")
            return BAD
        if isinstance(callee, nodes.Getattr):
            base = self.expr(callee.node)
            if base.kind == "ns" and callee.attr == "get" and node.args:
                key = node.args[0]
                self._args(node)
                if isinstance(key, nodes.Const) and isinstance(key.value, str):
                    return self.member(base, key.value, node, "get()")
                self.report("PHI103", node, "get", f"'{base.root}.get()' with a computed key cannot be verified")
                return BAD
            origin = self.member(base, callee.attr, callee, "attribute")
        elif isinstance(callee, nodes.Name) and callee.name == "namespace" and self.lookup("namespace") is None:
            # namespace(...) only makes a local holder; its attributes are followed by
            # mailer.lint.flow (issue 13). The bare global stays a gadget (PHI104).
            self._args(node)
            return LOCAL
        else:
            origin = self.expr(callee)
            if origin.kind == "ns":
                self.report("PHI103", node, origin.root, f"the '{origin.root}' object is called")
                origin = BAD
        self._args(node)
        return origin if origin.kind in ("leaf", "bad") else LOCAL


def _strongest(origins: list[Origin]) -> Origin:
    """The most sensitive of several origins: a namespace, then contact data, then others."""
    for kind in ("ns", "leaf"):
        matching = [o for o in origins if o.kind == kind]
        if matching:
            return next((o for o in matching if o.root == "contact"), matching[0])
    return BAD if any(o.kind == "bad" for o in origins) else LOCAL
