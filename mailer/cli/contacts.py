"""`mailer contacts ...`: import the patient list (encrypted at rest), encrypted backup and restore.

There is deliberately no export command: contact lists are never transferred to a third
party (SPAM-7, MKT-7). `backup` is for the covered entity itself and stays encrypted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from mailer.accounts.permissions import Action
from mailer.cli.common import FormatOpt, act, check_format, new_app, out, print_json, runtime

contacts_app = new_app("Patient contacts: import, encrypted backup and restore (addresses and clinical fields "
                       "are encrypted at rest; there is no export to third parties).")


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar when stdout is a terminal; yields `advance_to(completed)` or None."""
    if not out.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                  console=out, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


@contacts_app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with email, first_name, last_name, preferred_name, language, newsletter_opt_in and the clinical columns config declares.")],
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows; report the bad ones.")] = False,
    check_deliverability: Annotated[bool, typer.Option("--check-deliverability", help="Also check each domain in DNS (slow).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Import or update contacts; all-or-nothing unless --skip-invalid. Re-importing a file changes nothing."""
    from mailer.store.contacts import import_contacts

    rt = runtime(ctx)
    f = rt.settings.fields
    size = file.stat().st_size if file.is_file() else None
    from mailer.contacts import reserved_domains_allowed

    with progress_bar("importing", size) as advance, reserved_domains_allowed(rt.settings.contacts.allow_reserved_domains):
        report = import_contacts(
            rt.engine, rt.keyring, rt.ledger, file, dict(f.clinical), separator=f.list_separator,
            skip_invalid=skip_invalid, check_deliverability=check_deliverability, actor=act(ctx, Action.CONTACTS_IMPORT),
            progress=(lambda rows, done: advance(done)) if advance else None,
        )
    if fmt == "json":
        print_json({"rows": report.rows, "inserted": report.inserted, "updated": report.updated,
                    "unchanged": report.unchanged, "skipped": report.skipped, "duplicates": report.duplicates,
                    "problems": [{"line": p.line, "field": p.field, "reason": p.reason} for p in report.problems],
                    "problems_omitted": report.problems_omitted})
        return
    out.print(f"{report.rows} row(s): {report.inserted} new, {report.updated} updated, {report.unchanged} unchanged; "
              f"skipped {report.skipped} bad row(s)")
    for p in report.problems:
        out.print(f"  {file}:{p.line}: {p.field}: {p.reason}", markup=False)
    if report.problems_omitted:
        out.print(f"  ... and {report.problems_omitted} more problem(s)", markup=False)


@contacts_app.command("count")
def count_cmd(ctx: typer.Context, fmt: FormatOpt = "text") -> None:
    """How many contacts, opted in to the newsletter, and suppressed (counts only, no PHI)."""
    from sqlalchemy import func, select

    from mailer.models import Contact

    check_format(fmt)
    rt = runtime(ctx)
    t = Contact.__table__  # type: ignore[attr-defined]
    with rt.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(t)).scalar() or 0
        opted = conn.execute(select(func.count()).select_from(t).where(t.c.newsletter_opt_in.is_(True))).scalar() or 0
    data = {"contacts": total, "newsletter_opt_in": opted}
    if fmt == "json":
        print_json(data)
        return
    out.print(f"{total} contact(s), {opted} opted in to the newsletter", markup=False)


@contacts_app.command("backup")
def backup_cmd(
    ctx: typer.Context,
    out_file: Annotated[Path, typer.Option("--out", help="Backup file to write (mode 0600; never clear text).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Encrypted backup of contacts and authorizations for the covered entity itself (ledger: data-export)."""
    from mailer.store.backup import write_backup

    rt = runtime(ctx)
    res = write_backup(rt.engine, rt.keyring, rt.ledger, out_file, actor=act(ctx, Action.CONTACTS_BACKUP), overwrite=force)
    counts = ", ".join(f"{n} {t}(s)" for t, n in res.counts.items())
    out.print(f"wrote encrypted backup {res.backup_id} to {res.path}: {counts}; data key wrapped under field key "
              f"{res.key_id} (restorable only with this installation's key file)", markup=False)


@contacts_app.command("restore")
def restore_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file written by `mailer contacts backup`.")],
) -> None:
    """Restore a backup into an empty database (same key file); all or nothing."""
    from mailer.store.backup import restore_backup

    rt = runtime(ctx)
    counts = restore_backup(rt.engine, rt.keyring, rt.ledger, file, actor=act(ctx, Action.CONTACTS_RESTORE))
    out.print("restored " + ", ".join(f"{n} {t}(s)" for t, n in counts.items()), markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(contacts_app, name="contacts")
