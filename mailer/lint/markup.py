"""HTML-level checks: where Jinja output lands (URLs, alt text), trackers, required links.

No HTML parser dependency: email HTML is checked with small regexes over a copy of the
template in which every Jinja block is masked, so offsets still map to file positions.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailer.lint.findings import Finding, finding
from mailer.lint.patterns import own_domain
from mailer.lint.settings import ALLOWED_CONTEXT, LintSettings
from mailer.lint.source import HTML, Source
from mailer.lint.static import Analysis, expression_roots

MASK = "\x00"
_JINJA_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_HTML_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG_RE = re.compile(r"<([A-Za-z][\w:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTR_RE = re.compile(r"([^\s=/>\"']+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>\"']+))?")
_UNSUB_LINK_RE = re.compile(r"<a\b[^>]*?\bhref\s*=\s*[\"']?\s*\{\{-?\s*unsubscribe_url\b", re.IGNORECASE)
_UNSUB_EXPR_RE = re.compile(r"\{\{-?[^}]*\bunsubscribe_url\b")
_POSTAL_RE = re.compile(r"\bcenter\s*(?:\.\s*postal_address\b|\[\s*[\"']postal_address[\"']\s*\])")

URL_ATTRS = frozenset({"href", "src", "srcset", "action", "formaction", "background", "poster", "cite", "data", "xlink:href"})
TEXT_ATTRS = frozenset({"alt", "title"})
CODE_TAGS = frozenset({"script", "iframe", "embed", "object", "frame", "applet"})
_TRACKER_HOSTS = (
    "google-analytics.com", "googletagmanager.com", "doubleclick.net", "googleadservices.com",
    "googlesyndication.com", "facebook.net", "px.ads.linkedin.com", "snap.licdn.com",
    "bat.bing.com", "analytics.tiktok.com", "ct.pinterest.com", "sc-static.net", "tr.snapchat.com",
    "mc.yandex.ru", "hotjar.com", "segment.com", "segment.io", "mixpanel.com", "mxpnl.com",
    "quantserve.com", "scorecardresearch.com", "analytics.twitter.com", "ads-twitter.com",
    "adsrvr.org", "criteo.com", "criteo.net", "taboola.com", "outbrain.com", "amplitude.com",
    "heapanalytics.com", "fullstory.com", "nr-data.net", "clarity.ms", "pixel.wp.com", "stats.wp.com",
)
_TRACKER_PATHS = (("facebook.com", "/tr"), ("t.co", "/i/adsct"), ("linkedin.com", "/px"))


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # "expr" | "stmt" | "comment"
    inner: str


@dataclass(frozen=True)
class Attr:
    tag: str
    name: str
    start: int  # value start (inside quotes)
    end: int


def jinja_spans(text: str) -> list[Span]:
    spans = []
    for m in _JINJA_RE.finditer(text):
        token = m.group()
        kind = {"{{": "expr", "{%": "stmt", "{#": "comment"}[token[:2]]
        spans.append(Span(m.start(), m.end(), kind, token[2:-2].strip(" -+\n\t")))
    return spans


def _blank(text: str, ranges: Iterator[tuple[int, int]], fill: str) -> str:
    """TEXT with each range replaced by FILL characters; newlines kept so lines still match."""
    out, last = [], 0
    for start, end in ranges:
        out.append(text[last:start])
        out.append(re.sub(r"[^\n]", fill, text[start:end]))
        last = end
    out.append(text[last:])
    return "".join(out)


def mask(text: str, spans: list[Span]) -> str:
    """Literal content only: Jinja blocks become NUL characters of the same length."""
    return _blank(text, ((s.start, s.end) for s in spans), MASK)


def strip_comments(text: str) -> str:
    """HTML comments blanked: they are delivered, but a link in one is not a link."""
    return _blank(text, (m.span() for m in _HTML_COMMENT_RE.finditer(text)), " ")


def visible(masked_html: str) -> str:
    """Text outside tags and comments, offsets kept (for wording checks)."""
    no_comments = strip_comments(masked_html)
    return _blank(no_comments, (m.span() for m in _TAG_RE.finditer(no_comments)), " ")


def _attrs(masked: str) -> Iterator[Attr]:
    for tag in _TAG_RE.finditer(masked):
        base = tag.start(2)
        for a in _ATTR_RE.finditer(tag.group(2)):
            if a.group(2) is None:
                continue
            start, end = a.span(2)
            if a.group(2)[0] in "\"'":
                start, end = start + 1, end - 1
            yield Attr(tag.group(1).lower(), a.group(1).lower(), base + start, base + end)


def _host(url: str) -> tuple[str, str] | None:
    url = url.strip()
    if url.startswith("//"):
        url = "https:" + url
    if not re.match(r"https?://", url, re.IGNORECASE):
        return None
    parts = urlsplit(url)
    return ((parts.hostname or "").lower(), parts.path or "/")


def _tracker(host: str, path: str) -> bool:
    if any(host == h or host.endswith("." + h) for h in _TRACKER_HOSTS):
        return True
    return any((host == h or host.endswith("." + h)) and path.startswith(p) for h, p in _TRACKER_PATHS)


def _is_pixel(attrs: dict[str, str]) -> bool:
    small = {"0", "1", "0px", "1px"}
    if attrs.get("width", "").strip() in small and attrs.get("height", "").strip() in small:
        return True
    style = re.sub(r"\s+", "", attrs.get("style", "").lower())
    if re.search(r"(?<![-\w])width:[01]px", style) and re.search(r"(?<![-\w])height:[01]px", style):
        return True
    return "display:none" in style or "visibility:hidden" in style


def check_trackers(src: Source, masked: str, settings: LintSettings) -> list[Finding]:
    """PHI-7: no scripts, frames or third-party pixels and trackers in patient email."""
    out: list[Finding] = []
    for tag in _TAG_RE.finditer(strip_comments(masked)):
        name = tag.group(1).lower()
        line, col = src.position(tag.start())
        if name in CODE_TAGS:
            out.append(finding("PHI701", src.path, line, col, f"a <{name}> element in patient email"))
            continue
        attrs = {}
        for a in _ATTR_RE.finditer(tag.group(2)):
            if a.group(2) is not None:
                attrs[a.group(1).lower()] = a.group(2).strip("\"'")
        urls = [v for k, v in attrs.items() if k in URL_ATTRS and not (name == "a" and k == "href")]
        urls += re.findall(r"url\(\s*[\"']?([^\"')]+)", attrs.get("style", ""))
        for url in urls:
            found = _host(url)
            if not found or not found[0]:
                continue
            host, path = found
            if _tracker(host, path):
                out.append(finding("PHI702", src.path, line, col, f"<{name}> loads from a known tracker host"))
            elif name == "img" and not own_domain(host, settings) and _is_pixel(attrs):
                out.append(finding("PHI702", src.path, line, col, "a hidden or 1x1 image from a third-party host (tracking pixel)"))
    return out


def check_placement(src: Source, spans: list[Span], masked: str, analysis: Analysis) -> list[Finding]:
    """PHI-2: recipient data never inside a URL, an image source or alt text."""
    attrs = sorted(_attrs(masked), key=lambda a: a.start) if src.kind == HTML else []
    starts = [a.start for a in attrs]
    out: list[Finding] = []
    for span in spans:
        if span.kind != "expr":
            continue
        where = _context(span, attrs, starts, masked, src.text)
        if not where:
            continue
        roots = expression_roots(span.inner, analysis)
        personal = sorted(r for r in roots if r == "contact" or r not in ALLOWED_CONTEXT)
        if personal:
            line, col = src.position(span.start)
            out.append(finding("PHI202", src.path, line, col, f"recipient data ({', '.join(personal)}) in {where}"))
    return out


def _context(span: Span, attrs: list[Attr], starts: list[int], masked: str, raw: str) -> str:
    i = bisect.bisect_right(starts, span.start) - 1
    if i >= 0 and attrs[i].start <= span.start < attrs[i].end + 1:
        a = attrs[i]
        if a.name in URL_ATTRS:
            return f"a URL ({a.tag} {a.name})"
        if a.name in TEXT_ATTRS:
            return f"{a.name} text"
        if a.name == "style" and "url(" in raw[a.start : span.start]:
            return "a CSS url()"
        return ""
    line_start = masked.rfind("\n", 0, span.start) + 1
    token = re.split(r"[\s\"'<>]", masked[line_start : span.start])[-1].lower()
    if "://" in token or token.startswith(("www.", "mailto:", "tel:")):
        return "a URL"
    if "url(" in token:
        return "a CSS url()"
    return ""


def has_unsubscribe_link(raw_html: str, spans: list[Span]) -> bool:
    """SPAM-4/STD-6: an <a href="{{ unsubscribe_url }}"> outside any comment."""
    text = _blank(raw_html, ((s.start, s.end) for s in spans if s.kind == "comment"), " ")
    return bool(_UNSUB_LINK_RE.search(strip_comments(text)))


def has_unsubscribe_text(spans: list[Span]) -> bool:
    return any(s.kind == "expr" and _UNSUB_EXPR_RE.search("{{ " + s.inner) for s in spans)


def has_postal_address(raw: str, spans: list[Span], masked: str, settings: LintSettings, *, html: bool) -> bool:
    """SPAM-8: {{ center.postal_address }} (or the center's literal address) outside comments."""
    live = strip_comments(raw) if html else raw
    for s in spans:
        if s.kind == "expr" and _POSTAL_RE.search(s.inner) and live[s.start] == "{":
            return True
    if settings.center_address:
        want = " ".join(re.sub(r"[^a-z0-9]+", " ", settings.center_address.lower()).split())
        have = " ".join(re.sub(r"[^a-z0-9]+", " ", (strip_comments(masked) if html else masked).lower()).split())
        return bool(want) and want in have
    return False
