"""Lint template folders and files: every check, then waivers from template.toml."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mailer.errors import InputError
from mailer.lint import assets, content, markup, wording
from mailer.lint import document as docmod
from mailer.lint.findings import UNWAIVABLE, Finding, finding, sort_unique, waive
from mailer.lint.flow import Flow, analyse_flow
from mailer.lint.loader import TOML_NAME, TemplateFolder, load_file, load_folder
from mailer.lint.normalize import fold
from mailer.lint.patterns import scan
from mailer.lint.settings import MARKETING_PURPOSES, TRANSACTIONAL_PURPOSES, LintSettings
from mailer.lint.source import HTML, Source
from mailer.lint.static import Analysis, Ref, analyse, parse
from mailer.lint.structure import check_loads, check_placements, check_required


def lint_template_dir(path: Path, settings: LintSettings) -> list[Finding]:
    """All findings for one template folder, waivers applied, in file order."""
    return _lint(load_folder(Path(path)), settings)


def lint_paths(paths: Iterable[Path], settings: LintSettings) -> list[Finding]:
    """Folders (a template, or a folder of templates) and single body files."""
    findings: list[Finding] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            folder = path.parent if path.name == TOML_NAME else None
            findings += lint_template_dir(folder, settings) if folder else _lint(load_file(path), settings)
        elif path.is_dir():
            findings += _lint_dir(path, settings)
        else:
            raise InputError(f"{path}: no such file or folder", hint="pass template folders or .j2 files")
    return findings


def _lint_dir(path: Path, settings: LintSettings) -> list[Finding]:
    if (path / TOML_NAME).is_file():
        return lint_template_dir(path, settings)
    children = sorted(p for p in path.iterdir() if p.is_dir() and (p / TOML_NAME).is_file())
    if children:
        return [f for child in children for f in lint_template_dir(child, settings)]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(".j2"))
    if not files:
        return [finding("PHI105", str(path), 1, 1, "no template.toml or .j2 file found")]
    return [f for file in files for f in _lint(load_file(file), settings)]


def _lint(folder: TemplateFolder, settings: LintSettings) -> list[Finding]:
    """Fail closed: a bug in a check is an unwaivable error finding, never a crash (issue 5).
    Resource budgets first (mailer.sandbox, PHI107): a template over one is not analysed further."""
    from mailer.sandbox import check_files

    budget = [finding("PHI107", p.path, p.line or 1, 1, p.message)
              for p in check_files((Path(src.path), src.kind == HTML) for src in folder.bodies)]
    if budget:
        return list(folder.problems) + budget
    try:
        return _checks(folder, settings)
    except Exception as err:  # noqa: BLE001 - reported as a finding, with the type only (no values)
        path = folder.bodies[0].path if folder.bodies else folder.toml_path or str(folder.path)
        return [finding("PHI100", path, 1, 1, f"the lint could not analyse this template ({type(err).__name__})")]


def _checks(folder: TemplateFolder, settings: LintSettings) -> list[Finding]:
    out = list(folder.problems)
    purpose = folder.purpose
    commercial = purpose not in TRANSACTIONAL_PURPOSES
    marketing = purpose in MARKETING_PURPOSES
    for src in folder.headers:
        analysis = analyse(src, settings)
        out += analysis.findings
        out += _header_checks(src, analysis, folder, settings, commercial=commercial, marketing=marketing)
    unlabelled: list[Source] = []
    unsponsored: list[Source] = []
    for src in folder.bodies:
        analysis = analyse(src, settings)
        out += analysis.findings
        body = _Body(src, settings)
        out += _safe_harbor(src, body.masked, settings)
        out += body.structure()
        pieces = body.pieces()
        texts = [p.text for p in pieces if p.where in ("visible", "hidden")]
        readable = "\n".join(p.text for p in pieces if p.where == "visible")
        out += content.claims(src, pieces, commercial=commercial, marketing=marketing)
        if not assets.registered_refs(src.text):
            out += content.testimonials(src, pieces, settings)
            if body.doc is not None:
                out += content.patient_images(src, body.doc.images)
        out += content.paid_blocks(src, pieces, purpose=purpose, labelled=bool(wording.AD_LABEL.search(readable)))
        if commercial:
            out += body.required(texts)
        if not wording.AD_LABEL.search(readable):
            unlabelled.append(src)
        if not _names_sponsor(readable, folder.sponsor):
            unsponsored.append(src)
    if marketing and not folder.advertisement_notice:
        out += _per_part(folder, unlabelled, "SPAM301", f"'{purpose}' is not labelled as an advertisement")
    if purpose == "third-party-marketing":
        out += _per_part(folder, unsponsored, "DIS301", "third-party marketing does not name its sponsor")
    return _apply_waivers(sort_unique(out), folder)


def _per_part(folder: TemplateFolder, missing: list[Source], code: str, message: str) -> list[Finding]:
    """One finding at the purpose line when every part lacks it, else one per lacking part."""
    if not missing:
        return []
    if folder.whole and len(missing) == len(folder.bodies):
        return [_at_purpose(folder, code, message)]
    out = []
    for src in missing:
        line, col = src.position(0)
        out.append(finding(code, src.path, line, col, f"{message} in the {src.kind} part"))
    return out


def _at_purpose(folder: TemplateFolder, code: str, message: str) -> Finding:
    line, col = folder.purpose_at
    return finding(code, folder.toml_path, line, col, message)


def _names_sponsor(text: str, sponsor: str) -> bool:
    if sponsor:
        return sponsor.lower() in text.lower()
    return bool(wording.SPONSOR.search(text))


def _safe_harbor(src: Source, masked: str, settings: LintSettings) -> list[Finding]:
    """PHI-3/PHI-5: Safe Harbor identifiers in literal text (Jinja blocks masked out)."""
    out = []
    for hit in scan(masked, settings):
        line, col = src.position(hit.start)
        out.append(finding(hit.code, src.path, line, col, f"{hit.what} in literal text"))
    return out


def _header_checks(src: Source, analysis: Analysis, folder: TemplateFolder, settings: LintSettings,
                   *, commercial: bool, marketing: bool) -> list[Finding]:
    """PHI-2, DIS-2, SPAM-3 checks that apply to the subject, preheader and From name."""
    out: list[Finding] = []
    label = src.kind.replace("_", " ")
    for ref in analysis.refs:
        out += _header_ref(src, ref, label)
    spans = markup.jinja_spans(src.text)
    masked = markup.mask(src.text, spans)
    out += _safe_harbor(src, masked, settings)
    masked = fold(masked)
    if src.kind in ("subject", "preheader"):
        if wording.FAKE_REPLY.search(masked):
            out.append(wording.at(src, 0, "DIS201", f"the {label} starts with a reply or forward prefix"))
        m = wording.posing(masked) or wording.CLAIMS_KNOWLEDGE.search(masked)
        if m and commercial:
            out.append(wording.at(src, m.start(), "DIS202", f"the {label} poses as a clinical message"))
        m = wording.CLINICAL_TERMS.search(masked)
        if m and folder.purpose == "condition-targeted-marketing":
            out.append(wording.at(src, m.start(), "PHI205", f"the {label} names a condition in a condition-targeted message"))
        m = wording.PROMO.search(masked)
        if m and folder.purpose in ("newsletter", "service-announcement", "health-education") \
                and not folder.advertisement_notice and not wording.AD_LABEL.search(masked):
            out.append(wording.at(src, m.start(), "SPAM302", f"the {label} reads as promotional"))
    elif marketing:
        m = wording.CLINICIAN.search(masked)
        if m:
            out.append(wording.at(src, m.start(), "DIS203", "the From name is a clinician's name on marketing"))
    return out


def _header_ref(src: Source, ref: Ref, label: str) -> list[Finding]:
    if not ref.allowed and ref.cls:
        code = "PHI204" if src.kind == "from_name" else "PHI201"
        what = "clinical" if ref.cls == "clinical" else "identifying"
        return [finding(code, src.path, ref.line, ref.column, f"{what} field '{ref.name}' in the {label}")]
    if ref.root == "contact" and ref.allowed and ref.name != "contact":
        if src.kind == "from_name":
            return [finding("PHI204", src.path, ref.line, ref.column, f"'{ref.name}' in the From name")]
        if ref.name.endswith("name"):
            return [finding("PHI203", src.path, ref.line, ref.column, f"'{ref.name}' in the {label}")]
    return []


def _required_parts(src: Source, spans: list[markup.Span], masked: str, settings: LintSettings) -> list[Finding]:
    """SPAM-4/STD-6 unsubscribe link and SPAM-8 postal address in every part."""
    out = []
    line, col = src.position(len(src.text.rstrip()))
    if src.kind == HTML:
        if not markup.has_unsubscribe_link(src.text, spans):
            out.append(finding("SPAM401", src.path, line, col, "HTML part has no unsubscribe link"))
    elif not markup.has_unsubscribe_text(spans):
        out.append(finding("SPAM402", src.path, line, col, "text part has no unsubscribe URL"))
    if not markup.has_postal_address(src.text, spans, masked, settings, html=src.kind == HTML):
        out.append(finding("SPAM801", src.path, line, col, f"{src.kind} part has no postal address"))
    return out


def _apply_waivers(findings: list[Finding], folder: TemplateFolder) -> list[Finding]:
    """Waivers from template.toml mark matching findings; they stay visible (issue 5)."""
    by_code = {w.code: w for w in folder.waivers}
    out = []
    for f in findings:
        w = by_code.get(f.code)
        out.append(waive(f, reason=w.reason, reviewer=w.reviewer) if w and f.code not in UNWAIVABLE else f)
    return out


class _Body:
    """One body part, parsed once: masked text, AST value flow, and (HTML) the document."""

    def __init__(self, src: Source, settings: LintSettings) -> None:
        self.src = src
        self.settings = settings
        self.spans = markup.jinja_spans(src.text)
        self.masked = markup.mask(src.text, self.spans)
        self.exprs = [s.inner for s in self.spans if s.kind == "expr"]
        tree, _error = parse(src)
        self.flow: Flow | None = None
        if tree is not None:
            flow = analyse_flow(tree)
            if len(flow.outputs) == len(self.exprs):  # each {{ }} matched to its AST node
                self.flow = flow
        self.doc: docmod.Document | None = None
        if src.kind == HTML:
            doc = docmod.build(docmod.with_placeholders(src.text, self.spans))
            self.doc = doc if doc.ok else None

    def structure(self) -> list[Finding]:
        out: list[Finding] = []
        if self.doc is not None:
            if self.flow is not None:
                out += check_placements(self.src, self.flow, self.doc, self.exprs)
            else:  # fall back to the first lint's placement check
                out += markup.check_placement(self.src, self.spans, self.masked, analyse(self.src, self.settings))
            out += check_loads(self.src, self.doc, self.flow, self.settings)
        else:
            out += markup.check_placement(self.src, self.spans, self.masked, analyse(self.src, self.settings))
            if self.src.kind == HTML:
                out += markup.check_trackers(self.src, self.masked, self.settings)
        return out

    def pieces(self) -> list[content.Piece]:
        if self.doc is None:
            text = fold(self.masked.replace(markup.MASK, " "))
            return [content.Piece(line, i + self.src.line0, "visible") for i, line in enumerate(text.split("\n"))]
        return [content.Piece(fold(docmod.strip_placeholders(t.text)), t.line, t.where) for t in self.doc.texts]

    def required(self, texts: list[str]) -> list[Finding]:
        if self.flow is None:
            return _required_parts(self.src, self.spans, self.masked, self.settings)
        return check_required(self.src, self.flow, self.doc, self.settings, visible_texts=texts)
