"""The sender: claim a batch, check each recipient again, render, compose, send, record.

Per recipient at the moment of sending (rules §0 conventions): suppression (SPAM-5),
authorization expiry and revocation (SEG-3, AUTH-5, AUTH-7) and the rendered-output
lint (PHI-2, PHI-3). A skip is a ledger entry with its rule ID (SEND-2). Database work
runs in a worker thread, in batches; the event loop only drives SMTP connections.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from mailer.compose import Composer, OutboundMessage
from mailer.crypto import Keyring
from mailer.errors import (
    MailerError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TLSPolicyError,
    TransportError,
)
from mailer.ledger import SEND, SKIP, Event, Ledger
from mailer.models import utcnow
from mailer.ratelimit import RateLimiter
from mailer.redact import scrub
from mailer.store import deliveries as dq
from mailer.store.auth_records import authorizations_for
from mailer.store.contacts import contacts_by_id, decrypt_clinical, decrypt_identity
from mailer.store.suppressions import suppressed_among
from mailer.templates import CompiledTemplate, Rendered
from mailer.transport import SendResult, Transport

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
    claim_batch: int = 32
    max_attempts: int = 4
    retry_base_seconds: float = 1.0
    pause_after_failures: int = 20
    worker: str = ""


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
    paused: str = ""  # reason, no PHI
    paused_rules: tuple[str, ...] = ()
    elapsed: float = 0.0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

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
    attempts: int = 0


class Sender:
    def __init__(
        self,
        *,
        engine: Engine,
        keyring: Keyring,
        ledger: Ledger,
        transport: Transport,
        composer: Composer,
        options: SenderOptions,
        auth_check: AuthCheck | None = None,
        rendered_check: RenderedCheck | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utcnow,
        progress: Callable[[Summary], None] | None = None,
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

    # -- preparation (worker thread) ----------------------------------------------------
    def _prepare(self, plan: SendPlan, batch: list[dq.Claimed]) -> tuple[list[_Item], list[dq.Outcome]]:
        rows = contacts_by_id(self.engine, (c.contact_id for c in batch))
        suppressed = suppressed_among(self.engine, (r.email_hash for r in rows.values()))
        auths = authorizations_for(self.engine, rows, plan.scope) if plan.scope else {}
        now = self.clock()
        items: list[_Item] = []
        skips: list[dq.Outcome] = []
        t = plan.template
        for c in batch:
            row = rows.get(c.contact_id)
            base = {"kind": SKIP, "campaign_id": plan.campaign_id, "contact_id": c.contact_id,
                    "template_hash": t.content_hash, "message_id": c.message_id}
            if row is None:
                skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=("SEND-2",),
                                        detail={"why": "contact no longer exists"})))
                continue
            base["recipient_hash"] = row.email_hash
            if row.email_hash in suppressed:  # SPAM-5, STD-7: opt-outs win over schedules
                skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=("SPAM-5",),
                                        detail={"why": "suppressed"})))
                continue
            clinical_values: list[str] = []
            auth_id = c.authorization_id
            if plan.scope and self.auth_check is not None:
                ok, rules, auth_id = self.auth_check(auths.get(c.contact_id, []), plan.scope, now, plan.third_party)
                if not ok:  # SEG-3: re-checked for each recipient at send time
                    skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(
                        **base, authorization_id=auth_id, rule_ids=("SEG-3", *rules),
                        detail={"why": "authorization not valid at send time"})))
                    continue
                # Authorized for this scope: its own clinical values feed the leak check (SEG-2).
                for v in decrypt_clinical(self.keyring, row).values():
                    clinical_values.extend(v if isinstance(v, list) else [v] if v else [])
            view = decrypt_identity(self.keyring, row)
            unsubscribe_url = self.options.unsubscribe_base + c.token
            context = {
                "contact": {"first_name": view.identity.get("first_name", ""),
                            "preferred_name": view.identity.get("preferred_name", ""),
                            "language": view.language},
                "center": plan.center,
                "campaign": {"name": plan.campaign_name},
                "unsubscribe_url": unsubscribe_url,
            }
            try:
                rendered = t.render(context)
            except MailerError as err:
                skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=err.rules or ("PHI-1",),
                                        detail={"why": "render failed"})))
                continue
            if self.rendered_check is not None:
                rules = tuple(dict.fromkeys(self.rendered_check(rendered, clinical_values)))
                if rules:  # the finding's rule, never the value
                    skips.append(dq.Outcome(c.delivery_id, dq.SKIPPED, Event(**base, rule_ids=rules,
                                            detail={"why": "rendered-output lint"})))
                    continue
            msg = self.composer.compose(recipient=view.email, rendered=rendered, message_id=c.message_id,
                                        unsubscribe_url=unsubscribe_url)
            items.append(_Item(c, msg, c.contact_id, row.email_hash, view.email.rpartition("@")[2],
                               attempts=c.attempts - 1))
            if auth_id is not None and auth_id != c.authorization_id:
                object.__setattr__(items[-1].claimed, "authorization_id", auth_id)
        return items, skips

    # -- the run -----------------------------------------------------------------------
    async def run(self, plan: SendPlan, *, statuses: Sequence[str] = (dq.PENDING,)) -> Summary:
        summary = Summary(plan.campaign_id, plan.run)
        started = time.perf_counter()
        summary.uncertain = await asyncio.to_thread(dq.mark_uncertain, self.engine, self.ledger,
                                                    plan.campaign_id, plan.run)
        queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=self.options.claim_batch * 2)
        outcomes: list[dq.Outcome] = []
        stop = asyncio.Event()
        consecutive = 0
        k = getattr(self.transport, "connections", 4)

        def note(o: dq.Outcome) -> None:
            outcomes.append(o)
            if o.status == dq.SENT:
                summary.sent += 1
            elif o.status == dq.FAILED:
                summary.failed += 1
            elif o.status == dq.SKIPPED and o.event is not None:
                key = ",".join(o.event.rule_ids)
                summary.skipped[key] = summary.skipped.get(key, 0) + 1
            elif o.status == dq.PENDING:
                summary.released += 1
            if self.progress:
                self.progress(summary)

        def pause(reason: str, rules: tuple[str, ...]) -> None:
            if not stop.is_set():
                summary.paused, summary.paused_rules = reason, rules
                stop.set()

        async def flush() -> None:
            if outcomes:
                batch = outcomes[:]
                outcomes.clear()
                await asyncio.to_thread(dq.record, self.engine, self.ledger, batch)

        async def producer() -> None:
            domain = self.composer.domain
            try:
                while not stop.is_set():
                    claimed = await asyncio.to_thread(dq.claim_batch, self.engine, plan.campaign_id, plan.run,
                                                      self.options.claim_batch, domain=domain,
                                                      worker=self.options.worker, statuses=statuses)
                    if not claimed:
                        break
                    items, skips = await asyncio.to_thread(self._prepare, plan, claimed)
                    for s in skips:
                        note(s)
                    for it in items:
                        if stop.is_set():
                            note(dq.Outcome(it.claimed.delivery_id, dq.PENDING))  # never attempted
                            continue
                        await queue.put(it)
                    if len(outcomes) >= self.options.claim_batch:
                        await flush()
            finally:
                for _ in range(k):
                    await queue.put(None)

        async def sender() -> None:
            nonlocal consecutive
            while True:
                it = await queue.get()
                if it is None:
                    return
                if stop.is_set():
                    note(dq.Outcome(it.claimed.delivery_id, dq.PENDING))
                    continue
                await self.limiter.acquire(it.domain)
                while True:
                    it.attempts += 1
                    try:
                        res = await self.transport.send(it.message)
                    except TLSPolicyError as err:  # before MAIL FROM: nothing left this machine
                        note(dq.Outcome(it.claimed.delivery_id, dq.PENDING))
                        pause(err.message, err.rules)
                        break
                    except TemporaryDeliveryError as err:
                        consecutive += 1
                        # a ledger entry for the attempt; the row stays claimed until it ends
                        outcomes.append(dq.Outcome(it.claimed.delivery_id, dq.DEFERRED,
                                                   self._event(plan, it, dq.DEFERRED, None, err), err.code))
                        if consecutive >= self.options.pause_after_failures:
                            note(dq.Outcome(it.claimed.delivery_id, dq.FAILED,
                                            self._event(plan, it, dq.FAILED, None, err), err.code))
                            pause(f"{consecutive} consecutive transport failures", ("SEND-2",))
                            break
                        if it.attempts >= self.options.max_attempts:
                            note(dq.Outcome(it.claimed.delivery_id, dq.FAILED,
                                            self._event(plan, it, dq.FAILED, None, err), err.code))
                            break
                        summary.deferred += 1
                        delay = self.options.retry_base_seconds * (2 ** (it.attempts - 1))
                        await asyncio.sleep(delay * (0.5 + random.random()))  # jitter
                        if stop.is_set():
                            note(dq.Outcome(it.claimed.delivery_id, dq.FAILED,
                                            self._event(plan, it, dq.FAILED, None, err), err.code))
                            break
                        continue
                    except (PermanentDeliveryError, TransportError) as err:
                        consecutive = 0
                        note(dq.Outcome(it.claimed.delivery_id, dq.FAILED,
                                        self._event(plan, it, dq.FAILED, None, err), err.code))
                        break
                    consecutive = 0
                    note(dq.Outcome(it.claimed.delivery_id, dq.SENT, self._event(plan, it, dq.SENT, res, None), res.code))
                    break

        async def recorder() -> None:
            while True:
                await asyncio.sleep(0.2)
                await flush()

        rec = asyncio.create_task(recorder())
        try:
            await asyncio.gather(producer(), *(sender() for _ in range(k)))
        finally:
            rec.cancel()
            await flush()
            summary.elapsed = time.perf_counter() - started
        return summary

    def _event(self, plan: SendPlan, it: _Item, outcome: str, res: SendResult | None,
               err: TransportError | None) -> Event:
        return Event(
            kind=SEND, outcome=outcome, campaign_id=plan.campaign_id, contact_id=it.contact_id,
            recipient_hash=it.recipient_hash, template_hash=plan.template.content_hash,
            message_hash=it.message.sha256, message_id=it.message.message_id,
            relay=self.transport.relay,
            tls_version=res.tls_version if res else None, tls_cipher=res.tls_cipher if res else None,
            smtp_code=res.code if res else (err.code if err else None),
            smtp_text=scrub(res.text if res else (err.message if err else "")) or None,
            authorization_id=it.claimed.authorization_id,
            rule_ids=("TLS-1",) if isinstance(err, TLSPolicyError) else (),
            detail={"attempt": it.attempts, "run": plan.run},
        )
