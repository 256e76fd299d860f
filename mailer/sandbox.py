"""Resource budgets for templates (PHI-1: a template that cannot be rendered safely cannot be verified).

Jinja's sandbox stops attribute escapes, not work: `7 ** (10 ** 9)`, `'a' * 10**10`, three
nested loops over `range(100000)` or a 7 MB template pass a lint and approval and then hang
or kill the sender. `BudgetedEnvironment` bounds, per render:

- exponentiation (exponent <= MAX_EXPONENT) and the size of `*` and `+` results on strings
  and lists (<= MAX_SIZE), checked before anything is built (constant folding is off for them);
- `range` (<= MAX_RANGE items), and every call or filter: an integer argument above MAX_SIZE,
  or a format width above it, is refused before the call, a result above MAX_SIZE after;
- loop iterations (every `{% for %}` counts against MAX_ITERATIONS) and output size
  (MAX_OUTPUT characters, counted while rendering).

`check_files` is what the lint and `campaign submit` run: file size and expression count
caps (so no later pass sees a huge input), then compile and a sample render, each under a
wall-clock limit. A budget problem names the file and, when known, the line.
"""

from __future__ import annotations

import contextvars
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from jinja2 import Template, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

MAX_EXPONENT = 64
MAX_SIZE = 100_000  # characters of a string, items of a list, an integer argument
MAX_RANGE = 10_000
MAX_ITERATIONS = 100_000  # loop iterations per render
MAX_OUTPUT = 2_000_000  # characters of one rendered part
MAX_FILE_BYTES = 512 * 1024  # a template file larger than this is refused before any parsing
MAX_EXPRESSIONS = 5_000  # {{ }} and {% %} in one file
COMPILE_SECONDS = 5.0
RENDER_SECONDS = 5.0

_iterations: contextvars.ContextVar[list[int]] = contextvars.ContextVar("mailer_template_iterations")
_WIDTH = re.compile(r"\d{6,}")


class BudgetError(SecurityError):
    """A template exceeded a resource budget."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def _check_args(args: Iterable[Any]) -> None:
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_SIZE:
            raise BudgetError(f"an argument of {a if abs(a) < 10**12 else 'over a trillion'} exceeds the budget ({MAX_SIZE})")
        if isinstance(a, str) and "%" in a or isinstance(a, str) and "{" in a:
            if _WIDTH.search(a):
                raise BudgetError("a format width exceeds the budget")


def _check_result(value: Any) -> Any:
    if _size(value) > MAX_SIZE:
        raise BudgetError(f"a value of {_size(value)} characters or items exceeds the budget ({MAX_SIZE})")
    return value


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise BudgetError(f"range of {len(r)} items exceeds the budget ({MAX_RANGE})")
    return r


def _counted(iterable: Any) -> Iterator[Any]:
    """Every loop goes through this: iterations count against the render's budget."""
    box = _iterations.get(None)
    for item in iterable:
        if box is not None:
            box[0] += 1
            if box[0] > MAX_ITERATIONS:
                raise BudgetError(f"more than {MAX_ITERATIONS} loop iterations in one render")
        yield item


def _guard_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    skip = 2 if hasattr(fn, "jinja_pass_arg") else 1  # (context or environment,) value, then arguments

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_args(args[skip:])
        _check_args(kwargs.values())
        return _check_result(fn(*args, **kwargs))

    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(guarded, attr, getattr(fn, attr))
    guarded.__name__ = getattr(fn, "__name__", "filter")
    return guarded


class BudgetedTemplate(Template):
    """Every render is budgeted, whoever calls it (the skeleton renderer included)."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        ctx = self.new_context(dict(*args, **kwargs))
        try:
            return _budgeted_concat(self.root_render_func(ctx))
        except Exception:  # noqa: BLE001 - Jinja's own error rewriting, as Template.render does
            self.environment.handle_exception()
        raise AssertionError("unreachable")  # pragma: no cover


class BudgetedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset(["**", "*", "+", "//", "%"])
    template_class = BudgetedTemplate

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _bounded_range
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)
        self.filters = {k: _guard_filter(v) for k, v in self.filters.items()}
        self.filters["mailer_counted"] = _counted

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise BudgetError(f"exponent {right if abs(right) < 10**12 else 'over a trillion'} exceeds "
                                  f"the budget ({MAX_EXPONENT})")
            if isinstance(left, int) and abs(left).bit_length() * max(int(abs(right)), 1) > 4096:
                raise BudgetError("the power exceeds the budget")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if _size(seq) and isinstance(n, int) and _size(seq) * n > MAX_SIZE:
                    raise BudgetError(f"repeating a value {n} times exceeds the budget ({MAX_SIZE})")
            if isinstance(left, int) and isinstance(right, int) and \
                    left.bit_length() + right.bit_length() > 4096:
                raise BudgetError("the product exceeds the budget")
        elif operator == "+" and _size(left) + _size(right) > MAX_SIZE:
            raise BudgetError(f"a value of {_size(left) + _size(right)} characters exceeds the budget ({MAX_SIZE})")
        elif operator == "%" and isinstance(left, str):
            _check_args([left])
        return _check_result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _check_args(args)
        _check_args(kwargs.values())
        fmt_self = getattr(__obj, "__self__", None)
        if isinstance(fmt_self, str):
            _check_args([fmt_self])
        return _check_result(SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_args([obj])  # a width in the format string itself: "{:>999999999}"
        return super().getattr(obj, attribute)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):  # every loop is counted
            loop.iter = nodes.Filter(loop.iter, "mailer_counted", [], [], None, None, lineno=loop.lineno)
        return tree


def _budgeted_concat(pieces: Iterable[str]) -> str:
    """Join the output with a fresh iteration count, bounding its size while it grows."""
    token = _iterations.set([0])
    try:
        out: list[str] = []
        total = 0
        for piece in pieces:
            total += len(piece)
            if total > MAX_OUTPUT:
                raise BudgetError(f"the rendered output exceeds {MAX_OUTPUT} characters")
            out.append(piece)
        return "".join(out)
    finally:
        _iterations.reset(token)


def render_budgeted(template: Any, context: Mapping[str, Any]) -> str:
    return str(template.render(context))


# -- the checks the lint and submit run ------------------------------------------------------

@dataclass(frozen=True)
class BudgetProblem:
    path: str
    line: int
    message: str


class _Deadline:
    """Raise BudgetError in this thread once SECONDS have passed (a trace function, so only at
    lint and submit time: never on the send path)."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.end = 0.0
        self.ticks = 0

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        self.ticks += 1
        if self.ticks % 64 == 0 and time.monotonic() > self.end:
            raise BudgetError(f"{self.what} took longer than {self.seconds:g} s")
        return self._trace

    def __enter__(self) -> _Deadline:
        self.end = time.monotonic() + self.seconds
        self._old = sys.gettrace()
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._old)


def _template_line(err: BaseException, template: Any) -> int:
    tb = err.__traceback__
    line = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>" and template is not None:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def check_source(path: str, source: str, context: Mapping[str, Any], *, autoescape: bool) -> BudgetProblem | None:
    """Size caps, then compile and a sample render under the budgets and wall-clock limits."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        return BudgetProblem(path, 1, f"the file is larger than {MAX_FILE_BYTES // 1024} KB")
    n = source.count("{{") + source.count("{%")
    if n > MAX_EXPRESSIONS:
        return BudgetProblem(path, 1, f"{n} Jinja expressions and statements (at most {MAX_EXPRESSIONS})")
    env = BudgetedEnvironment(autoescape=autoescape, trim_blocks=True, lstrip_blocks=True)
    template = None
    try:
        with _Deadline(COMPILE_SECONDS, "compiling the template"):
            template = env.from_string(source)
        with _Deadline(RENDER_SECONDS, "rendering the template for a sample contact"):
            render_budgeted(template, context)
    except BudgetError as err:
        return BudgetProblem(path, _template_line(err, template), str(err))
    except TemplateSyntaxError:
        return None  # the lint reports syntax with its own finding
    except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError):
        return None  # context errors are PHI-1 findings of the lint; arithmetic on a sample is not a budget
    except (MemoryError, RecursionError) as err:
        return BudgetProblem(path, _template_line(err, template), f"rendering ran out of {type(err).__name__[:-5].lower()}")
    return None


SAMPLE_CONTEXT: dict[str, Any] = {
    "contact": {"first_name": "Sample", "preferred_name": "Sample", "language": "en"},
    "center": {"name": "Center", "postal_address": "1 Main St", "phone": "(555) 555-0100",
               "website": "https://center.example"},
    "campaign": {"name": "Campaign"},
    "unsubscribe_url": "https://center.example/u/SAMPLE",
}


def check_files(files: Iterable[tuple[Path, bool]], context: Mapping[str, Any] | None = None) -> list[BudgetProblem]:
    """FILES: (path, autoescape). Unreadable files are left to the caller's own reading."""
    out: list[BudgetProblem] = []
    for path, autoescape in files:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                out.append(BudgetProblem(str(path), 1, f"the file is larger than {MAX_FILE_BYTES // 1024} KB"))
                continue
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        problem = check_source(str(path), source, context or SAMPLE_CONTEXT, autoescape=autoescape)
        if problem is not None:
            out.append(problem)
    return out
