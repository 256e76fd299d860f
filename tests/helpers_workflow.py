"""Helpers for workflow tests: create, submit and approve campaigns the way people do.

`approve(rt, campaign_id)` is the two-person path that makes a campaign pass the SEC-6
gate: the author submits, a different reviewer approves.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mailer import approvals, campaigns
from mailer.models import Campaign
from mailer.runtime import Runtime
from tests.conftest import ROOT

AUTHOR = "marketer"
REVIEWER = "compliance"


def create(rt: Runtime, *, template: Path | str = "newsletter", segment: Path | str = "newsletter",
           purpose: str | None = None, name: str = "Evening hours", third_party: str | None = None,
           author: str = AUTHOR) -> Campaign:
    tpath = template if isinstance(template, Path) else ROOT / "templates" / template
    spath = segment if isinstance(segment, Path) else ROOT / "segments" / f"{segment}.toml"
    if purpose is None:
        from mailer.templates import load_meta

        purpose = load_meta(tpath)["purpose"]
    return campaigns.create(rt, name=name, purpose=purpose, template=tpath, segment=spath, author=author,
                            third_party=third_party)


def approve(rt: Runtime, campaign_id: int, *, reviewer: str = REVIEWER) -> Any:
    """Submit (as the author) and approve (as someone else): the campaign passes SEC-6."""
    c = campaigns.get(rt, campaign_id)
    if c.status == "draft":
        campaigns.submit(rt, campaign_id, actor=c.author)
    approval, _packet = approvals.approve(rt, campaign_id, reviewer=reviewer)
    return approval


def approved(rt: Runtime, **kwargs: Any) -> Campaign:
    c = create(rt, **kwargs)
    approve(rt, c.id or 0)
    return campaigns.get(rt, c.id or 0)


def copy_template(tmp_path: Path, name: str = "newsletter") -> Path:
    dest = tmp_path / "templates" / name
    shutil.copytree(ROOT / "templates" / name, dest)
    return dest


def copy_segment(tmp_path: Path, name: str = "newsletter") -> Path:
    dest = tmp_path / "segments" / f"{name}.toml"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "segments" / f"{name}.toml", dest)
    return dest


def edit_one_character(template: Path) -> None:
    body = template / "body.html.j2"
    text = body.read_text()
    i = text.index("quieter")
    body.write_text(text[:i] + "Q" + text[i + 1:])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(rt: Runtime, path: Path) -> Path:
    """The runtime's settings as a TOML file, for a `mailer` subprocess."""
    data = rt.settings.model_dump(mode="json", exclude={"source"})
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path
