"""Resume after a stop: only never-claimed rows go out; uncertain and failed rows need the operator."""

from __future__ import annotations

from sqlalchemy import update

from mailer import sending
from mailer.db import writing
from mailer.models import Delivery
from mailer.store import deliveries as dq
from tests.conftest import NO_GATES
from tests.test_send_support import ledger_rows, newsletter, parsed, statuses


def _claim_some(rt, campaign_id: int, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """As if a sender had claimed n rows and died before recording them."""
    got = dq.claim_batch(rt.engine, rt.ledger, campaign_id, 0, n, domain="riverside-imaging.example")
    return [c.delivery_id for c in got]


async def test_claimed_but_unrecorded_rows_become_uncertain_and_are_not_resent(sample_rt, sink) -> None:
    rt = sample_rt
    c = newsletter(rt)
    sending.prepare(rt, sending.get(rt, c.id))
    ghost = _claim_some(rt, c.id, 3)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.uncertain == 3
    counts = dq.counts(rt.engine, c.id)
    assert counts[dq.UNCERTAIN] == 3 and counts[dq.SENT] == summary.sent == len(sink.messages)
    assert len(ledger_rows(rt, kind="send", outcome="uncertain", campaign_id=c.id)) == 3
    # the operator decides: resend --uncertain sends those three, with their recorded Message-IDs
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        mids = {r.message_id for r in conn.execute(t.select().where(t.c.id.in_(ghost)))}
    before = len(sink.messages)
    again = await sending.send(rt, c.id, preflight=NO_GATES, statuses=(dq.UNCERTAIN,))
    assert again.sent == 3 and len(sink.messages) == before + 3
    assert {parsed(m.data)["Message-ID"] for m in sink.messages[before:]} == mids
    assert dq.counts(rt.engine, c.id) == {dq.SENT: summary.sent + 3}


async def test_retry_failed_resends_only_failed_rows(sample_rt, sink) -> None:
    rt = sample_rt
    c = newsletter(rt)
    victim = "rosa.evans5@example.com"
    sink.handler.reply[victim] = "554 5.7.1 rejected"
    first = await sending.send(rt, c.id, preflight=NO_GATES)
    assert first.failed == 1
    del sink.handler.reply[victim]
    before = len(sink.messages)
    again = await sending.send(rt, c.id, preflight=NO_GATES, statuses=(dq.FAILED,))
    assert again.sent == 1 and [m.rcpt_tos[0] for m in sink.messages[before:]] == [victim]
    assert set(statuses(rt, c.id).values()) == {dq.SENT}


async def test_a_paused_run_resumes_with_what_was_never_claimed(sample_rt, sink) -> None:
    rt = sample_rt
    c = newsletter(rt)
    sending.prepare(rt, sending.get(rt, c.id))
    t = Delivery.__table__
    with writing(rt.engine) as conn:  # half the audience already went out in an earlier run
        ids = [r.id for r in conn.execute(t.select().where(t.c.campaign_id == c.id).order_by(t.c.id))]
        conn.execute(update(t).where(t.c.id.in_(ids[: len(ids) // 2])).values(status=dq.SENT))
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.sent == len(ids) - len(ids) // 2 == len(sink.messages)


def test_two_senders_claiming_the_same_rows_each_get_a_row_once(sample_rt) -> None:
    """Two senders read the same page; the second one's claim takes only what the first left
    (SEND-1: one message per recipient), and only claimed rows get an unsubscribe token."""
    from mailer.crypto import new_token
    from mailer.models import UnsubscribeToken

    rt = sample_rt
    c = newsletter(rt)
    sending.prepare(rt, sending.get(rt, c.id))
    rows = dq.send_page(rt.engine, c.id, 0, after=0, n=6)

    def ahead(part: list[dq.SendRow], tag: str) -> list[dq.Claimed]:
        return [dq.Claimed(r.delivery_id, r.contact_id, r.authorization_id, f"<{tag}.{r.delivery_id}@x>", new_token(),
                           1, r.contact.email_hash) for r in part]

    first = dq.commit_cycle(rt.engine, rt.ledger, claims=ahead(rows[:4], "a"), campaign_id=c.id)
    second = dq.commit_cycle(rt.engine, rt.ledger, claims=ahead(rows[2:], "b"), campaign_id=c.id)
    ids = [r.delivery_id for r in rows]
    assert first == set(ids[:4]) and second == set(ids[4:])
    t = Delivery.__table__
    with rt.engine.connect() as conn:
        mids = dict(conn.execute(t.select().with_only_columns(t.c.id, t.c.message_id).where(t.c.id.in_(ids))).all())
        tokens = conn.execute(UnsubscribeToken.__table__.select()).all()
    assert all(mids[i].startswith("<a.") for i in ids[:4]) and all(mids[i].startswith("<b.") for i in ids[4:])
    assert len(tokens) == 6  # one per claimed row, none for the two the second sender lost
