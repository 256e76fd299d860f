"""FastTemplate: a skeleton per recipient shape renders and checks exactly like the full path."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.errors import TemplateError
from mailer.lint import LintSettings, check_rendered
from mailer.personalize import FastTemplate, Filled
from mailer.templates import CompiledTemplate, Rendered, _environments, compile_template
from tests.conftest import ROOT

CENTER = {"name": "Riverside Imaging Center", "postal_address": "1200 River Rd, Springfield, IL 62704",
          "phone": "(217) 555-0100", "website": "https://riverside-imaging.example"}
CAMPAIGN = {"name": "Spring"}
LINT = LintSettings(center_phone=CENTER["phone"], center_address=CENTER["postal_address"],
                    center_website=CENTER["website"], sender_domains=("riverside-imaging.example",))
REAL = ("newsletter", "service-announcement", "condition-targeted")

GREETING = '<p>Hello {{ contact.preferred_name or contact.first_name or "there" }},</p>'
SYNTHETIC: dict[str, dict[str, str]] = {
    "greeting-or": {"html": GREETING + "\n<p>Body text.</p>\n<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
                    "text": "Hello {{ contact.preferred_name or contact.first_name or 'there' }},\n\nBody."},
    "if-else": {"html": "{% if contact.first_name %}<p>Dear {{ contact.first_name }},</p>"
                        "{% else %}<p>Dear patient,</p>{% endif %}\n<p>Our news.</p>",
                "text": "{% if not contact.preferred_name %}Hi{% else %}Hi {{ contact.preferred_name }}{% endif %}\n"
                        "{{ contact['first_name'] if contact.first_name else 'friend' }}"},
    "language": {"html": "{% if contact.language == 'es' %}<p>Hola {{ contact.first_name }}</p>"
                         "{% elif contact.language|upper == 'FR' %}<p>Bonjour</p>"
                         "{% else %}<p>Hello {{ contact.first_name }}</p>{% endif %}\n<p>{{ contact.language }}</p>",
                 "text": "{{ contact.language }}: {{ contact.first_name and 'named' }}"},
    "unsubscribe": {"html": "<p>Leave: <a href=\"{{ unsubscribe_url }}\">{{ unsubscribe_url }}</a></p>\n"
                            "{% if unsubscribe_url %}<p>one click</p>{% endif %}",
                    "text": "Unsubscribe: {{ unsubscribe_url }}\n{{ unsubscribe_url or 'none' }}"},
    "subject": {"subject": "{{ contact.first_name }},  news from {{ center.name }}",
                "preheader": "  Hi {{ contact.preferred_name or contact.first_name }}  \n today ",
                "from_name": "{{ center.name }} for {{ contact.first_name }}",
                "html": "<p>{{ contact.first_name }}{{ contact.preferred_name }}</p>", "text": "x"},
    "near-identifiers": {
        "html": "<p>Born {{ contact.first_name }}</p>\n<p>{{ contact.first_name }} 555-0199</p>\n"
                "<p>Date of birth:\n{{ contact.preferred_name }}</p>\n<p>03/14/1931</p>\n<p>MRN {{ contact.first_name }}</p>\n"
                "<p>{{ contact.first_name }}@example.org, SSN {{ contact.preferred_name }}, age</p>\n"
                "<p>{{ unsubscribe_url }} call 217-555-0100 or {{ contact.first_name }}</p>",
        "text": "born on {{ contact.first_name }}\nfax {{ contact.preferred_name }}\n{{ contact.first_name }}\n"
                "1931\nbreast {{ contact.first_name }} cancer&nbsp;screening   program\n\n\n   bone  health"},
    "line-context": {"html": "<p>Date of birth:</p>\n<p>{{ contact.first_name }}</p>\n<p>on 03/14/2001</p>\n<p>x</p>",
                     "text": "{{ contact.preferred_name }}\n03/14/2001"},
    "glued": {"html": "<p>{{ contact.first_name }}cancer screening{{ contact.preferred_name }}</p>\n<p>bone health</p>",
              "text": "{{ contact.first_name }} aa bb cc dd ee ff gg hh jjkk\nkkjj aa bb cc dd ee ff gg hh {{ contact.preferred_name }}"},
    "first-line": {"html": "<p>SSN 123-45-6789</p>\n<p>{{ contact.first_name }}</p>", "text": "Call 217-555-0199\n{{ unsubscribe_url }}"},
    "greek": {"html": "<p>{{ contact.first_name }}a {{ contact.preferred_name }}</p>",
              "text": "{{ contact.first_name }}{{ contact.preferred_name }}"},
    "sigma": {"html": "<p>ΣΑΣ {{ contact.first_name }}Σ ΟΔΟΣ</p>\n<p>ΟΣ</p>", "text": "Σ{{ contact.first_name }}Σ"},
}


def make(*, subject: str = "News from {{ center.name }}", preheader: str = "", from_name: str = "Riverside Imaging",
         html: str = "<p>Hello</p>", text: str = "Hello", compiled_html: str | None = None) -> CompiledTemplate:
    """A CompiledTemplate straight from sources (COMPILED_HTML: compile other code than the source says)."""
    html_env, text_env = _environments()
    t = CompiledTemplate(
        name="synthetic", path=ROOT, purpose="newsletter", content_hash="0" * 64,
        meta={"subject": subject, "preheader": preheader, "from_name": from_name},
        _subject=text_env.from_string(subject), _preheader=text_env.from_string(preheader),
        _from_name=text_env.from_string(from_name),
        _html=html_env.from_string(compiled_html if compiled_html is not None else html),
        _text=text_env.from_string(text), html_source=html, text_source=text)
    if "{" not in from_name:
        t.static_from_name = from_name.strip()
    return t


@cache
def template(name: str) -> CompiledTemplate:
    return compile_template(ROOT / "templates" / name) if name in REAL else make(**SYNTHETIC[name])


@cache
def fast(name: str) -> FastTemplate:
    """One FastTemplate per template for the whole run, so shapes are built once and reused."""
    return FastTemplate(template(name), center=CENTER, campaign=CAMPAIGN)


def context(contact: dict[str, Any], url: str) -> dict[str, Any]:
    return {"contact": contact, "center": CENTER, "campaign": CAMPAIGN, "unsubscribe_url": url}


def outcome(fn: Callable[[], Rendered]) -> tuple[str, Any]:
    try:
        return "ok", fn().parts()
    except TemplateError as err:
        return "error", (str(err), err.rules)


def full_rules(rendered: Rendered, values: list[str]) -> list[str]:
    findings = check_rendered(rendered.parts(), recipient_values=values, settings=LINT)
    return sorted({f.rule for f in findings if f.blocking})


# -- values -----------------------------------------------------------------------------------
LOOKALIKES = ["", " ", "\n", "  Ana \n Bo  ", "Ana", "ANA", "Zoë", "Σοφία", "ΟΔΟΣ", "<b>Ana</b>", "O'Neil & \"Co\"",
              "123-45-6789", "217-555-0199", "03/14/2001", "2001-03-14", "born", "ΑΣ", "ασa", "(800) 555 0199", "03/14/1931", "1931-03-14", "March 14, 1931",
              "ana@gmail.com", "MRN A1234567", "Member ID XK12345", "age 93", "fingerprint", "10 Elm St",
              "IL 62704", "Cook County", "192.168.0.1", "4111 1111 1111 1111", "breast", "cancer screening",
              "Dear Margaret,", "born", "Rx #1234567", "%20", "&nbsp;", "a+b", "\x00x", "{0}", "}{"]
names = st.one_of(st.sampled_from(LOOKALIKES),
                  st.text(alphabet=st.sampled_from(list("Aaσ Σ<>&\"'\n\t\xa0-/0123456789@.+%;{}")), max_size=16),
                  st.text(max_size=12))
urls = st.one_of(st.just(""), st.sampled_from(["https://riverside-imaging.example/u/Zk3tQ9xLmP2wR7vB",
                                               "https://x.example/u?a=1&b=2", "https://x.example/u/123-45-6789"]),
                 st.from_regex(r"https://riverside-imaging\.example/u/[A-Za-z0-9_-]{4,22}", fullmatch=True),
                 st.text(max_size=20))
languages = st.sampled_from(["en", "es", "fr"])
ALL = REAL + tuple(SYNTHETIC)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(first=names, preferred=names, url=urls, language=languages)
def test_render_equals_the_full_render(name: str, first: str, preferred: str, url: str, language: str) -> None:
    contact = {"first_name": first, "preferred_name": preferred, "language": language}
    got = outcome(lambda: fast(name).render(contact, url))
    assert got == outcome(lambda: template(name).render(context(contact, url)))


@pytest.mark.parametrize("name", ALL)
def test_templates_are_eligible_and_use_the_skeleton(name: str) -> None:
    f = fast(name)
    assert f.eligible and f.reason == ""
    r = f.render({"first_name": "Ana", "preferred_name": "", "language": "en"}, "https://x.example/u/1")
    assert isinstance(r, Filled) and r.personalized
    full = template(name).render(context({"first_name": "Ana", "preferred_name": "", "language": "en"},
                                         "https://x.example/u/1"))
    assert r == full and full == r and hash(r) == hash(full)


@st.composite
def recipient_values(draw: st.DrawFn, message: Rendered) -> list[str]:
    """Clinical values: look-alikes, and slices of the message itself (around the values too)."""
    out = draw(st.lists(st.sampled_from(LOOKALIKES + ["osteoporosis", "bone health", "MRI", "hello", "there"]),
                        max_size=3))
    text = draw(st.sampled_from([message.html, message.text, message.subject]))
    for _ in range(draw(st.integers(0, 3))):
        if text:
            start = draw(st.integers(0, len(text) - 1))
            out.append(text[start:start + draw(st.integers(1, 40))])
    return out


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(first=names, preferred=names, url=urls, language=languages, data=st.data())
def test_blocking_rules_equal_the_full_check(name: str, first: str, preferred: str, url: str, language: str,
                                             data: st.DataObject) -> None:
    contact = {"first_name": first, "preferred_name": preferred, "language": language}
    try:
        full = template(name).render(context(contact, url))
    except TemplateError:
        return
    r = fast(name).render(contact, url)
    values = data.draw(recipient_values(full) | st.lists(names, max_size=3).map(lambda v: [*v, first, url]))
    assert r.blocking_rules(values, LINT) == full_rules(full, values)


@pytest.mark.parametrize("values", [[], ["osteoporosis"], ["ana"], ["hello ana"], ["ana cancer screening"],
                                    ["cancer screening program"], ["cancer screening program bone health"],
                                    ["breast ana"], ["ΣΟΦΊΑ"], ["σοφία"]])
@pytest.mark.parametrize("first", ["Ana", "Σοφία", "ana\n\ncancer", "Ana&nbsp;", "03/14/1931", "x@gmail.com"])
def test_blocking_rules_near_identifiers(first: str, values: list[str]) -> None:
    for name in ("near-identifiers", "sigma", "greeting-or"):
        contact = {"first_name": first, "preferred_name": first, "language": "en"}
        full = template(name).render(context(contact, "https://x.example/u/Zk3"))
        r = fast(name).render(contact, "https://x.example/u/Zk3")
        assert r.personalized
        assert r.blocking_rules(values, LINT) == full_rules(full, values), name


@pytest.mark.parametrize(("name", "first", "preferred", "values", "expected"), [
    ("line-context", "03/14/2001", "", [], ["PHI-5"]),  # "Date of birth:" on the line before the value
    ("line-context", "born", "", [], ["PHI-5"]),  # the value is context for the static line after it
    ("line-context", "Ana", "born", [], ["PHI-5"]),
    ("line-context", "Ana", "", [], []),
    ("glued", "x", "y", ["cancer screening"], []),  # static text glued to a value is no whole word
    ("glued", "-", "-", ["cancer screening"], ["PHI-2"]),
    ("glued", "Ana", "Bo", ["jj"], []),  # a window never ends inside a word
    ("glued", "Ana", "Bo", ["hh bo"], ["PHI-2"]),
    ("glued", "Ana", "Bo", ["ana aa bb"], ["PHI-2"]),
    ("first-line", "Ana", "", [], ["PHI-3"]),
    ("greek", "ΑΣ", "", ["ασa"], ["PHI-2"]),  # lower() of a sigma looks at the static letter after it
    ("greek", "ΑΣ", "", ["ας"], ["PHI-2"]),  # the text part ends with it: a final sigma
], ids=str)
def test_context_across_lines_and_characters(name: str, first: str, preferred: str, values: list[str],
                                             expected: list[str]) -> None:
    contact = {"first_name": first, "preferred_name": preferred, "language": "en"}
    r = fast(name).render(contact, "u")
    assert r.personalized
    assert r.blocking_rules(values, LINT) == expected == full_rules(template(name).render(context(contact, "u")), values)


@pytest.mark.parametrize("name", ALL)
def test_memoised_checks_stay_exact_when_the_same_values_come_again(name: str) -> None:
    # A memo entry is kept from the second message on; one value in several places of a
    # part (near-identifiers: preferred_name twice in the HTML) must not share an entry.
    contacts = [{"first_name": first, "preferred_name": preferred, "language": "en"}
                for first, preferred in (("", "000"), ("Ana", "webinar"), ("", "born"), ("03/14/2001", ""))]
    for _ in range(3):
        for contact in contacts:
            full = template(name).render(context(contact, "https://x.example/u/1"))
            r = fast(name).render(contact, "https://x.example/u/1")
            assert r.blocking_rules(["ana"], LINT) == full_rules(full, ["ana"]), contact


def test_a_value_spelled_with_every_pad_character_is_searched_in_the_whole_message() -> None:
    word = string.ascii_lowercase + string.digits + "αβγδεζηθικλμνξοπρστυφχψω"
    for first in (word, "Ana"):
        for name in ("glued", "greeting-or", "newsletter"):
            contact = {"first_name": first, "preferred_name": "", "language": "en"}
            r = fast(name).render(contact, "u")
            full = template(name).render(context(contact, "u"))
            assert r.blocking_rules([word, "bone health"], LINT) == full_rules(full, [word, "bone health"])


def test_a_value_that_matches_a_pattern_blocks_like_the_full_check() -> None:
    contact = {"first_name": "123-45-6789", "preferred_name": "", "language": "en"}
    r = fast("near-identifiers").render(contact, "")
    assert "PHI-3" in r.blocking_rules([], LINT)
    assert "PHI-2" in fast("newsletter").render({**contact, "first_name": "Osteoporosis"}, "u").blocking_rules(
        ["osteoporosis"], LINT)


# -- fallbacks --------------------------------------------------------------------------------
@pytest.mark.parametrize("html", [
    "<p>{{ contact.first_name|upper }}</p>",
    "<p>{{ contact.first_name|e }}</p>",
    "<p>{{ contact.first_name|length }}</p>",
    '{% if contact.first_name == "Ana" %}<p>Hi Ana</p>{% endif %}',
    "{% set n = contact.first_name %}<p>{{ n }}</p>",
    "{% for c in contact.first_name %}{{ c }}{% endfor %}",
    '<p>{{ "Hi " ~ contact.first_name }}</p>',
    "<p>{{ contact }}</p>",
    "<p>{{ contact.first_name.upper() }}</p>",
    "<p>{{ contact[contact.language] }}</p>",
    "{% if contact.first_name is string %}x{% endif %}",
    "<p>{{ [1, 2]|random }}</p>",
    "{% macro m() %}{{ unsubscribe_url }}{% endmacro %}{{ m() }}",
], ids=lambda s: re.sub(r"\W+", "-", s)[:40])
def test_ineligible_templates_fall_back_and_render_identically(html: str) -> None:
    t = make(html=html)
    f = FastTemplate(t, center=CENTER, campaign=CAMPAIGN)
    assert not f.eligible and f.reason
    for first in ("Ana", "", "<Bo>"):
        contact = {"first_name": first, "preferred_name": "", "language": "en"}
        got = outcome(lambda contact=contact: f.render(contact, "https://x.example/u/1"))
        if "random" not in html:
            assert got == outcome(lambda contact=contact: t.render(context(contact, "https://x.example/u/1")))
        r = f.render(contact, "u") if got[0] == "ok" else None
        assert r is None or (not r.personalized and r.blocking_rules(["ana"], LINT) == full_rules(r, ["ana"]))
    assert "Ana" not in f.reason


def test_language_may_be_used_anywhere() -> None:
    f = FastTemplate(make(html="<p>{{ contact.language|upper }} {{ contact['language'] == 'en' }}</p>"),
                     center=CENTER, campaign=CAMPAIGN)
    assert f.eligible


@pytest.mark.parametrize("compiled", [
    "<p>{{ contact.first_name }}{{ contact.first_name|length }}</p>",  # depends on the value's length
    "<p>{{ contact.first_name|upper }}</p>",  # the sentinel never shows verbatim
])
def test_a_shape_whose_verification_fails_falls_back(compiled: str) -> None:
    # The kept source says `{{ contact.first_name }}`; the code compiled says otherwise, so
    # only the double-sentinel render can tell.
    t = make(html="<p>{{ contact.first_name }}</p>", compiled_html=compiled)
    f = FastTemplate(t, center=CENTER, campaign=CAMPAIGN)
    assert f.eligible
    for first in ("Ana", "ann", "x"):
        contact = {"first_name": first, "preferred_name": "", "language": "en"}
        r = f.render(contact, "u")
        assert not r.personalized
        assert r.parts() == t.render(context(contact, "u")).parts()
    # The empty name renders without sentinels, so that shape verifies and is filled.
    assert f.render({"first_name": "", "preferred_name": "", "language": "en"}, "u").personalized


def test_errors_are_the_full_renders_template_errors() -> None:
    f = FastTemplate(make(html="<p>{{ contact.first_name }} {{ nobody }}</p>"), center=CENTER, campaign=CAMPAIGN)
    assert f.eligible
    with pytest.raises(TemplateError) as err:
        f.render({"first_name": "Ana", "preferred_name": "", "language": "en"}, "u")
    assert err.value.rules == ("PHI-1",)
    with pytest.raises(TemplateError) as err:
        fast("newsletter").render({"first_name": "Ana", "language": "en"}, "u")  # no preferred_name
    assert err.value.rules == ("PHI-1",)


def test_other_value_types_take_the_full_render() -> None:
    from markupsafe import Markup

    for contact in ({"first_name": Markup("<b>A</b>"), "preferred_name": "", "language": "en"},
                    {"first_name": None, "preferred_name": "", "language": "en"}):
        r = fast("greeting-or").render(contact, "u")  # type: ignore[arg-type]
        assert not r.personalized
        assert r.parts() == template("greeting-or").render(context(contact, "u")).parts()


def test_shapes_are_bounded() -> None:
    f = FastTemplate(make(html="<p>{{ contact.language }} {{ contact.first_name }}</p>"), center=CENTER,
                     campaign=CAMPAIGN)
    for i in range(200):
        f.render({"first_name": "Ana", "preferred_name": "", "language": f"x{i}"}, "u")
    assert len(f._shapes) <= 64


def test_sources_not_kept_means_not_eligible() -> None:
    t = make()
    t.html_source = None
    f = FastTemplate(t, center=CENTER, campaign=CAMPAIGN)
    assert not f.eligible and "sources" in f.reason
    assert f.render({"first_name": "Ana", "preferred_name": "", "language": "en"}, "u").parts() == \
        t.render(context({"first_name": "Ana", "preferred_name": "", "language": "en"}, "u")).parts()


# -- mailer's own unsubscribe token ----------------------------------------------------------
BASE = "https://riverside-imaging.example/u/"


def test_a_token_that_looks_like_an_identifier_does_not_block_the_recipient() -> None:
    """PHI-6 tokens are random: one can spell an SSN-like digit run. It is mailer's value,
    not the recipient's, so the check scans a placeholder in its place; the base is still scanned."""
    newsletter = compile_template(ROOT / "templates/newsletter")
    unlucky = BASE + "123-45-6789xYzAbCdEf"
    contact = {"first_name": "Ana", "preferred_name": "", "language": "en"}
    plain = FastTemplate(newsletter, center=CENTER, campaign=CAMPAIGN)
    own = FastTemplate(newsletter, center=CENTER, campaign=CAMPAIGN, unsubscribe_base=BASE)
    assert "PHI-3" in plain.render(contact, unlucky).blocking_rules([], LINT)  # what the full scan says
    filled = own.render(contact, unlucky)
    assert filled.blocking_rules([], LINT) == []
    assert filled == newsletter.render({"contact": contact, "center": CENTER, "campaign": CAMPAIGN,
                                        "unsubscribe_url": unlucky})  # the message itself is unchanged


def test_a_url_outside_the_base_or_not_a_token_is_scanned_as_it_is() -> None:
    newsletter = compile_template(ROOT / "templates/newsletter")
    own = FastTemplate(newsletter, center=CENTER, campaign=CAMPAIGN, unsubscribe_base=BASE)
    contact = {"first_name": "Ana", "preferred_name": "", "language": "en"}
    elsewhere = "https://other.example/u/123-45-6789xYzAbCdEf"
    assert "PHI-3" in own.render(contact, elsewhere).blocking_rules([], LINT)
    not_a_token = BASE + "ssn/123-45-6789"  # a path, not mailer's token alphabet
    assert "PHI-3" in own.render(contact, not_a_token).blocking_rules([], LINT)
