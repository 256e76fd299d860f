"""Helpers shared by the ledger tests (no tests here): build a ledger, tamper with it
directly in the database, run the CLI against a settings file written for the test."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from typer.testing import CliRunner

from mailer.ledger import Event
from mailer.runtime import Runtime


def send_event(i: int, **kw: Any) -> Event:
    base: dict[str, Any] = dict(
        kind="send", outcome="sent", campaign_id=1, contact_id=i, recipient_hash=f"{i:064x}",
        template_hash="b" * 64, message_hash=f"{i * 7:064x}", message_id=f"<1.{i}.{i:032x}@riverside-imaging.example>",
        relay="relay.example", tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384", smtp_code=250,
        smtp_text="2.0.0 OK queued", authorization_id=None, detail={"attempt": 1, "run": 0},
    )
    base.update(kw)
    return Event(**base)


def fill(rt: Runtime, n: int, *, batch: int = 10) -> None:
    """n entries, appended in batches (several transactions, as workers would)."""
    for start in range(0, n, batch):
        rt.ledger.append([send_event(i) for i in range(start + 1, min(n, start + batch) + 1)])


def sql(engine: Engine, statement: str, params: dict[str, Any] | None = None) -> Any:
    """Run SQL straight against the database, outside mailer's write path."""
    with engine.begin() as conn:
        return conn.execute(text(statement), params or {})


def drop_triggers(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        sql(engine, "DROP TRIGGER IF EXISTS ledger_no_update")
        sql(engine, "DROP TRIGGER IF EXISTS ledger_no_delete")
    else:
        sql(engine, "DROP TRIGGER IF EXISTS ledger_no_update_delete ON ledger")
        sql(engine, "DROP TRIGGER IF EXISTS ledger_no_truncate ON ledger")


def row(engine: Engine, seq: int) -> dict[str, Any]:
    with engine.connect() as conn:
        r = conn.execute(text("SELECT * FROM ledger WHERE seq = :s"), {"s": seq}).mappings().first()
    assert r is not None
    values = dict(r)
    if isinstance(values["at"], str):  # SQLite hands text back to plain SQL
        values["at"] = datetime.fromisoformat(values["at"])
    return values


def insert_row(engine: Engine, values: dict[str, Any]) -> None:
    cols = ", ".join(f'"{k}"' for k in values)
    params = ", ".join(f":{k}" for k in values)
    sql(engine, f"INSERT INTO ledger ({cols}) VALUES ({params})", values)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def write_config(rt: Runtime, tmp_path: Path) -> Path:
    """The runtime's settings as a TOML file for `mailer --config`."""
    data = rt.settings.model_dump(mode="json", exclude={"source"})
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
    path = tmp_path / "mailer-test.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(config: Path, *args: str, actor: str | None = "auditor") -> Any:
    from mailer.cli.app import app
    from tests.helpers_accounts import cli_env

    return CliRunner().invoke(app, ["--config", str(config), *args], env=cli_env(config, actor))
