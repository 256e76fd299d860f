"""The sender: claim a batch, check each recipient again, render, compose, send, record.

Per recipient at the moment of sending (rules §0 conventions): suppression (SPAM-5),
authorization expiry and revocation (SEG-3, AUTH-5, AUTH-7) and the rendered-output
lint (PHI-2, PHI-3). A skip is a ledger entry with its rule ID (SEND-2).

The in-flight window. At most `SenderOptions.claim_batch` (W) rows of a run are
`claimed` by one sender and not yet recorded. Rows are claimed in chunks of about W/2,
so the next chunk is claimed, checked and composed while the previous one is on the
wire; outcomes are committed in batches (never one commit per message) and free their
slots. A crash therefore leaves at most W rows `uncertain`. The checks run when a row
is claimed, which is at most W messages (milliseconds) before it leaves; an
authorization's known end (expiry, a revocation dated ahead) is checked again against
the clock just before the message is handed to the transport.

Replies (transport.py classifies them): 4xx, timeouts and disconnects are retried with
exponential backoff and jitter, on a new connection, up to `max_attempts`; 5xx fails
the row. A 5xx that says the address does not exist (RCPT 550/551/553 or 5.1.x) also
suppresses the address as a bounce (BNC-1), in the same commit. A TLS policy failure
(TLS-1..3) happens before MAIL FROM: nothing left, the row goes back to pending, the
run pauses. `pause_after_failures` consecutive transport failures pause the run too.

One thread (issue 6, measured). Everything runs on the event loop: reading, checking,
rendering and composing a few rows at a time between the relay's replies, and one
commit per batch of outcomes and claims. Threads for the database and the composer were
tried and cost more: every sqlite call hands the GIL over and back, and the loop then
waits for it, so the same work took ~40% more CPU per message. Each slice is bounded
(PREPARE_SLICE rows, one commit of at most a chunk), so no reply waits long. The one
exception (issue 20): on PostgreSQL the commit cycle, a few round trips in pipeline mode,
runs in one thread of its own, since there the loop would otherwise sit waiting on the server.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from mailer.bounces.verp import new_return_token, return_path
from mailer.compose import Composer, OutboundMessage
from mailer.crypto import Keyring, new_token
from mailer.errors import (
    AuthenticationError,
    MailerError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TLSPolicyError,
    TransportError,
)
from mailer.ledger import SEND, SKIP, Event, Ledger
from mailer.models import utcnow
from mailer.personalize import FastTemplate
from mailer.ratelimit import RateLimiter
from mailer.smtp_reply import stored_reply
from mailer.store import deliveries as dq
from mailer.store import leases, rawsql
from mailer.store.auth_records import authorizations_for
from mailer.store.contacts import decrypt_clinical, decrypt_identity
from mailer.templates import CompiledTemplate, Rendered
from mailer.transport import RecipientRejected, SendResult, Transport

PREPARE_SLICE = 8

# (authorizations of one contact, scope, at, third_party) -> (ok, rule IDs, authorization id)
AuthCheck = Callable[[Sequence[Any], str, datetime, str | None], tuple[bool, tuple[str, ...], int | None]]
# (rendered parts, this recipient's clinical values) -> rule IDs of findings (empty: clean)
RenderedCheck = Callable[[Rendered, Sequence[str]], Sequence[str]]


@dataclass(frozen=True)
class SendPlan:
    """Everything decided before sending starts (preflight passed)."""

    campaign_id: int
    run: int
    campaign_name: str
    template: CompiledTemplate
    center: Mapping[str, str]
    scope: str | None = None
    third_party: str | None = None


@dataclass(frozen=True)
class SenderOptions:
    unsubscribe_base: str
    claim_batch: int = 32  # W, the in-flight window (see the module docstring)
    max_attempts: int = 4
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    pause_after_failures: int = 20
    flush_seconds: float = 0.05  # longest an outcome waits for its batched commit
    worker: str = ""  # the lease owner id (mailer.store.leases); empty: a new one per run
    lease_seconds: float = leases.DEFAULT_LEASE_SECONDS  # a sender silent this long is taken for dead
    status_poll_seconds: float = 0.5  # how soon an operator's pause or cancel reaches this sender
    return_local: str = "bounces"  # VERP: MAIL FROM return_local+TOKEN@return_domain (mailer.bounces.verp)
    return_domain: str = ""  # empty: the composer's envelope sender, no token


@dataclass
class Summary:
    campaign_id: int
    run: int
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # retry attempts (each is a ledger entry)
    skipped: dict[str, int] = field(default_factory=dict)
    uncertain: int = 0
    released: int = 0
    bounced: int = 0  # failed with an address-does-not-exist reply, now suppressed (BNC-1)
    paused: str = ""  # reason, no PHI
    paused_rules: tuple[str, ...] = ()
    elapsed: float = 0.0
    dry_run: bool = False
    failures: dict[str, int] = field(default_factory=dict)  # reason (no PHI) -> count, for the report
    interrupted: str = ""  # "SIGINT" / "SIGTERM": an operator stopped the run

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped_total

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class _Item:
    claimed: dq.Claimed
    message: OutboundMessage
    contact_id: int
    recipient_hash: str
    domain: str
    authorization_id: int | None
    valid_until: datetime | None = None  # the authorization's known end (expiry, revocation)
    end_rule: str = ""
    tries: int = 0
    values: tuple[str, ...] = ()  # this recipient's identity and clinical values: scrubbed out of SMTP replies


def _auth_end(auths: Sequence[Any], auth_id: int | None, now: datetime) -> tuple[datetime | None, str]:
    """The earliest known moment after `now` at which the relied-on authorization stops."""
    for a in auths:
        if getattr(a, "id", None) != auth_id:
            continue
        ends = [(t, rule) for t, rule in ((a.expires_at, "AUTH-5"), (a.expiration_event_occurred_at, "AUTH-5"),
                                          (a.revoked_at, "AUTH-7")) if t is not None and t > now]
        return min(ends) if ends else (None, "")
    return None, ""


class Sender:
    def __init__(
        self,
        *,
        engine: Engine,
        keyring: Keyring,
        ledger: Ledger,
        transport: Transport | None,
        composer: Composer,
        options: SenderOptions,
        auth_check: AuthCheck | None = None,
        rendered_check: RenderedCheck | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utcnow,
        progress: Callable[[Summary], None] | None = None,
        progress_seconds: float = 0.1,
    ) -> None:
        self.engine = engine
        self.keyring = keyring
        self.ledger = ledger
        self.transport = transport
        self.composer = composer
        self.options = options
        self.auth_check = auth_check
        self.rendered_check = rendered_check
        self.limiter = limiter or RateLimiter()
        self.clock = clock
        self.progress = progress
        self.progress_seconds = progress_seconds
        self._fast: tuple[SendPlan, FastTemplate] | None = None
        self._stop_run: Callable[[str], None] | None = None
        self._interrupted = ""
        self.owner = ""  # the lease owner id of the current (or last) run

    def interrupt(self, signal_name: str) -> None:
        """Ctrl-C / SIGTERM: stop claiming; in-flight messages finish and are recorded
        (before the run starts: it stops as soon as it does, having claimed nobody)."""
        self._interrupted = self._interrupted or signal_name
        if self._stop_run is not None:
            self._stop_run(signal_name)

    # -- preparation (worker thread) ----------------------------------------------------
    def _prepare(self, plan: SendPlan, batch: Sequence[dq.Claimed],
                 known: tuple[Mapping[int, Any], set[str]]) -> tuple[list[_Item], list[dq.Outcome]]:
        """The checks at send time, then render and compose. KNOWN: contacts by id and the
        suppressed hashes among them, read with the rows (`_ahead`)."""
        rows, suppressed = known
        # SEG-3 re-check: only the scope's records of recipients not suppressed are decrypted.
        auths = (authorizations_for(self.engine, self.keyring,
                                    [i for i, r in rows.items() if r.email_hash not in suppressed], plan.scope)
                 if plan.scope and self.auth_check is not None else {})
        items: list[_Item] = []
        skips: list[dq.Outcome] = []
        t = plan.template
        fast = self._fast_template(plan)
        base_url = self.options.unsubscribe_base
        verp_local, verp_domain = self.options.return_local, self.options.return_domain
        for c in batch:
            now = self.clock()
            row = rows.get(c.contact_id)
            base: dict[str, Any] = {"kind": SKIP, "campaign_id": plan.campaign_id, "contact_id": c.contact_id,
                                    "template_hash": t.content_hash, "message_id": c.message_id,
                                    "detail": {"run": plan.run}}
            if row is None:
                skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=("SEND-2",))))
                continue
            base["recipient_hash"] = row.email_hash
            if row.email_hash in suppressed:  # SPAM-5, STD-7: opt-outs win over schedules
                skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=("SPAM-5",))))
                continue
            clinical_values: list[str] = []
            auth_id = c.authorization_id
            valid_until, end_rule = None, ""
            if plan.scope and self.auth_check is not None:
                mine = auths.get(c.contact_id, [])
                ok, rules, auth_id = self.auth_check(mine, plan.scope, now, plan.third_party)
                if not ok:  # SEG-3: re-checked for each recipient at send time
                    skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(
                        **base, authorization_id=auth_id, rule_ids=("SEG-3", *rules))))
                    continue
                valid_until, end_rule = _auth_end(mine, auth_id, now)
                # Authorized for this scope: its own clinical values feed the leak check (SEG-2).
                for v in decrypt_clinical(self.keyring, row).values():
                    clinical_values.extend(v if isinstance(v, list) else [v] if v else [])
            view = decrypt_identity(self.keyring, row)
            unsubscribe_url = base_url + c.token
            contact = {"first_name": view.identity.get("first_name", ""),
                       "preferred_name": view.identity.get("preferred_name", ""),
                       "language": view.language}
            try:
                rendered = fast.render(contact, unsubscribe_url)
            except MailerError as err:
                skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=err.rules or ("PHI-1",))))
                continue
            if self.rendered_check is not None:
                found = tuple(dict.fromkeys(self.rendered_check(rendered, clinical_values)))
                if found:  # the finding's rule, never the value
                    skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=found)))
                    continue
            try:
                msg = self.composer.compose(recipient=view.email, rendered=rendered, message_id=c.message_id,
                                            unsubscribe_url=unsubscribe_url,
                                            envelope_from=return_path(verp_local, c.return_token, verp_domain)
                                            if c.return_token else None)
            except MailerError as err:
                skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=err.rules or ("STD-1",))))
                continue
            items.append(_Item(c, msg, c.contact_id, row.email_hash, view.email.rpartition("@")[2].lower(),
                               auth_id, valid_until, end_rule,
                               values=(view.email, *(str(v) for v in view.identity.values() if v),
                                       *(str(v) for v in clinical_values))))
        return items, skips

    def _fast_template(self, plan: SendPlan) -> FastTemplate:
        """One skeleton renderer per plan: the center and campaign name are fixed for a run."""
        if self._fast is None or self._fast[0] is not plan:
            self._fast = (plan, FastTemplate(plan.template, center=plan.center,
                                             campaign={"name": plan.campaign_name},
                                             unsubscribe_base=self.options.unsubscribe_base))
        return self._fast[1]

    def _operator_stopped(self, plan: SendPlan) -> str | None:
        """An operator's `campaign pause` or `cancel` stops a run already sending (the watch
        task asks between pages; the producer reads the status with each page)."""
        with self.engine.connect() as conn:
            got = rawsql.fetch(conn, "SELECT status FROM campaign WHERE id = ?", (plan.campaign_id,))
        status = got[0][0] if got else None
        return status if status in ("paused", "cancelled") else None

    def _ahead(self, rows: Sequence[dq.SendRow], *, dry_run: bool = False
               ) -> tuple[list[dq.Claimed], tuple[dict[int, Any], set[str]]]:
        """Claims-to-be for ROWS (Message-ID, unsubscribe token) and what `_prepare` needs of them.

        A resend keeps the row's Message-ID so receivers can de-duplicate. A dry run's
        token is a placeholder that unsubscribes nobody. With a bounce domain each row also
        gets a random return-path token (VERP, issue 19): ~1 µs here, one row at the claim."""
        verp = bool(self.options.return_domain) and not dry_run
        ahead = [dq.Claimed(r.delivery_id, r.contact_id, r.authorization_id,
                            r.message_id or self.composer.message_id(r.delivery_id),
                            "dry-run" if dry_run else new_token(), r.attempts + (0 if dry_run else 1),
                            r.contact.email_hash if r.contact is not None else "",
                            new_return_token() if verp else "")
                 for r in rows]
        contacts = {r.contact_id: r.contact for r in rows if r.contact is not None}
        suppressed = {r.contact.email_hash for r in rows if r.contact is not None and r.suppressed}
        return ahead, (contacts, suppressed)

    # -- the run -----------------------------------------------------------------------
    async def run(self, plan: SendPlan, *, statuses: Sequence[str] = (dq.PENDING,)) -> Summary:
        """Three kinds of task on one loop: a producer reading and composing ahead, one
        database task that records outcomes and claims the next composed rows in the same
        commit, and K senders, one per pooled connection."""
        if self.transport is None:
            raise MailerError("Sender.run needs a transport")
        opts = self.options
        summary = Summary(plan.campaign_id, plan.run)
        started = time.perf_counter()
        owner = opts.worker or leases.new_owner()
        self.owner = owner
        # The lease goes in before the first claim; only senders whose lease expired leave
        # `uncertain` rows, never a live one (issue 20: any number of senders per campaign).
        leases.register(self.engine, owner, plan.campaign_id, plan.run, seconds=opts.lease_seconds)
        beat = leases.Heartbeat(self.engine, owner, seconds=opts.lease_seconds)
        beat.start()
        try:
            return await self._run(plan, statuses, summary, started, owner)
        finally:
            beat.stop()
            leases.release(self.engine, owner)

    async def _run(self, plan: SendPlan, statuses: Sequence[str], summary: Summary, started: float,
                   owner: str) -> Summary:
        assert self.transport is not None
        transport = self.transport
        opts = self.options
        summary.uncertain = dq.mark_uncertain(self.engine, self.ledger, plan.campaign_id, plan.run)
        window = max(1, opts.claim_batch)
        chunk = max(1, window // 2)
        k = max(1, int(getattr(transport, "connections", 4)))
        queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        prepared: deque[_Item] = deque()
        outcomes: list[dq.Outcome] = []
        skips: list[dq.Outcome] = []
        stop = asyncio.Event()
        ended = asyncio.Event()  # the run is stopping or done: the status watch ends
        db_wake = asyncio.Event()
        prod_wake = asyncio.Event()
        st: dict[str, Any] = {"inflight": 0, "open": 0, "consecutive": 0, "producing": True, "first_outcome": 0.0,
                              "finals": 0}
        loop = asyncio.get_running_loop()
        last_progress = [0.0]
        retries: set[asyncio.Task[None]] = set()

        def report(force: bool = False) -> None:
            if self.progress is None:
                return
            now = time.perf_counter()
            if force or now - last_progress[0] >= self.progress_seconds:
                last_progress[0] = now
                summary.elapsed = now - started
                self.progress(summary)

        def count(o: dq.Outcome) -> None:
            if o.status == dq.DEFERRED:
                summary.deferred += 1
            elif o.status == dq.SENT:
                summary.sent += 1
            elif o.status == dq.FAILED:
                summary.failed += 1
                summary.bounced += 1 if o.bounce_hash else 0
            elif o.status == dq.SKIPPED and o.event is not None:
                key = ",".join(o.event.rule_ids)
                summary.skipped[key] = summary.skipped.get(key, 0) + 1
            elif o.status == dq.PENDING:
                summary.released += 1

        def note(o: dq.Outcome) -> None:
            outcomes.append(o)
            count(o)
            if o.status != dq.DEFERRED:
                st["finals"] += 1
            # Wake the database task only when it has something to decide: the first
            # outcome of a batch (it starts the flush timer) or a full batch.
            if len(outcomes) == 1:
                st["first_outcome"] = time.perf_counter()
                db_wake.set()
            elif st["finals"] >= chunk:
                db_wake.set()

        def finish(o: dq.Outcome) -> None:
            st["open"] -= 1
            note(o)
            if st["open"] <= 0:
                db_wake.set()

        def pause(reason: str, rules: tuple[str, ...]) -> None:
            if not stop.is_set():
                summary.paused, summary.paused_rules = reason, rules
                stop.set()
                ended.set()  # the status watch has nothing left to do
                db_wake.set()
                prod_wake.set()

        def interrupted(signal_name: str) -> None:
            summary.interrupted = signal_name
            pause(f"run stopped: interrupted ({signal_name})", ())

        self._stop_run = interrupted
        if self._interrupted:
            interrupted(self._interrupted)

        async def watch() -> None:
            """An operator's pause or cancel reaches this sender within `status_poll_seconds`,
            however slowly it sends (rate limits) and whatever the other senders do."""
            while not stop.is_set() and not ended.is_set():
                try:
                    await asyncio.wait_for(ended.wait(), opts.status_poll_seconds)
                except TimeoutError:
                    pass
                halted = None if stop.is_set() or ended.is_set() else self._operator_stopped(plan)
                if halted:
                    pause(f"campaign {halted} by an operator", ())

        async def drained() -> None:
            """Until every row read so far is claimed or skipped (none can be read twice)."""
            while (prepared or skips) and not stop.is_set():
                prod_wake.clear()
                db_wake.set()
                await prod_wake.wait()

        async def producer() -> None:
            after = 0
            try:
                while not stop.is_set():
                    if len(prepared) >= window:
                        prod_wake.clear()
                        await prod_wake.wait()
                        continue
                    # the operator's pause/cancel is polled with the page, in one query
                    status, page = dq.send_page_with_status(self.engine, plan.campaign_id, plan.run, after=after,
                                                            n=chunk, statuses=statuses, worker=owner)
                    if status in ("paused", "cancelled"):  # composed-but-unclaimed rows simply stay pending
                        pause(f"campaign {status} by an operator", ())
                        break
                    ahead, known = self._ahead(page)
                    if not ahead:
                        # Our reserved rows are done: reserve the next free block (rows no live
                        # sender holds), so senders do not read and compose the same rows.
                        got = self._reserve(plan, owner, statuses, max(leases.RESERVE_BLOCK, 4 * window))
                        if not got:
                            if not leases.held_elsewhere(self.engine, plan.campaign_id, plan.run, owner, statuses):
                                break
                            # other senders still hold rows: wait, and take them over if one dies
                            try:
                                await asyncio.wait_for(stop.wait(), min(1.0, opts.lease_seconds / 3))
                            except TimeoutError:
                                pass
                            continue
                        if got[0] <= after:  # rows freed behind the cursor (a sender died)
                            await drained()
                            after = got[0] - 1
                        continue
                    after = ahead[-1].delivery_id
                    # Checked, rendered and composed on the loop a few rows at a time, so
                    # replies from the relay are read between slices.
                    for i in range(0, len(ahead), PREPARE_SLICE):
                        await asyncio.sleep(0)
                        take(*self._prepare(plan, ahead[i:i + PREPARE_SLICE], known))
            finally:
                st["producing"] = False
                db_wake.set()

        def take(items: list[_Item], sk: list[dq.Outcome]) -> None:
            for o in sk:
                count(o)
            skips.extend(sk)
            prepared.extend(items)
            db_wake.set()

        async def database() -> None:
            """Records outcomes and claims the next rows, in one commit per turn, all on one
            held connection (no pool checkout or pre-ping per commit)."""
            try:
                with dq.held_writer(self.engine) as held:
                    try:
                        await cycles(held)
                    finally:  # a commit still running in the thread ends before its connection closes
                        if db_thread is not None:
                            db_thread.shutdown(wait=True)
            finally:
                ended.set()
                for _ in range(k):
                    queue.put_nowait(None)

        # PostgreSQL: each commit waits on the server; in a thread of its own (the driver lets
        # go of the GIL while it waits) the loop keeps the connections busy meanwhile. SQLite
        # stays on the loop (the module docstring: a thread there costs more CPU than it saves).
        db_thread = (ThreadPoolExecutor(1, thread_name_prefix="mailer-commit")
                     if self.engine.dialect.name == "postgresql" else None)

        async def cycles(held: Any) -> None:
            while True:
                finals = st["finals"]
                free = window - st["inflight"] + finals
                claims: list[_Item] = []
                if prepared and not stop.is_set() and (free >= chunk or (free > 0 and not st["producing"])):
                    claims = [prepared.popleft() for _ in range(min(free, len(prepared)))]
                    prod_wake.set()
                if not claims and not skips:
                    if not outcomes:
                        if not st["producing"] and (not prepared or stop.is_set()) and st["open"] <= 0:
                            return
                        db_wake.clear()
                        await db_wake.wait()
                        continue
                    wait = opts.flush_seconds - (time.perf_counter() - st["first_outcome"])
                    if finals < chunk and wait > 0 and (st["producing"] or prepared or st["open"] > 0):
                        db_wake.clear()  # let a few more outcomes join this commit
                        timer = loop.call_later(wait, db_wake.set)
                        await db_wake.wait()
                        timer.cancel()
                        continue
                out, sk = outcomes[:], skips[:]
                outcomes.clear()
                skips.clear()
                st["finals"] = 0
                cycle = functools.partial(dq.commit_cycle, self.engine, self.ledger, outcomes=out,
                                          claims=[i.claimed for i in claims], skips=sk, campaign_id=plan.campaign_id,
                                          statuses=statuses, worker=owner, conn=held)
                got = await asyncio.wrap_future(db_thread.submit(cycle)) if db_thread is not None else cycle()
                if sk and not skips:
                    prod_wake.set()  # a producer waiting in `drained` may go on
                st["inflight"] += len(got) - finals
                for it in claims:
                    if it.claimed.delivery_id in got:  # else another worker has it
                        st["open"] += 1
                        queue.put_nowait(it)
                report()

        async def retry_later(it: _Item, delay: float) -> None:
            try:  # a pause cuts the wait short; the sender then releases the row
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            queue.put_nowait(it)

        def give_up(it: _Item, err: TransportError) -> None:
            reason = " ".join(err.message.split())[:200]
            summary.failures[reason] = summary.failures.get(reason, 0) + 1
            bounce = it.recipient_hash if isinstance(err, RecipientRejected) else None
            ev = self._event(plan, it, dq.FAILED, None, err, rules=("BNC-1",) if bounce else ())
            finish(dq.Outcome(it.claimed.delivery_id, dq.FAILED, ev, err.code, bounce_hash=bounce))

        limited = self.limiter.active

        async def sender() -> None:
            while True:
                it = await queue.get()
                if it is None:
                    return
                if stop.is_set():
                    finish(dq.Outcome(it.claimed.delivery_id, dq.PENDING))  # never attempted
                    continue
                if it.valid_until is not None and self.clock() >= it.valid_until:
                    finish(dq.Outcome(it.claimed.delivery_id, dq.SKIPPED, Event(
                        kind=SKIP, campaign_id=plan.campaign_id, contact_id=it.contact_id,
                        recipient_hash=it.recipient_hash, template_hash=plan.template.content_hash,
                        message_id=it.message.message_id, authorization_id=it.authorization_id,
                        rule_ids=("SEG-3", it.end_rule), detail={"run": plan.run})))
                    continue
                if limited:
                    await self._acquire(it.domain, stop)
                    if stop.is_set():  # paused while waiting for the rate limit: never attempted
                        finish(dq.Outcome(it.claimed.delivery_id, dq.PENDING))
                        continue
                it.tries += 1
                try:
                    res = await transport.send(it.message)
                except TLSPolicyError as err:  # before MAIL FROM: nothing left this machine
                    finish(dq.Outcome(it.claimed.delivery_id, dq.PENDING))
                    pause(err.message, err.rules or ("TLS-1",))
                    continue
                except AuthenticationError as err:  # every message would fail alike: pause on the first
                    finish(dq.Outcome(it.claimed.delivery_id, dq.PENDING))
                    pause(err.message, err.rules or ("SEC-8",))
                    continue
                except TemporaryDeliveryError as err:
                    st["consecutive"] += 1
                    if st["consecutive"] >= opts.pause_after_failures:
                        give_up(it, err)
                        pause(f"{st['consecutive']} consecutive transport failures", ("SEND-2",))
                        continue
                    if it.tries >= opts.max_attempts or stop.is_set():
                        give_up(it, err)
                        continue
                    # a ledger entry for the attempt; the row stays claimed until it ends
                    note(dq.Outcome(it.claimed.delivery_id, dq.DEFERRED, self._event(plan, it, dq.DEFERRED, None, err),
                                    err.code))
                    delay = min(opts.retry_max_seconds, opts.retry_base_seconds * (2 ** (it.tries - 1)))
                    task = asyncio.get_running_loop().create_task(retry_later(it, delay * (0.5 + random.random())))
                    retries.add(task)
                    task.add_done_callback(retries.discard)
                    continue
                except (PermanentDeliveryError, TransportError) as err:
                    st["consecutive"] = 0
                    give_up(it, err)
                    continue
                st["consecutive"] = 0
                finish(dq.Outcome(it.claimed.delivery_id, dq.SENT, self._event(plan, it, dq.SENT, res, None), res.code))

        try:
            await asyncio.gather(producer(), database(), watch(), *(sender() for _ in range(k)))
        finally:
            if outcomes or skips:  # an error above: keep what is known
                dq.commit_cycle(self.engine, self.ledger, outcomes=outcomes[:], skips=skips[:], statuses=statuses)
            self._stop_run = None
            summary.elapsed = time.perf_counter() - started
            report(force=True)
        return summary

    def _reserve(self, plan: SendPlan, owner: str, statuses: Sequence[str], n: int) -> list[int]:
        """The next block of free rows; when none is free, dead senders' leases on this host
        are expired first (their reserved rows become free)."""
        got = leases.reserve(self.engine, owner, plan.campaign_id, plan.run, statuses, n=n)
        if not got and leases.reap(self.engine, plan.campaign_id):
            got = leases.reserve(self.engine, owner, plan.campaign_id, plan.run, statuses, n=n)
        return got

    async def _acquire(self, domain: str, stop: asyncio.Event) -> None:
        """The rate limit's wait, cut short by a pause or cancel."""
        got = asyncio.ensure_future(self.limiter.acquire(domain))
        if got.done():
            return
        halt = asyncio.ensure_future(stop.wait())
        await asyncio.wait({got, halt}, return_when=asyncio.FIRST_COMPLETED)
        for t in (got, halt):
            if not t.done():
                t.cancel()

    # -- dry run -----------------------------------------------------------------------
    def dry_run(self, plan: SendPlan, out_dir: Path, *, statuses: Sequence[str] = (dq.PENDING,)) -> Summary:
        """Same checks, render and compose as a send; writes `<delivery id>.eml` instead.

        Claims nothing and records nothing as sent: the rows stay as they are. Unsubscribe
        links carry a placeholder token that unsubscribes nobody. The files hold PHI
        (addresses, names): the directory is the operator's responsibility.
        """
        summary = Summary(plan.campaign_id, plan.run, dry_run=True)
        started = time.perf_counter()
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(out_dir, 0o700)  # the .eml files hold addresses and names: private folder, private files
        for page in dq.iter_send_pages(self.engine, plan.campaign_id, plan.run, statuses=statuses):
            items, skips = self._prepare(plan, *self._ahead(page, dry_run=True))
            for s in skips:
                key = ",".join(s.event.rule_ids) if s.event else "-"
                summary.skipped[key] = summary.skipped.get(key, 0) + 1
            for it in items:
                fd = os.open(out_dir / f"{it.claimed.delivery_id}.eml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(it.message.data)
                summary.sent += 1
            if self.progress:
                summary.elapsed = time.perf_counter() - started
                self.progress(summary)
        summary.elapsed = time.perf_counter() - started
        return summary

    def _event(self, plan: SendPlan, it: _Item, outcome: str, res: SendResult | None,
               err: TransportError | None, rules: tuple[str, ...] = ()) -> Event:
        assert self.transport is not None
        text = stored_reply(res.text if res else (err.message if err else ""), values=it.values,
                            check=self.rendered_check)
        return Event(
            kind=SEND, outcome=outcome, campaign_id=plan.campaign_id, contact_id=it.contact_id,
            recipient_hash=it.recipient_hash, template_hash=plan.template.content_hash,
            message_hash=it.message.sha256, message_id=it.message.message_id,
            relay=self.transport.relay,
            tls_version=res.tls_version if res else None, tls_cipher=res.tls_cipher if res else None,
            smtp_code=res.code if res else (err.code if err else None),
            smtp_text=text,  # enhanced code + scrubbed, truncated text (mailer.smtp_reply)
            authorization_id=it.authorization_id,
            rule_ids=rules or (tuple(err.rules) if err is not None else ()),
            detail={"attempt": it.tries, "run": plan.run},
        )
