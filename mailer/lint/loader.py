"""Read a template folder (template.toml + body.html.j2 [+ body.txt.j2]) into Sources.

Problems with the folder itself (missing files, bad TOML, unknown purpose, incomplete
waivers) become findings, so `mailer lint` reports them with everything else.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mailer.lint.findings import CODES, UNWAIVABLE, Finding, finding
from mailer.lint.settings import PURPOSES
from mailer.lint.source import HEADER_PARTS, HTML, TEXT, Source

TOML_NAME = "template.toml"
HTML_NAME = "body.html.j2"
TEXT_NAME = "body.txt.j2"


@dataclass(frozen=True)
class Waiver:
    code: str
    reason: str
    reviewer: str


@dataclass
class TemplateFolder:
    path: Path
    toml_path: str = ""
    purpose: str | None = None
    purpose_at: tuple[int, int] = (1, 1)
    advertisement_notice: bool = False
    sponsor: str = ""
    headers: list[Source] = field(default_factory=list)
    bodies: list[Source] = field(default_factory=list)
    waivers: list[Waiver] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)
    whole: bool = True  # False when a single body file is linted on its own


def _value_start(toml_text: str, key: str) -> tuple[int, int]:
    """(line, column) of the first character of KEY's string value in TOML_TEXT."""
    head = re.split(r"(?m)^\s*\[", toml_text, maxsplit=1)[0]  # top-level keys only
    m = re.search(rf"(?m)^[ \t]*{re.escape(key)}[ \t]*=[ \t]*(\"\"\"|'''|\"|')?", head)
    if not m:
        return 1, 1
    line = toml_text.count("\n", 0, m.start()) + 1
    col = m.end() - (toml_text.rfind("\n", 0, m.start()) + 1) + 1
    if m.group(1) in ('"""', "'''") and toml_text[m.end() : m.end() + 1] == "\n":
        return line + 1, 1
    return line, col


def _read(path: Path, folder: TemplateFolder) -> str | None:
    if path.is_symlink() or path.resolve().parent != folder.path.resolve():
        folder.problems.append(finding("PHI105", str(path), 1, 1, "is a symbolic link or lies outside the "
                                                                 "template folder; template files are regular files"))
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        folder.problems.append(finding("PHI100", str(path), 1, 1, "file is not UTF-8 text"))
    except OSError as err:
        folder.problems.append(finding("PHI105", str(path), 1, 1, f"cannot read the file ({type(err).__name__})"))
    return None


def part_kind(path: Path) -> str:
    return TEXT if ".txt" in path.suffixes or path.name.endswith(".txt") else HTML


def load_folder(path: Path) -> TemplateFolder:
    folder = TemplateFolder(path=path, toml_path=str(path / TOML_NAME))
    _load_toml(folder, path / TOML_NAME, headers=True)
    html = path / HTML_NAME
    if html.is_file():
        text = _read(html, folder)
        if text is not None:
            folder.bodies.append(Source(str(html), text, HTML))
    else:
        folder.problems.append(finding("PHI105", str(html), 1, 1, f"{HTML_NAME} is missing"))
    plain = path / TEXT_NAME
    if plain.is_file():
        text = _read(plain, folder)
        if text is not None:
            folder.bodies.append(Source(str(plain), text, TEXT))
    return folder


def load_file(path: Path) -> TemplateFolder:
    """One body file; its folder's template.toml, if any, supplies purpose and waivers."""
    folder = TemplateFolder(path=path.parent, whole=False)
    toml = path.parent / TOML_NAME
    if toml.is_file():
        folder.toml_path = str(toml)
        _load_toml(folder, toml, headers=False)
    text = _read(path, folder)
    if text is not None:
        folder.bodies.append(Source(str(path), text, part_kind(path)))
    return folder


def _load_toml(folder: TemplateFolder, toml: Path, *, headers: bool) -> None:
    where = str(toml)
    if not toml.is_file():
        folder.problems.append(finding("PHI105", where, 1, 1, f"{TOML_NAME} is missing"))
        return
    raw = _read(toml, folder)
    if raw is None:
        return
    try:
        meta = tomllib.loads(raw)
    except RecursionError:
        folder.problems.append(finding("PHI100", where, 1, 1, "template.toml is nested too deeply to read"))
        return
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+), column (\d+)", str(err))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        folder.problems.append(finding("PHI100", where, line, col, "template.toml is not valid TOML"))
        return

    from mailer.templates import META_KEYS

    for key in sorted(set(meta) - META_KEYS):
        line, col = _value_start(raw, key)
        folder.problems.append(finding("PHI105", where, line, 1, f"unknown key '{key}' in template.toml"))
    purpose = meta.get("purpose")
    folder.purpose_at = _value_start(raw, "purpose")
    if purpose not in PURPOSES:
        line, col = folder.purpose_at
        what = "is missing" if purpose is None else "is not a known purpose"
        folder.problems.append(finding("PHI105", where, line, col, f"'purpose' {what}"))
    else:
        folder.purpose = purpose
    folder.advertisement_notice = meta.get("advertisement_notice") is True
    folder.sponsor = meta.get("sponsor", "") if isinstance(meta.get("sponsor"), str) else ""

    if headers:
        for key in HEADER_PARTS:
            value = meta.get(key)
            if value is None and key == "preheader":
                continue
            line, col = _value_start(raw, key)
            if not isinstance(value, str) or (key != "preheader" and not value.strip()):
                folder.problems.append(finding("PHI105", where, line, col, f"'{key}' must be a non-empty string"))
                continue
            folder.headers.append(Source(where, value, key, line, col))
    _load_waivers(folder, raw, meta.get("waivers", []), where)


def _load_waivers(folder: TemplateFolder, raw: str, waivers: object, where: str) -> None:
    lines = [raw.count("\n", 0, m.start()) + 1 for m in re.finditer(r"(?m)^\s*\[\[\s*waivers\s*\]\]", raw)]
    if not isinstance(waivers, list):
        folder.problems.append(finding("PHI105", where, 1, 1, "'waivers' must be an array of tables"))
        return
    for i, entry in enumerate(waivers):
        line = lines[i] if i < len(lines) else 1
        if not isinstance(entry, dict):
            folder.problems.append(finding("PHI105", where, line, 1, "a waiver must be a table"))
            continue
        code = entry.get("code", "")
        reason = entry.get("reason", "")
        reviewer = entry.get("reviewer", "")
        if code not in CODES:
            folder.problems.append(finding("PHI105", where, line, 1, "waiver names an unknown code"))
        elif code in UNWAIVABLE:
            folder.problems.append(finding("PHI105", where, line, 1, f"{code} cannot be waived"))
        elif not (isinstance(reason, str) and reason.strip() and isinstance(reviewer, str) and reviewer.strip()):
            folder.problems.append(finding("PHI105", where, line, 1, f"waiver of {code} needs a reason and a reviewer"))
        else:
            folder.waivers.append(Waiver(code, reason.strip(), reviewer.strip()))
