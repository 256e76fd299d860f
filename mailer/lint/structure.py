"""Checks on the structure of a part (issue 13): where values land, what loads, what is visible.

They combine the AST value flow (mailer.lint.flow) with the parsed document
(mailer.lint.document):

- PHI202: recipient data in a URL, an image source, a CSS url(), alt/title text, a
  comment or a style sheet, whatever route it took there;
- PHI206: the unsubscribe URL anywhere but as a whole link target (inside another URL it
  hands the recipient's token to that host);
- PHI701/702/703/704: scripts and frames; trackers, hidden or tiny images and
  backgrounds from third parties; remote style sheets, imports and fonts; visible images
  from third-party hosts (review);
- SPAM401/402/801: the unsubscribe link and the postal address must be visible and
  printed on every path (not hidden by CSS, not only in one language branch or a dead
  branch); a link built by a macro counts.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from mailer.lint import document as docmod
from mailer.lint.findings import Finding, finding
from mailer.lint.flow import Flow, is_recipient, required
from mailer.lint.markup import _TRACKER_HOSTS, _TRACKER_PATHS
from mailer.lint.patterns import _allow, own_domain
from mailer.lint.settings import LintSettings
from mailer.lint.source import Source

_LINK_TAGS = frozenset({"a", "area"})


def placements_by_index(doc: docmod.Document) -> dict[int, list[docmod.Placement]]:
    out: dict[int, list[docmod.Placement]] = {}
    for p in doc.placements:
        out.setdefault(p.index, []).append(p)
    return out


def check_placements(src: Source, flow: Flow, doc: docmod.Document, exprs: list[str]) -> list[Finding]:
    out: list[Finding] = []
    for p in doc.placements:
        if p.index >= len(flow.outputs):
            continue
        taint = flow.outputs[p.index]
        needle = exprs[p.index] if p.index < len(exprs) else ""
        line, col = src.locate(p.line, needle)
        if p.where == "text" or (p.where == "attr" and p.attr not in docmod._URL_ATTRS
                                  and p.attr not in ("style", "alt", "title", "aria-label")):
            continue
        where = {"comment": "an HTML comment", "css": "a style sheet"}.get(
            p.where, f"<{p.tag} {p.attr}>" if p.attr not in docmod._URL_ATTRS else f"a URL (<{p.tag} {p.attr}>)")
        if is_recipient(taint):
            fields = ", ".join(sorted(t.lstrip("?") for t in taint if t.startswith(("contact", "?"))))
            out.append(finding("PHI202", src.path, line, col, f"recipient data ({fields}) reaches {where}"))
        elif "unsubscribe_url" in taint and (p.where == "css" or p.attr in docmod._URL_ATTRS or p.attr == "style"):
            whole = p.where == "attr" and p.attr == "href" and p.tag in _LINK_TAGS and p.url_part == "start"
            if not whole:
                out.append(finding("PHI206", src.path, line, col,
                                   f"the recipient's unsubscribe token is placed inside {where}"))
    return out


def _tracker(host: str, path: str) -> bool:
    if any(host == h or host.endswith("." + h) for h in _TRACKER_HOSTS):
        return True
    return any((host == h or host.endswith("." + h)) and path.startswith(p) for h, p in _TRACKER_PATHS)


@lru_cache(maxsize=1)
def _psl() -> Any:
    """The public suffix list bundled with `publicsuffixlist` (no download at run time)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@lru_cache(maxsize=256)
def _registrable(host: str) -> str:
    return _psl().privatesuffix(host) or host


def _same_organization(host: str, settings: LintSettings) -> bool:
    """HOST shares a registrable domain with one of the center's own hosts that is itself a
    subdomain (website imaging.riversidehealth.org, images on cdn.riversidehealth.org).
    The list is loaded only then: a center on its own registrable domain never needs it."""
    own = [d for d in _allow(settings).domains if d.count(".") >= 2]
    if not own or host.count(".") < 1:
        return False
    mine = {_registrable(d) for d in own}
    return _registrable(host) in mine


def check_loads(src: Source, doc: docmod.Document, flow: Flow | None, settings: LintSettings) -> list[Finding]:
    from urllib.parse import urlsplit

    out: list[Finding] = []
    for load in doc.loads:
        line, col = src.locate(load.line, "")
        if load.kind == "script":
            out.append(finding("PHI701", src.path, line, col, f"a <{load.tag}> element in patient email"))
            continue
        host = docmod.host_of(load.url)
        if host is None:  # starts with a value: the center's website is its own, others were PHI202
            idx = docmod.placeholders(load.url[:12])
            if flow and idx and idx[0] < len(flow.outputs) and flow.outputs[idx[0]] <= {"center.website"}:
                continue
            host = ""
        if not host or own_domain(host, settings) or _same_organization(host, settings):
            continue
        try:
            path = urlsplit(docmod._PH_RE.sub("x", load.url.strip())).path or "/"
        except ValueError:
            path = "/"
        what = {"image": "an image", "background": "a CSS or table background", "vml": "an Outlook VML image",
                "stylesheet": "a remote style sheet", "font": "a web font", "import": "a CSS @import"}[load.kind]
        if _tracker(host, path):
            out.append(finding("PHI702", src.path, line, col, f"{what} loads from a known tracker host"))
        elif load.kind in ("stylesheet", "font", "import"):
            out.append(finding("PHI703", src.path, line, col, f"{what} loads from a third-party host on every open"))
        elif load.hidden or load.tiny:
            out.append(finding("PHI702", src.path, line, col,
                               f"{what} from a third-party host is hidden or tiny (a tracking pixel)"))
        else:
            out.append(finding("PHI704", src.path, line, col, f"{what} loads from a third-party host"))
    return out


def _unsub_link(flow: Flow, doc: docmod.Document) -> tuple[set[int], bool]:
    """Indexes of placeholders that are a visible unsubscribe link target; whether any exists at all."""
    good: set[int] = set()
    present = False
    for p in doc.placements:
        if p.index >= len(flow.outputs) or "unsubscribe_url" not in flow.outputs[p.index]:
            continue
        if p.where == "attr" and p.attr == "href" and p.tag in _LINK_TAGS and p.url_part == "start":
            present = True
            if not p.hidden:
                good.add(p.index)
    return good, present


def _postal(flow: Flow, doc: docmod.Document | None) -> set[int]:
    good = set()
    for i, taint in enumerate(flow.outputs):
        if "center.postal_address" in taint:
            good.add(i)
    if doc is None:
        return good
    visible = {p.index for p in doc.placements if p.where == "text" and not p.hidden}
    return good & visible


def _literal_address(texts: list[str], settings: LintSettings) -> bool:
    if not settings.center_address:
        return False
    want = " ".join(re.sub(r"[^a-z0-9]+", " ", settings.center_address.lower()).split())
    have = " ".join(re.sub(r"[^a-z0-9]+", " ", " ".join(texts).lower()).split())
    return bool(want) and want in have


def check_required(src: Source, flow: Flow, doc: docmod.Document | None, settings: LintSettings,
                   *, visible_texts: list[str]) -> list[Finding]:
    """SPAM-4/STD-6 and SPAM-8: visible on every path, not just present somewhere."""
    out: list[Finding] = []
    line, col = src.position(len(src.text.rstrip()))
    if doc is not None:
        good, present = _unsub_link(flow, doc)
        if not required(flow, lambda i: i in good):
            why = "is hidden or not printed on every path" if present else "is missing"
            out.append(finding("SPAM401", src.path, line, col, f"the HTML part's unsubscribe link {why}"))
    else:
        want = {i for i, t in enumerate(flow.outputs) if "unsubscribe_url" in t}
        if not required(flow, lambda i: i in want):
            why = "is not printed on every path" if want else "is missing"
            out.append(finding("SPAM402", src.path, line, col, f"the text part's unsubscribe URL {why}"))
    postal = _postal(flow, doc)
    if not required(flow, lambda i: i in postal) and not _literal_address(visible_texts, settings):
        why = "is hidden or not printed on every path" if any("center.postal_address" in t for t in flow.outputs) else "is missing"
        out.append(finding("SPAM801", src.path, line, col, f"the {src.kind} part's postal address {why}"))
    return out
