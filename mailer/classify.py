"""Purpose classification: the HIPAA class (MKT-1..MKT-7) and the CAN-SPAM class (SPAM-0), apart.

Pure functions, no I/O. A campaign's declared purpose is only a starting point (DIS-1):
the facts (who pays, whose product, a prescription's state, what the subject says) decide.
The two classes are computed separately: a message can be HIPAA-exempt and still be
commercial under CAN-SPAM (rules.md, conventions).

    HIPAA:    "marketing" -> each recipient needs a valid authorization for `scope` (MKT-5)
              "exempt"    -> an MKT-2 exception holds (named in `exception`)
              "not-marketing" -> does not encourage buying or using anything (MKT-1 fails)
    CAN-SPAM: commercial True/False (SPAM-0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from mailer.refusal import Refusal

MARKETING = "marketing"
EXEMPT = "exempt"
NOT_MARKETING = "not-marketing"

REFILL_LAPSE_DAYS = 90  # MKT-2a: a prescription lapsed <= 90 days still counts

#: own-service kinds that are not health-related (MKT-2c does not cover them)
NON_HEALTH_SERVICES = frozenset({"parking", "gift-shop", "cafeteria", "retail", "non-health"})


@dataclass(frozen=True)
class Refill:
    """MKT-2a facts: a drug or biologic currently (or recently) prescribed to the recipient."""

    lapsed_days: int = 0  # 0 = current prescription
    new_formulation: bool = False
    payment: Decimal = Decimal(0)  # paid by the third party for this communication
    cost: Decimal = Decimal(0)  # the covered entity's cost of making and sending it


@dataclass(frozen=True)
class Communication:
    """What a message is about, as facts. Built from a campaign by `from_campaign`."""

    purpose: str
    promotes: bool = True  # encourages buying or using a product or service (MKT-1)
    own_service: bool = True  # the covered entity's own product or service
    service_kind: str = "health"  # "health", or a NON_HEALTH_SERVICES kind (parking, gift-shop)
    treatment: bool = False  # treatment by a provider, care coordination (MKT-2b, MKT-2d)
    refill: Refill | None = None  # MKT-2a
    targets_condition: bool = False  # selected by clinical fields (SEG-1)
    third_party: str | None = None  # whose product is described / who pays
    remuneration: bool = False  # any direct or indirect payment from, or for, the third party (MKT-3)
    remuneration_stated: bool = False  # the campaign declares the payment (MKT-6)
    discloses_list: bool = False  # recipient data goes to someone for remuneration (MKT-7)
    claims_face_to_face: bool = False  # MKT-4: never possible by email
    nominal_gift: bool = False  # MKT-4: needs a named approver (WARN)
    transactional: bool = False  # appointment reminders and other relationship messages
    subject_promotional: bool = False  # SPAM-0
    transactional_leads: bool = True  # SPAM-0: transactional content leads the body


@dataclass(frozen=True)
class Classification:
    hipaa: str  # marketing | exempt | not-marketing
    exception: str | None  # the MKT-2 exception that holds, e.g. "MKT-2c"
    commercial: bool  # CAN-SPAM (SPAM-0)
    scope: str | None  # authorization scope every recipient needs (MKT-5), None if none
    remuneration_statement: bool  # each authorization must state remuneration (MKT-6, MKT-7)
    rules: tuple[str, ...]  # the rule IDs that decided, in order
    refusals: tuple[Refusal, ...] = ()
    warnings: tuple[Refusal, ...] = ()  # WARN: a named approver signs off (rules.md conventions)
    reasons: tuple[str, ...] = field(default=())

    @property
    def needs_authorization(self) -> bool:
        return self.scope is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "hipaa": self.hipaa, "exception": self.exception, "commercial": self.commercial,
            "scope": self.scope, "remuneration_statement": self.remuneration_statement,
            "rules": list(self.rules), "reasons": list(self.reasons),
            "refusals": [r.as_dict() for r in self.refusals],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def _refill_exception(r: Refill) -> tuple[bool, str]:
    """MKT-2a: currently prescribed (or lapsed <= 90 days), no new formulation, payment <= cost."""
    if r.new_formulation:
        return False, "a new formulation is not covered by the refill exception (MKT-2a)"
    if r.lapsed_days > REFILL_LAPSE_DAYS:
        return False, f"prescription lapsed more than {REFILL_LAPSE_DAYS} days (MKT-2a)"
    if r.payment > r.cost:
        return False, "payment exceeds the cost of the communication (MKT-2a)"
    return True, "refill reminder for a drug currently prescribed (MKT-2a)"


def _commercial(c: Communication) -> tuple[bool, str]:
    """SPAM-0: promotional subject, or transactional content that does not lead the body."""
    if c.subject_promotional:
        return True, "subject suggests promotion (SPAM-0)"
    if c.transactional and c.transactional_leads and not c.third_party:
        return False, "transactional or relationship content leads (SPAM-0)"
    if c.transactional:
        return True, "transactional content does not lead the body (SPAM-0)"
    return c.promotes, "promotes a product or service (SPAM-0)" if c.promotes else "informational (SPAM-0)"


def classify(c: Communication, /) -> Classification:
    """Decide the HIPAA class, the exception, the scope each recipient needs, and SPAM-0."""
    rules: list[str] = []
    reasons: list[str] = []
    refusals: list[Refusal] = []
    warnings: list[Refusal] = []
    commercial, why = _commercial(c)
    reasons.append(why)

    hipaa, exception = NOT_MARKETING, None
    if c.promotes or c.targets_condition or c.third_party or c.remuneration:
        hipaa = MARKETING
        rules.append("MKT-1")
        if c.remuneration:
            rules.append("MKT-3")
            reasons.append("a third party pays: MKT-2b..2d cannot apply (MKT-3)")
        if c.refill is not None:
            ok, why = _refill_exception(c.refill)
            reasons.append(why)
            if ok:
                hipaa, exception = EXEMPT, "MKT-2a"
        elif c.targets_condition:
            # mailer is stricter than the law here (SEG-1): targeting on clinical fields
            # always relies on a condition-targeted-marketing authorization.
            reasons.append("selected by clinical fields: condition-based targeting (SEG-1)")
        elif not c.remuneration and not c.third_party:
            if c.treatment:
                hipaa, exception = EXEMPT, "MKT-2b"
                reasons.append("treatment or care coordination by a provider (MKT-2b)")
            elif c.own_service and c.service_kind == "health":
                hipaa, exception = EXEMPT, "MKT-2c"
                reasons.append("the covered entity's own health-related service (MKT-2c)")
            elif c.own_service:
                reasons.append(f"own but not health-related ({c.service_kind}): MKT-2c does not apply")
    elif c.transactional:
        reasons.append("appointment reminder or other treatment communication: not marketing")
    if exception:
        rules.append(exception)

    if c.claims_face_to_face:
        rules.append("MKT-4")
        refusals.append(Refusal("MKT-4", "email cannot claim the face-to-face exception",
                                "drop the face-to-face claim; rely on an authorization instead"))
    if c.nominal_gift:
        rules.append("MKT-4")
        warnings.append(Refusal("MKT-4", "nominal-gift exception claimed",
                                "a named approver must sign off (recorded with the approval)"))

    scope: str | None = None
    statement = False
    if hipaa == MARKETING:
        rules.append("MKT-5")
        paid = c.remuneration or c.third_party is not None
        scope = ("third-party-marketing" if paid else
                 "condition-targeted-marketing" if c.targets_condition else "marketing")
        if paid:
            statement = True
            rules.append("MKT-6")
            if not c.third_party:
                refusals.append(Refusal("MKT-3", "a paid campaign does not name the third party",
                                        "set the campaign's third party (campaign create --third-party NAME)"))
            if not c.remuneration_stated:
                refusals.append(Refusal("MKT-6", "a paid campaign does not state the remuneration",
                                        "declare the payment: third-party marketing with a sponsor named in the "
                                        "template (sponsor = ...) and authorizations that state remuneration"))
    if c.discloses_list:
        rules.append("MKT-7")
        statement = True
        scope = scope or "third-party-marketing"
        reasons.append("recipient data disclosed for remuneration is a sale of PHI (MKT-7)")
    return Classification(hipaa=hipaa, exception=exception, commercial=commercial, scope=scope,
                          remuneration_statement=statement, rules=tuple(dict.fromkeys(rules)),
                          refusals=tuple(refusals), warnings=tuple(warnings), reasons=tuple(reasons))


def from_campaign(purpose: str, *, third_party: str | None = None, segment_scope: str | None = None,
                  targets_condition: bool = False, sponsor: str | None = None,
                  subject_promotional: bool = False) -> Communication:
    """The facts a campaign record states, by declared purpose; the segment's own targeting
    counts whatever the label says (DIS-1)."""
    paid = purpose == "third-party-marketing" or bool(third_party)
    base = Communication(
        purpose=purpose, targets_condition=targets_condition or purpose == "condition-targeted-marketing",
        third_party=third_party, remuneration=paid,
        # stated when the campaign names the sponsor and the template carries it (DIS-3)
        remuneration_stated=paid and bool(third_party) and (sponsor or "").strip().lower() == (third_party or "").strip().lower(),
        subject_promotional=subject_promotional,
    )
    if purpose == "health-education":
        return _replace(base, promotes=False)
    if purpose == "appointment-reminder":
        return _replace(base, promotes=False, transactional=True, treatment=True)
    if purpose == "third-party-marketing":
        return _replace(base, own_service=False)
    return base  # newsletter, service-announcement, condition-targeted-marketing: own services


def _replace(c: Communication, **changes: object) -> Communication:
    from dataclasses import replace

    return replace(c, **changes)  # type: ignore[arg-type]


def scope_refusals(cls: Classification, *, segment_scope: str | None, segment_third_party: str | None,
                   campaign_third_party: str | None) -> list[Refusal]:
    """The segment must rely on the scope the classification requires (MKT-5, SEG-5)."""
    out: list[Refusal] = []
    if cls.scope and segment_scope != cls.scope:
        out.append(Refusal("MKT-5", f"this campaign is marketing and needs every recipient's '{cls.scope}' "
                           f"authorization, but the segment relies on {segment_scope or 'none'}",
                           f'set authorization_scope = "{cls.scope}" in the segment file'))
    if cls.scope == "third-party-marketing" and campaign_third_party and segment_third_party and \
            segment_third_party.strip().lower() != campaign_third_party.strip().lower():
        out.append(Refusal("SEG-5", "the segment's third party differs from the campaign's",
                           "name the same third party in the segment file and the campaign"))
    return out
