"""An operator's pause stops a run that is already sending; nothing is lost or sent twice."""

from __future__ import annotations

from mailer import scheduler, sending
from mailer.store import deliveries as dq
from mailer.transport import MemoryTransport, SendResult
from tests.conftest import NO_GATES
from tests.helpers_workflow import approved


class PausingTransport(MemoryTransport):
    """Delivers normally; after `after` messages, an operator pauses the campaign."""

    def __init__(self, rt, campaign_id: int, after: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(connections=1)
        self.rt, self.campaign_id, self.after = rt, campaign_id, after

    async def send(self, message, /) -> SendResult:  # type: ignore[no-untyped-def]
        result = await super().send(message)
        if len(self.sent) == self.after:
            scheduler.pause(self.rt, self.campaign_id, actor="operator", reason="wrong date in the text")
        return result


async def test_pause_during_a_run_stops_further_messages(sample_rt) -> None:
    c = approved(sample_rt)
    transport = PausingTransport(sample_rt, c.id, after=5)
    summary = await sending.send(sample_rt, c.id, transport=transport, preflight=NO_GATES)
    counts = dq.counts(sample_rt.engine, c.id)
    total = sum(counts.values())
    assert summary.paused and "operator" in summary.paused
    assert 5 <= summary.sent < total  # stopped early: at most the in-flight window after the pause
    assert counts.get("sent", 0) == summary.sent == len(transport.sent)
    assert counts.get("pending", 0) == total - summary.sent - counts.get("skipped", 0)  # the rest waits
    assert counts.get("claimed", 0) == 0
    from mailer.campaigns import get

    assert get(sample_rt, c.id).status == "paused"
