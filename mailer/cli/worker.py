"""`mailer worker`: run the scheduler (holding the scheduler lock) and send what fires."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailer.accounts.permissions import Action
from mailer.cli.common import act, runtime
from mailer.cli.stopping import stop_on_signals
from mailer.scheduler import DEFAULT_MISFIRE_GRACE, Worker


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        ctx: typer.Context,
        poll: Annotated[float, typer.Option(help="Seconds between looks at the job store (jobs other processes add).")] = 5.0,
        misfire_grace: Annotated[int, typer.Option(help="A run missed by less than this many seconds runs once, late; "
                                                   "missed by more, it is skipped and recorded in the ledger.")] = DEFAULT_MISFIRE_GRACE,
        heartbeat: Annotated[Path | None, typer.Option(help="Touch this file after every poll, for a health check "
                                                       "(python -m mailer.healthcheck heartbeat FILE SECONDS).")] = None,
        processes: Annotated[int, typer.Option(
            min=0, max=64, help="Sender processes per campaign run (0: the number of cores, one per 5,000 "
                                "recipients left; 1: send in the worker's own process).")] = 0,
    ) -> None:
        """Fire scheduled campaigns and send them; resumes runs a previous worker left unfinished.

        One worker per database holds the scheduler lock (PostgreSQL advisory lock, or a
        lock file beside the SQLite database); others wait for it. Stop with SIGTERM or Ctrl-C.

        It runs as a service account, signed in with that account's API token in
        MAILER_TOKEN, or in the file MAILER_TOKEN_FILE names (mailer users add worker --role service;
        mailer users token worker [--out FILE]):
        it may send what was approved, never approve.
        """
        import logging

        # a worker says what it does: each campaign it starts and finishes, with a time
        logging.getLogger("mailer.scheduler").setLevel(logging.INFO)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        rt = runtime(ctx)
        who = act(ctx, Action.CAMPAIGN_RUN)
        if rt.settings.bounces.fetch_from:  # it will also take bounces in (issue 19): checked up front
            act(ctx, Action.BOUNCES_PROCESS)
        stop = stop_on_signals()

        def ready() -> None:
            sys.stdout.write(f"worker ready (pid {__import__('os').getpid()}, timezone {rt.settings.center.timezone})\n")
            sys.stdout.flush()

        Worker(rt, misfire_grace=misfire_grace, poll=poll, heartbeat=heartbeat, name=who,
               processes=processes).run_forever(stop, ready)
