"""Checks at the moment each message is sent (rules §0, §8 items 1-2): opt-outs, expiry, revocation, lint."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from mailer import sending
from mailer.pipeline import SendPlan
from mailer.store import deliveries as dq
from mailer.store.auth_records import import_authorizations, revoke
from mailer.store.contacts import contact_id_for
from mailer.store.suppressions import suppress
from tests.conftest import NO_GATES, ROOT
from tests.test_send_support import (
    CountingHandler,
    as_sink,
    ledger_rows,
    newsletter,
    start_server,
    statuses,
    tls_server_context,
)

SCOPE = "condition-targeted-marketing"
A, B, C = "carla.huang3@example.org", "rosa.chen7@example.com", "victor.chen11@example.com"  # in id order


def _server(certs):  # type: ignore[no-untyped-def]
    handler = CountingHandler()
    controller, port = start_server(handler, tls=tls_server_context(certs), require_starttls=True)
    return handler, controller, port


def _contacts(rt) -> None:  # type: ignore[no-untyped-def]
    from mailer.store.contacts import import_contacts

    import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv", dict(rt.settings.fields.clinical))


def _authorizations(rt, tmp_path: Path, expires: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    src = list(csv.DictReader((ROOT / "examples/authorizations.csv").open()))
    rows = [dict(r, expires_at=expires.get(r["email"], r["expires_at"]), revoked_at="") for r in src
            if r["email"] in (A, B, C)]
    path = tmp_path / "auth.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(src[0]))
        w.writeheader()
        w.writerows(rows)
    import_authorizations(rt.engine, rt.keyring, rt.ledger, path)


async def _run_scoped(rt, clock):  # type: ignore[no-untyped-def]
    """A condition-targeted run over A, B, C, one message in flight at a time (claim_batch 1)."""
    c = newsletter(rt)
    ids = [contact_id_for(rt.engine, rt.keyring, e) for e in (A, B, C)]
    dq.freeze_audience(rt.engine, rt.ledger, c.id, 0, [(i, None) for i in ids])
    from mailer.templates import compile_template

    plan = SendPlan(campaign_id=c.id, run=0, campaign_name=c.name, template=compile_template(ROOT / "templates/newsletter"),
                    center=rt.center_context(), scope=SCOPE)
    transport = rt.transport()
    sender = sending.make_sender(rt, c.id, transport=transport, clock=clock)
    try:
        summary = await sender.run(plan)
    finally:
        await transport.close()
    return c, ids, summary


async def test_an_unsubscribe_during_the_campaign_stops_later_messages(runtime_factory, certs) -> None:
    handler, controller, port = _server(certs)
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller), limits={"claim_batch": 1})
        _contacts(rt)
        c = newsletter(rt)
        last = [r["email"] for r in csv.DictReader((ROOT / "examples/contacts.csv").open())
                if r["newsletter_opt_in"] == "true"][-1]

        def on_first(h, session, envelope):  # type: ignore[no-untyped-def]
            if h.count == 0:  # the patient clicks "unsubscribe" while the campaign runs
                suppress(rt.engine, rt.ledger, rt.keyring.lookup_hash(last), "unsubscribe")
            return None

        handler.on_data = on_first
        summary = await sending.send(rt, c.id, preflight=NO_GATES)
    finally:
        controller.stop()
    assert last not in {m.rcpt_tos[0] for m in handler.messages}
    assert summary.skipped == {"SPAM-5": 1} and summary.sent == len(handler.messages)
    who = contact_id_for(rt.engine, rt.keyring, last)
    assert statuses(rt, c.id)[who] == "skipped"
    skip = ledger_rows(rt, kind="skip", campaign_id=c.id, contact_id=who)
    assert len(skip) == 1 and skip[0].rule_ids == "SPAM-5"


async def test_an_authorization_that_expires_mid_campaign_blocks_later_sends(runtime_factory, certs, tmp_path: Path) -> None:
    """Rules §8 item 1: campaign runs Jun 30 - Jul 2; an authorization expires Jul 1 00:00."""
    handler, controller, port = _server(certs)
    now = [datetime(2026, 6, 30, 12, 0)]
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller), limits={"claim_batch": 1})
        _contacts(rt)
        _authorizations(rt, tmp_path, {A: "2026-07-01T00:00:00Z", B: "2026-07-01T00:00:00Z"})

        def next_day(h, session, envelope):  # type: ignore[no-untyped-def]
            now[0] = datetime(2026, 7, 1, 10, 0)  # the first message left on Jun 30; the rest go on Jul 1
            return None

        handler.on_data = next_day
        c, (a, b, cc), summary = await _run_scoped(rt, lambda: now[0])
    finally:
        controller.stop()
    assert [m.rcpt_tos[0] for m in handler.messages] == [A, C]
    st = statuses(rt, c.id)
    assert (st[a], st[b], st[cc]) == ("sent", "skipped", "sent")
    skip = ledger_rows(rt, kind="skip", campaign_id=c.id, contact_id=b)
    assert len(skip) == 1 and {"SEG-3", "AUTH-5"} <= set(skip[0].rule_ids.split(","))
    assert summary.skipped_total == 1


async def test_a_revocation_blocks_the_slots_after_it_and_earlier_sends_stand(runtime_factory, certs, tmp_path: Path) -> None:
    """Rules §8 item 2: scheduled Monday; revocation received Tuesday 10:00; slot Tuesday 11:00 -> AUTH-7."""
    handler, controller, port = _server(certs)
    monday, tuesday_11 = datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 24, 11, 0)
    now = [monday]
    try:
        rt = runtime_factory(as_sink(handler, port, certs, controller), limits={"claim_batch": 1})
        _contacts(rt)
        _authorizations(rt, tmp_path, {})
        for e in (A, B):
            revoke(rt.engine, rt.ledger, contact_id=contact_id_for(rt.engine, rt.keyring, e), scope=SCOPE,
                   at=datetime(2026, 11, 24, 10, 0))

        def tuesday(h, session, envelope):  # type: ignore[no-untyped-def]
            now[0] = tuesday_11
            return None

        handler.on_data = tuesday
        c, (a, b, cc), summary = await _run_scoped(rt, lambda: now[0])
    finally:
        controller.stop()
    assert [m.rcpt_tos[0] for m in handler.messages] == [A, C]
    st = statuses(rt, c.id)
    assert (st[a], st[b], st[cc]) == ("sent", "skipped", "sent")
    skip = ledger_rows(rt, kind="skip", campaign_id=c.id, contact_id=b)
    assert len(skip) == 1 and "AUTH-7" in skip[0].rule_ids.split(",")
    # Monday's message is reliance: a sent entry naming the authorization, no error
    sent_a = ledger_rows(rt, kind="send", campaign_id=c.id, contact_id=a)
    assert [r.outcome for r in sent_a] == ["sent"] and sent_a[0].authorization_id is not None


async def test_a_rendered_output_finding_skips_that_message_with_its_rule(runtime_factory, sink, tmp_path: Path) -> None:
    rt = runtime_factory(sink)
    _contacts(rt)
    c = newsletter(rt)
    camp = sending.get(rt, c.id)
    prepared = sending.prepare(rt, camp)
    plan = sending._plan(rt, camp, prepared)
    transport = rt.transport()
    sender = sending.make_sender(rt, c.id, transport=transport)
    sender.rendered_check = lambda rendered, values: ["PHI-2"] if "Kenji" in rendered.html else []
    try:
        summary = await sender.run(plan)
    finally:
        await transport.close()
    assert summary.skipped == {"PHI-2": 1}
    assert "kenji.evans1@example.com" not in {m.rcpt_tos[0] for m in sink.messages}
    rows = ledger_rows(rt, kind="skip", campaign_id=c.id)
    assert [r.rule_ids for r in rows] == ["PHI-2"]
    assert "Kenji" not in str(tuple(rows[0]))  # the rule, never the value
