"""The HTML part as a document (issue 13): what is visible, what is hidden, what loads remotely,
what is a link and which part of a URL each `{{ ... }}` lands in.

The template is parsed with lxml's HTML parser (libxml2, the same family of parser mail
clients use), its `<style>` sheets and `style` attributes with tinycss2. Jinja is taken out
first: each `{{ ... }}` becomes a private-use placeholder carrying its index (so the
parser keeps it where it stands, in text or inside an attribute), statements and Jinja
comments become blank lines (so line numbers still match the file).

Hidden means: `display:none`, `visibility:hidden`, `opacity:0`, `font-size:0`, a zero
max-height/height with overflow hidden, or the `hidden` attribute, on the element or an
ancestor, from an inline style or a `<style>` rule (simple selectors; rules inside
`@media` only apply on some screens and are not taken to hide anything). Conditional
comments (`<!--[if mso]>`) are delivered and rendered by Outlook: their content is parsed
too, for the remote loads (VML fills and images) it contains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mailer.lint.markup import Span

PH_OPEN, PH_CLOSE = "\ue000", "\ue001"
_PH_RE = re.compile(f"{PH_OPEN}(\\d+){PH_CLOSE}")
_URL_ATTRS = frozenset({"href", "src", "srcset", "action", "formaction", "background", "poster", "cite",
                        "data", "xlink:href", "longdesc", "lowsrc", "dynsrc", "o:href", "href-lang"})
_LOAD_ATTRS = {"img": ("src", "srcset", "lowsrc", "dynsrc"), "input": ("src",), "video": ("poster", "src"),
               "audio": ("src",), "source": ("src", "srcset"), "embed": ("src",), "object": ("data",),
               "image": ("href", "xlink:href"), "track": ("src",)}
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE | re.DOTALL)
_IMPORT = re.compile(r"@import\s+(?:url\()?\s*['\"]?([^'\")\s;]+)", re.IGNORECASE)
_COMMENT_URL = re.compile(r"\b(?:src|href|background|o:href)\s*=\s*(['\"])(.*?)\1", re.IGNORECASE | re.DOTALL)
_ZERO = re.compile(r"^\s*0+(?:\.0*)?(?:px|pt|em|rem|%)?\s*(?:!important)?\s*$", re.IGNORECASE)
_TINY = re.compile(r"^\s*[0-2](?:\.\d*)?\s*(?:px)?\s*(?:!important)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Placement:
    """Where one `{{ ... }}` lands."""

    index: int
    where: str  # "text" | "attr" | "comment" | "css"
    tag: str = ""
    attr: str = ""
    url_part: str = ""  # for URL attributes: "start" | "host" | "path" | "query" | "fragment"
    hidden: bool = False
    line: int = 1


@dataclass(frozen=True)
class Load:
    """Something a mail client fetches when the message is opened."""

    url: str
    kind: str  # "image" | "background" | "stylesheet" | "font" | "import" | "vml" | "script"
    tag: str
    hidden: bool
    tiny: bool
    line: int


@dataclass(frozen=True)
class TextPiece:
    text: str
    line: int
    where: str  # "visible" | "hidden" | "alt" | "title" | "comment"


@dataclass
class Document:
    placements: list[Placement] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    texts: list[TextPiece] = field(default_factory=list)
    images: list[tuple[str, str, int]] = field(default_factory=list)  # (src, alt, line)
    ok: bool = True


def with_placeholders(text: str, spans: list[Span]) -> str:
    """TEXT with `{{ }}` as numbered placeholders, other Jinja blanked (newlines kept)."""
    out: list[str] = []
    last = 0
    n = 0
    for s in spans:
        out.append(text[last:s.start])
        newlines = text.count("\n", s.start, s.end)
        if s.kind == "expr":
            out.append(f"{PH_OPEN}{n}{PH_CLOSE}")
            n += 1
        out.append("\n" * newlines)
        last = s.end
    out.append(text[last:])
    return "".join(out)


def placeholders(text: str) -> list[int]:
    return [int(m.group(1)) for m in _PH_RE.finditer(text)]


def strip_placeholders(text: str) -> str:
    return _PH_RE.sub(" ", text)


def url_part(value: str, start: int) -> str:
    """Which part of the URL in VALUE the placeholder at START lands in."""
    before = _PH_RE.sub("x", value[:start]).strip()
    if not before:
        return "start"
    if "#" in before:
        return "fragment"
    if "?" in before or before.lower().startswith(("mailto:", "tel:", "sms:")):
        return "query"
    m = re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//[^/]*$", before, re.IGNORECASE)
    if m:
        return "host"
    return "path"


def host_of(url: str) -> str | None:
    """The host a URL loads from, '' for a relative URL, None for a placeholder-led URL."""
    url = url.strip()
    if url.startswith(PH_OPEN):
        return None
    if url.startswith("//"):
        url = "https:" + url
    if not re.match(r"https?://", url, re.IGNORECASE):
        return ""
    try:
        return (urlsplit(_PH_RE.sub("x", url)).hostname or "").lower()
    except ValueError:
        return ""


# -- CSS -------------------------------------------------------------------------------------
def _declarations(css: str) -> list[tuple[str, str]]:
    import tinycss2

    out = []
    for d in tinycss2.parse_blocks_contents(css, skip_comments=True, skip_whitespace=True):
        if d.type == "declaration":
            value = tinycss2.serialize(d.value).strip()
            out.append((d.lower_name, value + (" !important" if d.important else "")))
    return out


@dataclass
class _Sheet:
    rules: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (selector, decls)
    urls: list[tuple[str, str]] = field(default_factory=list)  # (url, kind)


def _sheet(css: str) -> _Sheet:
    import tinycss2

    sheet = _Sheet()
    for m in _IMPORT.finditer(css):
        sheet.urls.append((m.group(1), "import"))

    def walk(rules: list, in_media: bool) -> None:
        for rule in rules:
            if rule.type == "qualified-rule":
                decls = _declarations(tinycss2.serialize(rule.content))
                for _prop, value in decls:
                    for m in _CSS_URL.finditer(value):
                        sheet.urls.append((m.group(2), "background"))
                if not in_media:
                    sheet.rules.append((tinycss2.serialize(rule.prelude).strip(), decls))
            elif rule.type == "at-rule":
                name = rule.lower_at_keyword
                if name == "font-face" and rule.content is not None:
                    for m in _CSS_URL.finditer(tinycss2.serialize(rule.content)):
                        sheet.urls.append((m.group(2), "font"))
                elif name in ("media", "supports", "document") and rule.content is not None:
                    walk(tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True), True)

    walk(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True), False)
    return sheet


def _hides(style: dict[str, str], *, text: bool) -> bool:
    def val(p: str) -> str:
        return style.get(p, "").lower().replace("!important", "").strip()

    if val("display") == "none" or val("visibility") in ("hidden", "collapse"):
        return True
    if val("opacity") and _ZERO.match(val("opacity")):
        return True
    if val("mso-hide") == "all" and (val("max-height") or val("height")) and val("overflow") == "hidden":
        pass
    clip = val("overflow") == "hidden"
    if clip and any(val(p) and _ZERO.match(val(p)) for p in ("max-height", "height", "max-width", "width")):
        return True
    if any(val(p) and _ZERO.match(val(p)) for p in ("max-height",)) and val("overflow") in ("hidden", ""):
        return True
    if text and val("font-size") and _ZERO.match(val("font-size")):
        return True
    return False


def _tiny(el: object, style: dict[str, str]) -> bool:
    get = el.get  # type: ignore[attr-defined]
    w = get("width") or style.get("width", "")
    h = get("height") or style.get("height", "")
    if w and h and _TINY.match(w) and _TINY.match(h):
        return True
    if (w and _TINY.match(w)) or (h and _TINY.match(h)):
        return True
    return False


# -- the document ------------------------------------------------------------------------------
def build(text: str) -> Document:
    """Parse TEXT (Jinja replaced by placeholders) into placements, loads and text pieces."""
    import lxml.html
    from lxml import etree

    doc = Document()
    if not text.strip():
        return doc
    try:
        parser = lxml.html.HTMLParser(remove_comments=False, remove_pis=True)
        root = lxml.html.document_fromstring(text, parser=parser)
    except (etree.ParserError, ValueError):
        doc.ok = False
        return doc

    styles: dict[int, dict[str, str]] = {}
    sheet = _Sheet()
    for st in root.iter("style"):
        css = st.text or ""
        part = _sheet(css)
        sheet.rules += part.rules
        line = st.sourceline or 1
        for url, kind in part.urls:
            doc.loads.append(Load(url, kind, "style", False, False, line))
        for i in placeholders(css):
            doc.placements.append(Placement(i, "css", "style", line=line))
    for selector, decls in sheet.rules:
        for sel in selector.split(","):
            sel = sel.strip()
            if not sel or re.search(r":(?!not\b|first-child|last-child|nth-)", sel):
                continue  # :hover, ::before ... do not apply statically
            try:
                matched = root.cssselect(sel)
            except Exception:  # noqa: BLE001, S112 - a selector cssselect cannot read hides nothing
                continue
            for el in matched:
                styles.setdefault(id(el), {}).update(decls)
    _walk(root, doc, styles, hidden=False, text_hidden=False)
    return doc


def _style_of(el: object, styles: dict[int, dict[str, str]]) -> dict[str, str]:
    style = dict(styles.get(id(el), {}))
    inline = el.get("style")  # type: ignore[attr-defined]
    if inline:
        try:
            style.update(_declarations(inline))
        except Exception:  # noqa: BLE001, S110 - unreadable inline CSS adds nothing
            pass
    return style


def _walk(el: object, doc: Document, styles: dict[int, dict[str, str]], *, hidden: bool, text_hidden: bool) -> None:
    from lxml import etree

    tag = el.tag  # type: ignore[attr-defined]
    line = getattr(el, "sourceline", None) or 1
    if tag is etree.Comment:
        body = el.text or ""  # type: ignore[attr-defined]
        for i in placeholders(body):
            doc.placements.append(Placement(i, "comment", line=line))
        _comment_loads(body, doc, line)
        doc.texts.append(TextPiece(body, line, "comment"))
        return
    if not isinstance(tag, str):
        return
    tag = tag.lower().split("}")[-1]
    style = _style_of(el, styles)
    get = el.get  # type: ignore[attr-defined]
    own_hidden = get("hidden") is not None or _hides(style, text=False)
    hidden = hidden or own_hidden
    text_hidden = hidden or text_hidden or _hides(style, text=True)

    # a link is seen through its text: a zero font size hides it as surely as display:none
    shown_hidden = text_hidden if tag in ("a", "area") else hidden
    for name, value in el.items():  # type: ignore[attr-defined]
        name = name.lower()
        for m in _PH_RE.finditer(value):
            part = url_part(value, m.start()) if name in _URL_ATTRS else ""
            doc.placements.append(Placement(int(m.group(1)), "attr", tag, name, part, shown_hidden, line))
        if name == "style":
            for m in _CSS_URL.finditer(value):
                doc.loads.append(Load(m.group(2), "background", tag, hidden, _tiny(el, style), line))
        elif name in ("alt", "title", "aria-label"):
            doc.texts.append(TextPiece(value, line, "alt" if name == "alt" else "title"))
    tiny = _tiny(el, style)
    for attr in _LOAD_ATTRS.get(tag, ()):
        value = get(attr)
        if value:
            for url in (value.split(",") if attr == "srcset" else [value]):
                doc.loads.append(Load(url.strip().split(" ")[0], "image", tag, hidden, tiny, line))
    if tag == "img":
        doc.images.append((get("src") or "", get("alt") or "", line))
    if get("background"):
        doc.loads.append(Load(get("background"), "background", tag, hidden, tiny, line))
    if tag == "link" and get("href"):
        rel = (get("rel") or "").lower()
        if "stylesheet" in rel or "preload" in rel or "icon" in rel or "font" in (get("as") or ""):
            doc.loads.append(Load(get("href"), "stylesheet", tag, hidden, False, line))
    if tag in ("script", "iframe", "frame", "embed", "object", "applet"):
        doc.loads.append(Load(get("src") or get("data") or "", "script", tag, hidden, False, line))
    if tag in ("style", "script"):
        return

    if el.text:  # type: ignore[attr-defined]
        _text(el.text, line, doc, text_hidden)  # type: ignore[attr-defined]
    for child in el:  # type: ignore[attr-defined]
        _walk(child, doc, styles, hidden=hidden, text_hidden=text_hidden)
        if child.tail:
            cline = getattr(child, "sourceline", None) or line
            _text(child.tail, cline, doc, text_hidden)


def _text(text: str, line: int, doc: Document, hidden: bool) -> None:
    for i in placeholders(text):
        doc.placements.append(Placement(i, "text", hidden=hidden, line=line))
    if text.strip():
        doc.texts.append(TextPiece(text, line, "hidden" if hidden else "visible"))


def _comment_loads(body: str, doc: Document, line: int) -> None:
    """Conditional comments are rendered by Outlook: their VML and images load on open."""
    if not body.lstrip().startswith("[if"):
        return
    for m in _COMMENT_URL.finditer(body):
        doc.loads.append(Load(m.group(2), "vml", "comment", False, False, line))
    for m in _CSS_URL.finditer(body):
        doc.loads.append(Load(m.group(2), "vml", "comment", False, False, line))
