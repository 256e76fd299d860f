"""Bounce and complaint rates of a campaign, over all its runs (STD-7: 0.3% stops sending)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from mailer.bounces.models import BounceEvent
from mailer.models import Delivery

_E = BounceEvent.__table__  # type: ignore[attr-defined]
_D = Delivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Rates:
    campaign_id: int
    sent: int
    hard: int
    soft: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        return (self.hard + self.soft) / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"sent": self.sent, "hard_bounces": self.hard, "soft_bounces": self.soft,
                "complaints": self.complaints, "bounce_rate": round(self.bounce_rate, 6),
                "complaint_rate": round(self.complaint_rate, 6)}


def campaign_rates(engine: Engine, campaign_id: int) -> Rates:
    with engine.connect() as conn:
        sent = conn.execute(select(func.count()).select_from(_D).where(
            _D.c.campaign_id == campaign_id, _D.c.status == "sent")).scalar_one()
        by: dict[str, int] = {k: n for k, n in conn.execute(
            select(_E.c.klass, func.count()).where(_E.c.campaign_id == campaign_id).group_by(_E.c.klass))}
    return Rates(campaign_id, int(sent), int(by.get("hard", 0)), int(by.get("soft", 0)), int(by.get("complaint", 0)))
