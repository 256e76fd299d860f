"""Sandbox escapes and odd templates are lint findings (PHI-1), never a crash (issue 5)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from lintcases import SETTINGS

from mailer.lint import Finding
from mailer.lint.loader import TemplateFolder
from mailer.lint.runner import _lint
from mailer.lint.source import Source

DUNDERS = ["__class__", "__mro__", "__subclasses__", "__init__", "__globals__", "__builtins__",
           "__base__", "__bases__", "__dict__", "__getattribute__", "__import__", "__code__",
           "_TemplateReference__context", "_module", "__self__"]
INTERNALS = ["mro", "format", "format_map", "func_globals", "gi_frame", "f_globals"]
GADGET_ROOTS = ["cycler", "joiner", "lipsum", "self", "namespace", "config", "request"]
LITERAL_ROOTS = ["''", '""', "()", "[]", "{}", "1", "0.5", "'x'"]
ident = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


def lint_body(body: str) -> list[Finding]:
    folder = TemplateFolder(path=None, whole=False)  # type: ignore[arg-type]
    folder.bodies.append(Source("payload.html.j2", body, "html"))
    return _lint(folder, SETTINGS)


def access(name: str, style: int) -> str:
    return [f".{name}", f"['{name}']", f"|attr('{name}')", f".{name}()", f"['{name}'][0]"][style]


@st.composite
def escape_payloads(draw: st.DrawFn) -> str:
    """An expression that must be refused: it starts at a gadget or reaches an internal."""
    kind = draw(st.sampled_from(["gadget", "literal", "context", "unknown"]))
    steps = draw(st.lists(st.tuples(st.one_of(ident, st.sampled_from(DUNDERS + INTERNALS)),
                                    st.integers(0, 4)), max_size=5))
    if kind == "gadget":
        root = draw(st.sampled_from(GADGET_ROOTS))
    elif kind == "literal":
        root = draw(st.sampled_from(LITERAL_ROOTS))
        steps.insert(draw(st.integers(0, len(steps))), (draw(st.sampled_from(DUNDERS + INTERNALS)), draw(st.integers(0, 4))))
    elif kind == "context":
        root = "contact"
        first = draw(ident.filter(lambda n: n not in ("first_name", "preferred_name", "language")))
        steps.insert(0, (first, draw(st.integers(0, 4))))
    else:
        root = draw(ident.filter(lambda n: n not in ("contact", "center", "campaign", "unsubscribe_url")))
    return root + "".join(access(name, style) for name, style in steps)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(escape_payloads())
def test_ssti_payloads_are_phi1_findings(payload: str) -> None:
    findings = lint_body("<p>{{ " + payload + " }}</p>")
    assert any(f.rule == "PHI-1" and f.severity == "error" for f in findings), payload


@settings(max_examples=200, deadline=None)
@given(escape_payloads(), st.sampled_from(["{{ @ }}", "{% set x = @ %}{{ x }}", "{% for i in @ %}{{ i }}{% endfor %}",
                                           "{% if @ %}yes{% endif %}", "{{ [@]|first }}", "{{ 'a' ~ @ }}",
                                           "{% macro m(a=@) %}{{ a }}{% endmacro %}{{ m() }}"]))
def test_payloads_are_caught_in_every_position(payload: str, shape: str) -> None:
    body = shape.replace("@", payload)
    assert any(f.rule == "PHI-1" for f in lint_body("<p>" + body + "</p>")), body


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}%#()[]|.'\"_ abcxyz0123<>=-~!:,\n")), max_size=80))
def test_arbitrary_text_never_crashes(body: str) -> None:
    for f in lint_body(body):
        assert f.line >= 1 and f.column >= 1


def test_sandbox_agrees_that_the_classic_payloads_are_unsafe() -> None:
    """The lint flags what the real sandbox refuses at render time, before any render."""
    env = SandboxedEnvironment(undefined=StrictUndefined)  # as the compiler configures it
    for payload in ["''.__class__.__mro__", "cycler.__init__.__globals__", "self._TemplateReference__context"]:
        assert any(f.code == "PHI104" for f in lint_body("{{ " + payload + " }}"))
        with pytest.raises((SecurityError, UndefinedError)):
            env.from_string("{{ " + payload + " }}").render()


def test_deeply_nested_template_is_a_finding() -> None:
    body = "{{ " + "(" * 400 + "1" + ")" * 400 + " }}"
    findings = lint_body(body)
    assert all(f.rule for f in findings)


def test_syntax_error_messages_do_not_echo_template_text() -> None:
    findings = lint_body("<p>{{ 123-45-6789 margaret }}</p>")
    assert [f.code for f in findings if f.rule == "PHI-1"] == ["PHI100"]
    assert all("margaret" not in f.message and "6789" not in f.message for f in findings)


def test_columns_point_at_the_attribute() -> None:
    findings = lint_body("<p>{{ contact.first_name }} {{ contact.name }}</p>")
    phi102 = [f for f in findings if f.code == "PHI102"]
    assert [(f.line, f.column) for f in phi102] == [(1, 40)]  # the "name" after "contact."
