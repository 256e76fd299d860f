"""The worker fetches bounces on its own when `bounces.fetch_from` is set (every `fetch_minutes`)."""

from __future__ import annotations

import logging
from typing import Any

from mailer.bounces.process import Processor, Totals
from mailer.config import BounceSettings
from mailer.errors import ConfigError, MailerError
from mailer.runtime import Runtime

log = logging.getLogger(__name__)
JOB_ID = "bounces-fetch"


def fetch_once(rt: Runtime, *, actor: str) -> Totals:
    """One pass over the configured source (what `mailer bounces fetch` does)."""
    from mailer.bounces.mailbox import fetch_imap, fetch_maildir

    s = rt.settings.bounces
    proc = Processor(rt, actor=actor)
    if s.fetch_from == "imap":
        return fetch_imap(proc)
    if s.maildir is None:
        raise ConfigError("bounces.fetch_from is maildir but bounces.maildir is not set",
                          hint="set bounces.maildir to the bounce mailbox's Maildir")
    return fetch_maildir(proc, s.maildir)


def add_fetch_job(scheduler: Any, settings: BounceSettings) -> None:
    """An interval job in the worker's memory store: it never outlives the worker, never fires twice."""
    scheduler.add_job("mailer.bounces.schedule:job", "interval", minutes=settings.fetch_minutes, id=JOB_ID,
                      jobstore="memory", replace_existing=True, coalesce=True, max_instances=1)


def job() -> None:
    """The job function (by name, like the campaign jobs); runs in the worker's process."""
    from mailer import scheduler

    worker = scheduler._worker  # noqa: SLF001 - the worker of this process, as scheduler.fire finds it
    if worker is None:
        return
    try:
        totals = fetch_once(worker.rt, actor=worker.name)
    except MailerError as err:
        log.warning("bounce fetch failed: %s", err.message)
        return
    except Exception:  # noqa: BLE001 - a job must not kill the worker; no PHI in the log
        log.exception("bounce fetch failed")
        return
    log.info("bounces fetched: %s", ", ".join(f"{k} {v}" for k, v in sorted(totals.by_disposition.items())) or "none")
