"""Issue 13: the second-generation lint, one test per weakness kind the issue lists.

Each test is a small template a marketer could write; each failed on the first lint
(checked against the issue-5 code when they were written). The corpus tests at the end
hold the lint to the issue's targets on both halves of the labelled gen2 corpus.
"""

from __future__ import annotations

from pathlib import Path

import gen2cases
import pytest
from gen2cases import SETTINGS

from mailer.lint import Finding, LintSettings, lint_template_dir

FOOT = '<p>{{ center.name }} · {{ center.postal_address }} · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'


def lint(tmp_path: Path, body: str, *, purpose: str = "newsletter", subject: str = "News from {{ center.name }}",
         preheader: str = "Spring updates", extra: str = "", text: str | None = None,
         settings: LintSettings = SETTINGS) -> list[Finding]:
    folder = tmp_path / "t"
    folder.mkdir(exist_ok=True)
    (folder / "template.toml").write_text(
        f'subject = "{subject}"\npreheader = "{preheader}"\nfrom_name = "Riverside Imaging"\npurpose = "{purpose}"\n{extra}',
        encoding="utf-8")
    (folder / "body.html.j2").write_text(f"<html><body>\n{body}\n</body></html>\n", encoding="utf-8")
    if text is not None:
        (folder / "body.txt.j2").write_text(text, encoding="utf-8")
    return lint_template_dir(folder, settings)


def codes(findings: list[Finding], severity: str | None = None) -> set[str]:
    return {f.code for f in findings if not f.waived and (severity is None or f.severity == severity)}


def flagged(findings: list[Finding]) -> bool:
    return any(f.severity in ("error", "review") and not f.waived for f in findings)


# -- 1. where recipient data flows -------------------------------------------------------------
@pytest.mark.parametrize("body", [
    # macro parameter
    '{% macro b(who) %}<a href="{{ center.website }}/book?for={{ who }}">Book</a>{% endmacro %}'
    '<p>{{ b(contact.first_name) }}</p>',
    # set block
    '{% set n %}{{ contact.first_name }}{% endset %}<a href="https://x.example/r?g={{ n }}">Go</a>',
    # link starting with the center's website
    '<a href="{{ center.website }}/welcome/{{ contact.first_name }}">Open</a>',
    # caller()
    '{% macro share() %}<a href="mailto:?body={{ caller() }}">Share</a>{% endmacro %}'
    '{% call share() %}{{ contact.first_name }}{% endcall %}',
    # namespace attribute, with block and format filter
    '{% set ns = namespace(w="") %}{% set ns.w = contact.first_name %}<a href="/x?n={{ ns.w }}">x</a>',
    '{% with n = contact.preferred_name %}<img src="https://c.example/p.png?t={{ n }}" alt="">{% endwith %}',
    '{% set u = "https://c.example/?w=%s" | format(contact.first_name) %}<a href="{{ u }}">x</a>',
])
def test_recipient_data_reaching_a_url_by_any_route_is_an_error(tmp_path: Path, body: str) -> None:
    assert "PHI202" in codes(lint(tmp_path, body + FOOT), "error")


def test_unsubscribe_token_inside_another_url_is_an_error(tmp_path: Path) -> None:
    body = '<a href="https://survey.example/r?ref={{ unsubscribe_url | urlencode }}">Survey</a>' + FOOT
    assert "PHI206" in codes(lint(tmp_path, body), "error")


def test_center_website_link_and_unsubscribe_macro_are_fine(tmp_path: Path) -> None:
    body = ('{% macro link(url, label) %}<a href="{{ url }}">{{ label }}</a>{% endmacro %}'
            '<p><a href="{{ center.website }}/book">Book</a></p>'
            '<p>{{ center.name }} · {{ center.postal_address }} · {{ link(unsubscribe_url, "Unsubscribe") }}</p>')
    assert codes(lint(tmp_path, body)) == set()


# -- 2. tracking and third-party loads -------------------------------------------------------------
@pytest.mark.parametrize(("body", "code"), [
    ('<div style="background:url(https://trk.example.net/o.gif);height:1px"></div>', "PHI702"),
    ('<table background="https://ads.doubleclick.net/bg.jpg"><tr><td>x</td></tr></table>', "PHI702"),
    ('<!--[if mso]><v:fill src="https://t.example.net/o.gif" /><![endif]-->', "PHI704"),
    ('<div style="max-height:0;overflow:hidden"><img src="https://t.example.net/p.png" width="600"></div>', "PHI702"),
    ('<style>.h{opacity:0}</style><img class="h" src="https://t.example.net/p.png">', "PHI702"),
    ('<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Lato">', "PHI703"),
    ("<style>@font-face{font-family:B;src:url('https://use.typekit.net/b.woff2')}</style>", "PHI703"),
    ('<style>@import url("https://css.example.net/t.css");</style>', "PHI703"),
])
def test_remote_loads_are_examined_wherever_they_hide(tmp_path: Path, body: str, code: str) -> None:
    assert code in codes(lint(tmp_path, body + FOOT))


def test_own_domain_backgrounds_and_fonts_are_fine(tmp_path: Path) -> None:
    body = ("<style>@font-face{font-family:R;src:url('https://riverside-imaging.example/f.woff2')}"
            ".hero{background:url('https://riverside-imaging.example/h.jpg')}</style>"
            '<div class="hero"><img src="https://riverside-imaging.example/logo.png" width="1" height="1" alt=""></div>')
    assert codes(lint(tmp_path, body + FOOT)) == set()


# -- 3. identifiers in literal text -------------------------------------------------------------
@pytest.mark.parametrize(("line", "code"), [
    ("<p>Hola Ángela Núñez,</p>", "PHI318"),
    ("<p>Thanks to our patient Eleanor Whitfield for the idea.</p>", "PHI319"),
    ("<p>Reference: Accession No. A20260311-4471</p>", "PHI320"),
    ("<p>You will need MR# 00482913 to finish the form.</p>", "PHI306"),
    ("<p>Tell us about encounter #E-2210448.</p>", "PHI320"),
    ("<p>Claim number 7730021945 under group number GRP-55120 was paid.</p>", "PHI320"),
    ("<p>Study 1.2.840.113619.2.55.3.604688119.971.1402919712.201</p>", "PHI320"),
    ("<p>Use el número de expediente 55102938.</p>", "PHI306"),
    ("<p>Gracias por realizarse su resonancia el 3 de marzo de 2026.</p>", "PHI501"),
    ("<p>Text Karen at 312.555.0187 or +13125550199.</p>", "PHI301"),
    ("<p>Verify the SSN on file: 219 09 9999.</p>", "PHI305"),
    ("<p>A sign-in from fe80::1ff:fe23:4567:890a.</p>", "PHI313"),
    ("<p>At 93, our patient still walks two miles a day.</p>", "PHI502"),
])
def test_identifiers_the_first_lint_missed_are_errors(tmp_path: Path, line: str, code: str) -> None:
    found = lint(tmp_path, line + FOOT)
    assert code in codes(found, "error"), [f.format() for f in found]


def test_center_identity_from_config_is_never_an_identifier(tmp_path: Path) -> None:
    body = ("<p>Dear Springfield neighbors, visit 1200 River Road or call 217.555.0100.</p>"
            "<p>“Lower dose, same clarity,” says Dr. Anita Patel, our medical director.</p>")
    assert codes(lint(tmp_path, body + FOOT)) == set()


# -- 4. disguised marketing, normalised, in English and Spanish -----------------------------------
@pytest.mark.parametrize(("body", "subject"), [
    ("<p>Because you were diagnosed with osteopenia, try our class.</p>", "News"),
    ("<p>Your doctor asked us to reach out about a follow-up CT.</p>", "News"),
    ("<p>Hi!</p>", "Your images are available"),
    ("<p>Hi!</p>", "Y\u043eur r\u0435sults and an offer"),  # Cyrillic o and e
    ("<p>Following your recent diag\u00adnosis, book a consult.</p>", "News"),
    ("<p>Hola</p>", "Sus resultados están listos"),
    ("<p>Tras su diagnóstico de osteoporosis le invitamos a clase.</p>", "Noticias"),
    ("<p>Hola</p>", "RV: Promoción de primavera"),
])
def test_disguised_marketing_is_an_error(tmp_path: Path, body: str, subject: str) -> None:
    found = lint(tmp_path, body + FOOT, subject=subject)
    assert codes(found, "error") & {"DIS201", "DIS202"}, [f.format() for f in found]


@pytest.mark.parametrize("body", [
    "<p>If your mammogram shows an area that needs a closer look, you may be called back.</p>",
    "<p>Your results are always sent to your doctor, who will talk them through with you.</p>",
    "<p>Si su médico le pide una resonancia, es normal tener preguntas.</p>",
    "<p>If you were diagnosed with cancer, you are not alone.</p>",
])
def test_general_education_and_process_text_are_not_claims(tmp_path: Path, body: str) -> None:
    assert codes(lint(tmp_path, body + FOOT, purpose="health-education")) == set()


# -- 5. the declared purpose is not trusted over the content -------------------------------------
def test_paid_block_in_a_newsletter_is_an_error(tmp_path: Path) -> None:
    body = "<p>From our partner: try CalciMax Plus, 10% off with code RIVER10.</p>"
    assert "DIS302" in codes(lint(tmp_path, body + FOOT), "error")


def test_sponsored_by_a_vague_word_does_not_name_the_sponsor(tmp_path: Path) -> None:
    body = "<p>Advertisement. Sponsored by our partners.</p>"
    found = lint(tmp_path, body + FOOT, purpose="third-party-marketing", extra="advertisement_notice = true\n")
    assert "DIS301" in codes(found, "error")


# -- 6. presence is not visibility ---------------------------------------------------------------
@pytest.mark.parametrize(("body", "code"), [
    ('<p>{{ center.postal_address }}</p><div style="display:none"><a href="{{ unsubscribe_url }}">Unsubscribe</a></div>', "SPAM401"),
    ('<style>.f a{font-size:0}</style><p>{{ center.postal_address }}</p><p class="f"><a href="{{ unsubscribe_url }}">U</a></p>', "SPAM401"),
    ('{% if contact.language == "es" %}<a href="{{ unsubscribe_url }}">Baja</a>{% endif %}<p>{{ center.postal_address }}</p>', "SPAM401"),
    ('{% if false %}<p>{{ center.postal_address }}</p>{% endif %}<a href="{{ unsubscribe_url }}">U</a>', "SPAM801"),
    ('<p style="visibility:hidden">{{ center.postal_address }}</p><a href="{{ unsubscribe_url }}">U</a>', "SPAM801"),
])
def test_hidden_or_conditional_opt_out_and_address_are_errors(tmp_path: Path, body: str, code: str) -> None:
    assert code in codes(lint(tmp_path, body), "error")


def test_both_language_branches_with_a_footer_pass(tmp_path: Path) -> None:
    body = ('{% if contact.language == "es" %}<p>Hola</p>' + FOOT.replace("Unsubscribe", "Baja")
            + "{% else %}<p>Hi</p>" + FOOT + "{% endif %}")
    assert codes(lint(tmp_path, body)) == set()


# -- 7. testimonials and patient images ----------------------------------------------------------
@pytest.mark.parametrize("body", [
    "<p>Dorothy K. from Berwyn tells us the staff made her first MRI easy.</p>",
    "<h2>Patient spotlight</h2><p>Meet Tom, a retired bus driver. His CT found a nodule early.</p>",
    "<p>«Me trataron con cariño», cuenta Guadalupe Ortiz, paciente desde 2019.</p>",
    '<img src="{{ center.website }}/img/knee-before-after.jpg" alt="Before and after knee MRI">',
    '<img src="https://riverside-imaging.example/img/s.jpg" alt="Our patient Maria with her family">',
])
def test_testimonials_stories_and_patient_images_go_to_review(tmp_path: Path, body: str) -> None:
    assert codes(lint(tmp_path, body + FOOT), "review") & {"TST101", "TST102"}


def test_quoted_staff_physician_and_event_title_are_not_testimonials(tmp_path: Path) -> None:
    body = ("<p>“We cut the dose by 40 percent,” says Dr. Luis Moreno.</p>"
            "<p>Come to our “Know Your Numbers: A Community Evening” night.</p>")
    assert codes(lint(tmp_path, body + FOOT)) == set()


# -- 8. context: honest content is not an error -------------------------------------------------
@pytest.mark.parametrize("body", [
    "<p>Dear Oak Park neighbors,</p>",
    "<p>We are closed Friday, December 25, 2026 and Friday, January 1, 2027.</p>",
    "<p>Founded in 1931; our first X-ray room opened on June 1, 1931.</p>",
    "<p>Screening is for adults aged 50 to 80. By age 90, most women have some bone loss.</p>",
    "<p>Join us at the Oak Park Public Library, 834 Lake Street, Oak Park, IL 60301.</p>",
    '{% set ns = namespace(n=0) %}{% for s in ["MRI", "CT"] %}{% set ns.n = ns.n + 1 %}{% endfor %}<p>{{ ns.n }}</p>',
])
def test_honest_content_has_no_error(tmp_path: Path, body: str) -> None:
    found = lint(tmp_path, body + FOOT)
    assert not codes(found, "error"), [f.format() for f in found]


# -- 9. hidden but delivered places ----------------------------------------------------------------
@pytest.mark.parametrize(("body", "preheader", "code"), [
    ("<!-- proofed against MRN 004417829 -->", "News", "PHI306"),
    ('<img src="https://riverside-imaging.example/c.png" alt="Cake for patient born 04/12/1951">', "News", "PHI501"),
    ('<a href="{{ center.website }}" title="Prepared for Harold Jenkins">Site</a>', "News", "PHI319"),
    ('<img src="https://riverside-imaging.example/h.jpg" alt="Your recent MRI showed improvement">', "News", "DIS202"),
    ("<p>Hi</p>", "Following up on your mammogram from last Tuesday", "DIS202"),
])
def test_comments_alt_title_and_preheader_get_every_scan(tmp_path: Path, body: str, preheader: str, code: str) -> None:
    assert code in codes(lint(tmp_path, body + FOOT, preheader=preheader), "error")


# -- 10. environment -----------------------------------------------------------------------------
def test_without_config_the_center_is_unknown_but_the_lint_still_runs(tmp_path: Path) -> None:
    found = lint(tmp_path, "<p>Call 217.555.0100</p>" + FOOT, settings=LintSettings(configured=False))
    assert "PHI301" in codes(found, "error")  # not the center's (unknown): the CLI warns once


# -- the labelled corpus (issue 13 targets) -------------------------------------------------------
@pytest.mark.parametrize("half", gen2cases.HALVES)
def test_corpus_targets(half: str) -> None:
    import sys

    sys.path.insert(0, str(gen2cases.HERE.parent.parent))
    from bench.lint_eval import evaluate

    r = evaluate(half)
    assert r.leaks + r.clean >= 75
    assert r.pct(r.leaks_flagged, r.leaks) >= 95, r.missed if half == "tuning" else "held-out: see make lint-eval"
    assert r.clean_error == 0, r.false_errors if half == "tuning" else "held-out: see make lint-eval"
    assert r.pct(r.clean_review, r.clean) <= 20


def test_corpus_is_large_and_labelled() -> None:
    cases = [c for half in gen2cases.HALVES for c in gen2cases.load(half)]
    assert len(cases) >= 150
    assert {c.lang for c in cases} == {"en", "es"}
    kinds = {c.kind for c in cases if c.leak}
    assert {"flow", "tracking", "identifier", "disguised", "sponsor", "visibility", "testimonial", "image",
            "hidden"} <= kinds


def test_a_subdomain_of_the_centers_own_organization_is_not_a_third_party(tmp_path: Path) -> None:
    from dataclasses import replace

    settings = replace(SETTINGS, center_website="https://imaging.riversidehealth.org", sender_domains=())
    own = '<img src="https://cdn.riversidehealth.org/hero.jpg" width="600" alt="">'
    other = '<img src="https://cdn.riversidehealth.org.evil.example/hero.jpg" width="600" alt="">'
    assert "PHI704" not in codes(lint(tmp_path, own + FOOT, settings=settings))
    assert "PHI704" in codes(lint(tmp_path, other + FOOT, settings=settings))
