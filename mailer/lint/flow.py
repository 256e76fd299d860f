"""Where context values flow, by the Jinja AST (issue 13): one taint per `{{ ... }}` output.

The first lint treated anything made inside the template as safe, so a value passed
through a macro parameter, a `{% set %}...{% endset %}` block, `caller()`, a namespace
attribute or a `format` filter lost its origin. Here every construct propagates it:

- a value's taint is the set of context fields it derives from ("contact.first_name",
  "center.website", "unsubscribe_url"; "?name" for a name the context lacks);
- assignments, `with`, loop targets, namespace attributes and set blocks carry the taint
  of what they hold; a set block holds the taint of everything it outputs;
- a macro call binds each parameter to the taint of its argument and outputs its body;
  `caller()` outputs the call block's body;
- filters, tests, operators, literals and calls combine the taints of all their parts.

`outputs` maps each `{{ ... }}` of the template, in source order, to the union of the
taints it can print (a macro body's output joins every call's arguments). `required`
answers "is X printed on every path?" for the unsubscribe link and the postal address:
it follows if/elif/else (a constant false branch never renders), loops (may run zero
times) and macro calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jinja2 import nodes

from mailer.lint.settings import ALLOWED_CONTEXT

Taint = frozenset[str]
EMPTY: Taint = frozenset()
RECIPIENT_FIELDS = frozenset({"contact.first_name", "contact.preferred_name"})


def is_recipient(taint: Taint) -> bool:
    """True when a value may carry recipient data (a contact field or an unknown name)."""
    return any(t.startswith(("contact", "?")) and t != "contact.language" for t in taint)


@dataclass
class Flow:
    outputs: list[Taint] = field(default_factory=list)  # per {{ }} in source order
    exprs: list[nodes.Expr] = field(default_factory=list)
    macros: dict[str, nodes.Macro] = field(default_factory=dict)
    tree: nodes.Template | None = None

    def index_of(self, node: nodes.Expr) -> int:
        for i, n in enumerate(self.exprs):
            if n is node:
                return i
        return -1


def output_nodes(tree: nodes.Template) -> list[nodes.Expr]:
    """Every printed expression, in source order (pre-order walk of the AST)."""
    out: list[nodes.Expr] = []
    for o in tree.find_all(nodes.Output):
        out.extend(n for n in o.nodes if not isinstance(n, nodes.TemplateData))
    return out


def analyse_flow(tree: nodes.Template) -> Flow:
    exprs = output_nodes(tree)
    flow = Flow(outputs=[EMPTY] * len(exprs), exprs=exprs, tree=tree)
    flow.macros = {m.name: m for m in tree.find_all(nodes.Macro)}
    _Tracer(flow, {id(n): i for i, n in enumerate(exprs)}).run(tree)
    return flow


class _Tracer:
    def __init__(self, flow: Flow, index: dict[int, int]) -> None:
        self.flow = flow
        self.index = index
        self.scopes: list[dict[str, Taint]] = [{}]
        self.callers: list[Taint] = []
        self.active: set[str] = set()  # macros being expanded (recursion guard)
        self.called: set[str] = set()
        self.sink: list[Taint] | None = None  # collects what a set block or macro outputs

    def run(self, tree: nodes.Template) -> None:
        self.stmts(tree.body)
        for name, macro in self.flow.macros.items():  # never called: record with no taint
            if name not in self.called:
                self.expand(macro, [], {}, EMPTY)

    # -- scopes ----------------------------------------------------------------
    def lookup(self, name: str) -> Taint | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def bind(self, target: nodes.Node, taint: Taint) -> None:
        if isinstance(target, nodes.Name):
            self.scopes[-1][target.name] = taint
        elif isinstance(target, (nodes.Tuple, nodes.List)):
            for item in target.items:
                self.bind(item, taint)
        elif isinstance(target, nodes.NSRef):
            key = f"{target.name}.{target.attr}"
            for scope in reversed(self.scopes):
                if target.name in scope:
                    scope[key] = scope.get(key, EMPTY) | taint
                    return
            self.scopes[-1][key] = self.scopes[-1].get(key, EMPTY) | taint

    # -- statements --------------------------------------------------------------
    def stmts(self, body: list[nodes.Node]) -> None:
        for node in body:
            self.stmt(node)

    def emit(self, node: nodes.Expr, taint: Taint) -> None:
        i = self.index.get(id(node))
        if i is not None:
            self.flow.outputs[i] = self.flow.outputs[i] | taint
        if self.sink is not None:
            self.sink.append(taint)

    def stmt(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    continue
                self.emit(child, self.expr(child))
        elif isinstance(node, nodes.Assign):
            self.bind(node.target, self.expr(node.node))
        elif isinstance(node, nodes.AssignBlock):
            taint = self.collect(node.body)
            if node.filter is not None:
                taint |= self.expr(node.filter)
            self.bind(node.target, taint)
        elif isinstance(node, nodes.For):
            taint = self.expr(node.iter)
            self.scopes.append({"loop": EMPTY})
            self.bind(node.target, taint)
            if node.test is not None:
                self.expr(node.test)
            self.stmts(node.body)
            self.scopes.pop()
            self.stmts(node.else_)
        elif isinstance(node, nodes.If):
            self.expr(node.test)
            self.stmts(node.body)
            for elif_ in node.elif_:
                self.stmt(elif_)
            self.stmts(node.else_)
        elif isinstance(node, nodes.With):
            values = [self.expr(v) for v in node.values]
            self.scopes.append({})
            for target, taint in zip(node.targets, values, strict=False):
                self.bind(target, taint)
            self.stmts(node.body)
            self.scopes.pop()
        elif isinstance(node, nodes.Macro):
            self.scopes[-1][node.name] = EMPTY
        elif isinstance(node, nodes.CallBlock):
            caller = self.collect(node.body)
            self.callers.append(caller)
            self.emit(node.call, self.expr(node.call))
            self.callers.pop()
        elif isinstance(node, nodes.FilterBlock):
            self.stmts(node.body)
        else:
            for sub in node.iter_child_nodes():
                if isinstance(sub, nodes.Expr):
                    self.expr(sub)
                else:
                    self.stmt(sub)

    def collect(self, body: list[nodes.Node]) -> Taint:
        """Walk BODY and return the union of the taints it outputs."""
        saved, self.sink = self.sink, []
        self.scopes.append({})
        self.stmts(body)
        self.scopes.pop()
        got, self.sink = self.sink, saved
        out = EMPTY.union(*got) if got else EMPTY
        if saved is not None:
            saved.extend(got)
        return out

    def expand(self, macro: nodes.Macro, args: list[Taint], kwargs: dict[str, Taint], caller: Taint) -> Taint:
        """Output of MACRO with its parameters bound to the argument taints."""
        if macro.name in self.active:
            return EMPTY.union(*args, *kwargs.values())
        self.active.add(macro.name)
        self.called.add(macro.name)
        scope: dict[str, Taint] = {"varargs": EMPTY.union(*args[len(macro.args):]),
                                   "kwargs": EMPTY.union(*kwargs.values())}
        n_defaults = len(macro.defaults)
        for i, param in enumerate(macro.args):
            taint = args[i] if i < len(args) else kwargs.get(param.name)
            if taint is None:
                d = i - (len(macro.args) - n_defaults)
                taint = self.expr(macro.defaults[d]) if d >= 0 else EMPTY
            scope[param.name] = taint
        self.scopes.append(scope)
        self.callers.append(caller)
        out = self.collect(macro.body)
        self.callers.pop()
        self.scopes.pop()
        self.active.discard(macro.name)
        return out

    # -- expressions -----------------------------------------------------------
    def expr(self, node: nodes.Node) -> Taint:
        if isinstance(node, nodes.Name):
            found = self.lookup(node.name)
            if found is not None:
                return found
            if node.name in ALLOWED_CONTEXT:
                return frozenset({node.name})
            if node.name in ("caller",) and self.callers:
                return self.callers[-1]
            return frozenset({f"?{node.name}"})
        if isinstance(node, nodes.Getattr):
            return self.member(node.node, node.attr)
        if isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                return self.member(node.node, arg.value)
            return self.expr(node.node) | self.expr(arg)
        if isinstance(node, nodes.Call):
            return self.call(node)
        if isinstance(node, nodes.Const):
            return EMPTY
        parts = [self.expr(c) for c in node.iter_child_nodes() if isinstance(c, nodes.Node)]
        return EMPTY.union(*parts) if parts else EMPTY

    def member(self, base_node: nodes.Node, attr: str) -> Taint:
        if isinstance(base_node, nodes.Name):
            ns = self.lookup(f"{base_node.name}.{attr}")
            if ns is not None:
                return ns
        base = self.expr(base_node)
        if len(base) == 1:
            (root,) = base
            if root in ALLOWED_CONTEXT and root != "unsubscribe_url":
                return frozenset({f"{root}.{attr}"})
        return base

    def call(self, node: nodes.Call) -> Taint:
        args = [self.expr(a) for a in node.args]
        kwargs = {kw.key: self.expr(kw.value) for kw in node.kwargs}
        extra = EMPTY
        if node.dyn_args is not None:
            extra |= self.expr(node.dyn_args)
        if node.dyn_kwargs is not None:
            extra |= self.expr(node.dyn_kwargs)
        callee = node.node
        if isinstance(callee, nodes.Name):
            if callee.name == "caller" and self.callers and self.lookup("caller") is None:
                return self.callers[-1] | extra
            macro = self.flow.macros.get(callee.name)
            if macro is not None and self.lookup(callee.name) is not None:
                caller = self.callers[-1] if self.callers else EMPTY
                return self.expand(macro, args, kwargs, caller) | extra
            if callee.name in ("namespace", "dict"):
                return EMPTY.union(*args, *kwargs.values()) | extra
        return self.expr(callee) | EMPTY.union(*args, *kwargs.values()) | extra



# -- "printed on every path" ---------------------------------------------------------
def required(flow: Flow, wanted: Callable[[int], bool]) -> bool:
    """True when every rendering of the template prints an output for which WANTED(index)."""
    if flow.tree is None:
        return False
    index = {id(n): i for i, n in enumerate(flow.exprs)}
    return _always(flow.tree.body, flow, index, wanted, set())


def _always(body: list[nodes.Node], flow: Flow, index: dict[int, int], wanted: Callable[[int], bool],
            active: set[str]) -> bool:
    return any(_stmt_always(n, flow, index, wanted, active) for n in body)


def _const(test: nodes.Node) -> bool | None:
    if isinstance(test, nodes.Const):
        return bool(test.value)
    if isinstance(test, nodes.Not):
        inner = _const(test.node)
        return None if inner is None else not inner
    return None


def _stmt_always(node: nodes.Node, flow: Flow, index: dict[int, int], wanted: Callable[[int], bool],
                 active: set[str]) -> bool:
    if isinstance(node, nodes.Output):
        return any(_expr_always(n, flow, index, wanted, active) for n in node.nodes
                   if not isinstance(n, nodes.TemplateData))
    if isinstance(node, nodes.If):
        const = _const(node.test)
        if const is True:
            return _always(node.body, flow, index, wanted, active)
        branches = [node.body] if const is None else []
        rest: list[nodes.Node] = []
        for elif_ in node.elif_:
            branches.append(elif_.body)  # conservative: each elif must print it too
        rest = node.else_
        branches.append(rest)
        return all(_always(b, flow, index, wanted, active) for b in branches)
    if isinstance(node, (nodes.With, nodes.FilterBlock, nodes.Scope, nodes.ScopedEvalContextModifier)):
        return _always(node.body, flow, index, wanted, active)
    if isinstance(node, nodes.CallBlock):
        return _expr_always(node.call, flow, index, wanted, active) or (
            _always(node.body, flow, index, wanted, active) and _macro_calls_caller(node, flow))
    return False  # for loops may run zero times; set blocks and macros print nothing here


def _expr_always(expr: nodes.Node, flow: Flow, index: dict[int, int], wanted: Callable[[int], bool],
                 active: set[str]) -> bool:
    i = index.get(id(expr), -1)
    if i >= 0 and wanted(i):
        return True
    if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name):
        macro = flow.macros.get(expr.node.name)
        if macro is not None and macro.name not in active:
            return _always(macro.body, flow, index, wanted, active | {macro.name})
    return False


def _macro_calls_caller(node: nodes.CallBlock, flow: Flow) -> bool:
    call = node.call
    if isinstance(call, nodes.Call) and isinstance(call.node, nodes.Name):
        macro = flow.macros.get(call.node.name)
        if macro is not None:
            return any(isinstance(c.node, nodes.Name) and c.node.name == "caller" for c in macro.find_all(nodes.Call))
    return False


