"""Templates: sandboxed Jinja compiled once per version, CSS inlined once, content-hashed.

A template folder holds `template.toml` (subject, preheader, from_name, purpose, waivers),
`body.html.j2` and optionally `body.txt.j2`. The content hash covers exactly those files,
so an approval bound to it is invalidated by any one-character edit (SEC-6).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from mailer.errors import TemplateError
from mailer.purposes import MARKETING_PURPOSES as MARKETING_PURPOSES
from mailer.purposes import PURPOSES as PURPOSES
from mailer.sandbox import BudgetedEnvironment, BudgetError, check_files

TEMPLATE_FILES = ("template.toml", "body.html.j2", "body.txt.j2")
META_KEYS = {"subject", "preheader", "from_name", "purpose", "advertisement_notice", "sponsor", "waivers", "description"}


@dataclass(frozen=True)
class Rendered:
    subject: str
    preheader: str
    from_name: str
    html: str
    text: str

    def parts(self) -> dict[str, str]:
        return {"subject": self.subject, "preheader": self.preheader, "from_name": self.from_name,
                "html": self.html, "text": self.text}


@dataclass
class CompiledTemplate:
    """Compiled once per campaign; `render` is the per-recipient hot path."""

    name: str
    path: Path
    purpose: str
    content_hash: str
    meta: dict[str, Any]
    _subject: Any = field(repr=False)
    _preheader: Any = field(repr=False)
    _from_name: Any = field(repr=False)
    _html: Any = field(repr=False)
    _text: Any = field(repr=False)
    static_from_name: str | None = None
    # The Jinja sources `_html` and `_text` were compiled from (HTML after CSS inlining and
    # the preheader): mailer.personalize parses them to prove a skeleton render is exact.
    html_source: str | None = field(default=None, repr=False)
    text_source: str | None = field(default=None, repr=False)

    def bind_assets(self, resolve: Any) -> None:
        """Let `{{ asset('key') }}` render: `resolve(key, html)` returns the consented content
        (HTML-safe markup when `html`), or raises when its consent does not hold (TST-5)."""
        from markupsafe import Markup

        self._html.globals["asset"] = lambda key: Markup(resolve(key, True))  # noqa: S704 - resolve escapes text, builds the img
        self._text.globals["asset"] = lambda key: resolve(key, False)

    def render(self, context: Mapping[str, Any]) -> Rendered:
        try:
            return Rendered(
                subject=" ".join(self._subject.render(context).split()),
                preheader=" ".join(self._preheader.render(context).split()),
                from_name=self.static_from_name if self.static_from_name is not None
                else " ".join(self._from_name.render(context).split()),
                html=self._html.render(context),
                text=self._text.render(context),
            )
        except BudgetError as err:
            raise TemplateError(f"template {self.name}: exceeds a resource budget while rendering: {err}",
                                rules=("PHI-1",)) from None
        except (UndefinedError, SecurityError) as err:
            raise TemplateError(f"template {self.name}: {type(err).__name__} while rendering", rules=("PHI-1",)) from None
        except (MemoryError, RecursionError, ArithmeticError, TypeError, ValueError) as err:
            raise TemplateError(f"template {self.name}: {type(err).__name__} while rendering", rules=("PHI-1",)) from None


def content_hash(path: Path) -> str:
    """SHA-256 over the template's files, name and bytes, in a fixed order."""
    h = hashlib.sha256()
    for name in TEMPLATE_FILES:
        f = template_file(path, name)
        if f.exists():
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def load_meta(path: Path) -> dict[str, Any]:
    toml_path = template_file(path, "template.toml")
    if not toml_path.exists():
        raise TemplateError(f"{toml_path}: missing", hint="a template folder needs template.toml, body.html.j2")
    raw = read_template_file(toml_path)
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as err:
        raise TemplateError(f"{toml_path}: not valid TOML: {err}") from None
    except RecursionError:
        raise TemplateError(f"{toml_path}: nested too deeply to read", hint="template.toml holds a few flat keys") from None
    unknown = set(data) - META_KEYS
    if unknown:
        raise TemplateError(f"{toml_path}: unknown key(s) {sorted(unknown)}", hint=f"accepted: {sorted(META_KEYS)}")
    for key in ("subject", "from_name", "purpose"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise TemplateError(f"{toml_path}: '{key}' is required")
    if data["purpose"] not in PURPOSES:
        raise TemplateError(f"{toml_path}: purpose {data['purpose']!r} is unknown", hint=f"one of {', '.join(PURPOSES)}")
    data.setdefault("preheader", "")
    return data


def _unbound_asset(key: str) -> str:
    """`{{ asset('key') }}` before the campaign bound its consented assets (TST-5): refuse."""
    raise TemplateError(f"asset('{key}') is rendered only through a campaign, which checks its consent",
                        rules=("TST-5",), hint="register it: mailer assets register KEY ...; `mailer preview` shows a placeholder for it")


def _environments() -> tuple[SandboxedEnvironment, SandboxedEnvironment]:
    """Sandboxed and budgeted (mailer.sandbox): no escapes, and no render that hangs or exhausts memory."""
    html = BudgetedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    text = BudgetedEnvironment(autoescape=False, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html.globals["asset"] = text.globals["asset"] = _unbound_asset  # issue 17: see CompiledTemplate.bind_assets
    return html, text


def template_file(path: Path, name: str) -> Path:
    """PATH/NAME, refused when it is a symlink or resolves outside the template folder: the
    approved hash must cover the file that is rendered, and nothing outside may be read."""
    f = path / name
    if f.is_symlink():
        raise TemplateError(f"{f}: is a symbolic link; template files must be regular files in the folder",
                            rules=("SEC-6",), hint="copy the file into the template folder")
    try:
        inside = f.resolve().parent == path.resolve()
    except OSError:
        inside = False
    if f.exists() and not inside:
        raise TemplateError(f"{f}: resolves outside the template folder", rules=("SEC-6",),
                            hint="copy the file into the template folder")
    return f


def read_template_file(f: Path) -> str:
    """The file as UTF-8 text; one clear line (exit 2) when it is not."""
    try:
        return f.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = f.read_bytes()[: err.start].count(b"\n") + 1
        raise TemplateError(f"{f}:{line}: not UTF-8 text", hint="save the file as UTF-8") from None
    except IsADirectoryError:
        raise TemplateError(f"{f}: is a folder, not a file") from None
    except OSError as err:
        raise TemplateError(f"{f}: cannot read it ({err.strerror})") from None


def check_budgets(path: Path) -> None:
    """Resource budgets with wall-clock limits on compile and a sample render (PHI-1)."""
    files = [(f, name == "body.html.j2") for name in ("body.html.j2", "body.txt.j2")
             if (f := path / name).is_file()]
    problems = check_files(files)
    if problems:
        p = problems[0]
        where = f"{p.path}:{p.line}" if p.line else p.path
        raise TemplateError(f"{where}: the template exceeds a resource budget: {p.message}", rules=("PHI-1",),
                            hint="simplify the template: bounded loops, small numbers and strings")


def asset_keys(path: Path) -> list[str]:
    """The asset keys a template folder names as `asset('key')` (TST-5), in order of first use."""
    from jinja2 import nodes

    env = SandboxedEnvironment()
    keys: list[str] = []
    for name in ("body.html.j2", "body.txt.j2"):
        f = path / name
        if not f.exists():
            continue
        try:
            tree = env.parse(f.read_text())
        except TemplateSyntaxError:
            continue  # compile_template reports it
        for call in tree.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name == "asset" and call.args \
                    and isinstance(call.args[0], nodes.Const) and isinstance(call.args[0].value, str):
                keys.append(call.args[0].value)
    return list(dict.fromkeys(keys))


def check_context(path: Path) -> None:
    """PHI-1 at compile time, with the lint's analysis of the Jinja AST (one implementation).

    Only context errors (variables, attributes, indirect access, sandbox escapes) stop
    compilation; the rest of the lint is for reviewers and preflight.
    """
    from mailer.lint import LintSettings, lint_template_dir

    for f in lint_template_dir(path, LintSettings()):
        if f.rule == "PHI-1" and f.blocking:
            raise TemplateError(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}", rules=("PHI-1",), hint=f.hint)


_JINJA_IN_ATTR = re.compile(r"(?:\{\{|%7B%7B)(.*?)(?:\}\}|%7D%7D)", re.I)


def inline_css(html_source: str) -> str:
    """premailer once per template version (perf-notes: per message halves throughput)."""
    if "<style" not in html_source.lower():
        return html_source
    from premailer import Premailer

    out = Premailer(
        html_source, keep_style_tags=False, remove_classes=False, strip_important=False,
        disable_validation=True, allow_network=False, allow_loading_external_files=False,
        cssutils_logging_level="CRITICAL",
    ).transform()
    # lxml escapes Jinja delimiters inside attributes; put them back.
    return _JINJA_IN_ATTR.sub(lambda m: "{{" + unquote(m.group(1)) + "}}", out)


class _TextMaker(HTMLParser):
    """HTML template source -> text template source, keeping Jinja expressions intact."""

    _BLOCK = {"p", "div", "br", "h1", "h2", "h3", "h4", "tr", "li", "ul", "ol", "table", "section", "footer", "header"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.href: str | None = None
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        if tag in self._BLOCK:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        if tag == "a" and self.href:
            self.out.append(f" <{self.href}>")
            self.href = None
        if tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(re.sub(r"[ \t\r\n]+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self.out).splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def html_to_text_source(html_source: str) -> str:
    maker = _TextMaker()
    maker.feed(html_source)
    maker.close()
    return maker.text()


_PREHEADER = '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">{preheader}</div>'


def compile_template(path: Path | str) -> CompiledTemplate:
    """Load, check the context (PHI-1), inline CSS and compile; raises TemplateError."""
    path = Path(path)
    data = load_meta(path)
    html_path = template_file(path, "body.html.j2")
    if not html_path.exists():
        raise TemplateError(f"{html_path}: missing", hint="every template needs body.html.j2")
    html_src = read_template_file(html_path)
    txt_path = template_file(path, "body.txt.j2")
    text_src = read_template_file(txt_path) if txt_path.exists() else html_to_text_source(html_src)
    check_budgets(path)
    check_context(path)
    html_env, text_env = _environments()
    html_inlined = inline_css(html_src)
    if data["preheader"]:
        html_inlined = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + _PREHEADER.format(preheader=data["preheader"]),
                              html_inlined, count=1, flags=re.I)
    try:
        compiled = CompiledTemplate(
            name=path.name, path=path, purpose=data["purpose"], content_hash=content_hash(path), meta=data,
            _subject=text_env.from_string(data["subject"]),
            _preheader=text_env.from_string(data["preheader"]),
            _from_name=text_env.from_string(data["from_name"]),
            _html=html_env.from_string(html_inlined),
            _text=text_env.from_string(text_src),
            html_source=html_inlined, text_source=text_src,
        )
    except TemplateSyntaxError as err:
        raise TemplateError(f"{path}: Jinja syntax error after CSS inlining at line {err.lineno}: {err.message}") from None
    if "{" not in data["from_name"]:
        compiled.static_from_name = data["from_name"].strip()
    return compiled
