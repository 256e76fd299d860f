"""Property (hypothesis), through the real store: for random contacts imported from CSV,
random authorizations (scopes, expiry, revocation, signing time,
missing elements, defects, remuneration and sponsor), random suppressions and random
condition segments, `store.audience.members` never returns a contact without a valid
authorization for the segment's scope at the evaluation time (SEG-2, SEG-5), never a
suppressed one, and never decrypts a clinical field of such a contact (decryptions are
counted on the keyring, by the AAD that binds each ciphertext to its contact).

The validity oracle here is written independently of `mailer.authorizations`: each
generated record is valid by construction or carries exactly the flaws it was given.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from mailer.config import FieldSettings
from mailer.models import Authorization, Contact, Suppression
from mailer.runtime import Runtime
from mailer.segments import (
    AllOf,
    AnyOf,
    Condition,
    Evaluator,
    Node,
    Not,
    Segment,
    iter_conditions,
    matches,
    plan_segment,
)
from mailer.store import audience
from mailer.store.auth_records import import_authorizations
from mailer.store.contacts import import_contacts
from mailer.store.suppressions import suppress

FIELDS = FieldSettings()
CLINICAL = frozenset(FIELDS.clinical)
WORDS = ("osteoporosis", "osteopenia", "asthma", "diabetes", "dexa", "mammogram")
LANGUAGES = ("en", "es", "fr")
SPONSOR = "Acme Pharma"

# --------------------------------------------------------------------------- segments

days = st.dates(min_value=date(2020, 1, 1), max_value=date(2027, 12, 31))
word_sets = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3, unique=True).map(tuple)
clinical_conditions = st.one_of(
    st.builds(Condition, st.sampled_from(["conditions", "procedures"]), st.just("contains"),
              st.sampled_from(WORDS + ("DEXA", "Osteoporosis"))),
    st.builds(Condition, st.sampled_from(["conditions", "procedures"]), st.just("in"), word_sets),
    st.builds(Condition, st.sampled_from(sorted(CLINICAL)), st.just("exists"), st.booleans()),
    st.builds(Condition, st.just("last_exam_date"), st.sampled_from(["before", "after", "equals"]), days),
    st.builds(Condition, st.just("last_exam_date"), st.just("within"),
              st.integers(1, 1500).map(lambda n: timedelta(days=n))),
)
plain_conditions = st.one_of(
    st.builds(Condition, st.just("newsletter_opt_in"), st.just("equals"), st.booleans()),
    st.builds(Condition, st.just("language"), st.just("equals"), st.sampled_from(LANGUAGES + ("EN",))),
    st.builds(Condition, st.just("language"), st.just("in"),
              st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=2, unique=True).map(tuple)),
)
trees: st.SearchStrategy[Node] = st.recursive(
    clinical_conditions | plain_conditions,
    lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=3).map(lambda c: AllOf(tuple(c))),
        st.lists(kids, min_size=1, max_size=3).map(lambda c: AnyOf(tuple(c))),
        kids.map(Not),
    ),
    max_leaves=6,
)


def _uses_clinical(node: Node) -> bool:
    return any(c.field in CLINICAL for c in iter_conditions(node))


clinical_trees = trees.filter(_uses_clinical)


@st.composite
def condition_segments(draw: st.DrawFn) -> Segment:
    scope = draw(st.sampled_from(["condition-targeted-marketing", "marketing", "third-party-marketing"]))
    match = draw(st.one_of(
        clinical_trees,
        st.builds(lambda p, c: AllOf((*p, c)), st.lists(plain_conditions, min_size=1, max_size=2), clinical_trees),
    ))
    return Segment(name="prop", description="", scope=scope,
                   third_party=SPONSOR if scope == "third-party-marketing" else None, match=match,
                   source_path="<property>", content_hash="0" * 64, declared_clinical=CLINICAL)


# --------------------------------------------------------------------------- authorizations

#: Offsets from the evaluation time, with both sides of each boundary.
OFFSETS = (timedelta(days=-400), timedelta(days=-1), timedelta(seconds=-1), timedelta(0),
           timedelta(seconds=1), timedelta(days=1), timedelta(days=400))
#: One flaw at most per record: the CSV column and the value that makes the record invalid.
FLAWS: tuple[tuple[str, str] | None, ...] = (
    None, None, None,
    ("statement_redisclosure", "false"), ("statement_revocation", "false"), ("copy_provided", "false"),
    ("signature_present", "false"), ("plain_language", "false"), ("purpose", ""), ("discloser", ""),
    ("compound", "true"), ("treatment_conditioned", "true"), ("known_false", "true"),
    ("signer", "representative"), ("expiration_event", "end of study"),
)
SCOPES = ("condition-targeted-marketing", "marketing", "third-party-marketing", "testimonial")
AUTH_COLUMNS = (
    "email", "scope", "information_description", "discloser", "recipients", "purpose", "expires_at",
    "expiration_event", "signed_at", "signature_present", "statement_revocation", "statement_conditioning",
    "statement_redisclosure", "plain_language", "copy_provided", "signer", "representative_authority",
    "compound", "treatment_conditioned", "known_false", "remuneration", "remuneration_statement",
    "third_party", "revoked_at", "document_sha256",
)


@dataclass(frozen=True)
class AuthSpec:
    scope: str
    expires: timedelta  # relative to the evaluation time
    revoked: timedelta | None
    signed: timedelta
    flaw: tuple[str, str] | None
    remuneration: bool
    statement: bool
    sponsor: str | None

    def valid_for(self, scope: str, third_party: str | None) -> bool:
        if self.scope != scope or self.flaw is not None:
            return False
        if self.expires <= timedelta(0) or self.signed > timedelta(0):
            return False
        if self.revoked is not None and self.revoked <= timedelta(0):
            return False
        if third_party is not None:
            return self.remuneration and self.statement and (self.sponsor or "").casefold() == third_party.casefold()
        return True

    def row(self, email: str, at: datetime, document: str) -> dict[str, str]:
        def t(offset: timedelta) -> str:
            return (at + offset).isoformat()

        rec = {
            "email": email, "scope": self.scope,
            "information_description": "diagnoses and procedures", "discloser": "Riverside Imaging Center",
            "recipients": "Riverside Imaging Center and its email service provider", "purpose": "tailored email",
            "expires_at": t(self.expires), "expiration_event": "", "signed_at": t(self.signed),
            "signature_present": "true", "statement_revocation": "true", "statement_conditioning": "true",
            "statement_redisclosure": "true", "plain_language": "true", "copy_provided": "true", "signer": "patient",
            "representative_authority": "", "compound": "false", "treatment_conditioned": "false",
            "known_false": "false", "remuneration": str(self.remuneration).lower(),
            "remuneration_statement": str(self.statement).lower(), "third_party": self.sponsor or "",
            "revoked_at": t(self.revoked) if self.revoked is not None else "",
            "document_sha256": hashlib.sha256(document.encode()).hexdigest(),
        }
        if self.flaw is not None:
            rec[self.flaw[0]] = self.flaw[1]
        return rec


def auth_specs(scope: str) -> st.SearchStrategy[AuthSpec]:
    """Half valid for the segment by construction (with boundary times), half anything,
    biased towards the segment's scope, so most examples mix authorized and unauthorized
    contacts."""
    after = (timedelta(seconds=1), timedelta(days=1), timedelta(days=400))
    valid = st.builds(
        AuthSpec,
        scope=st.just(scope),
        expires=st.sampled_from(after),
        revoked=st.none() | st.sampled_from(after),
        signed=st.sampled_from((timedelta(days=-30), timedelta(seconds=-1), timedelta(0))),
        flaw=st.none(),
        remuneration=st.just(True),
        statement=st.just(True),
        sponsor=st.sampled_from([SPONSOR, "acme pharma"]),
    )
    return valid | st.builds(
        AuthSpec,
        scope=st.sampled_from((scope, scope, scope, *SCOPES)),
        expires=st.sampled_from((*OFFSETS, timedelta(days=400), timedelta(days=400))),
        revoked=st.none() | st.none() | st.sampled_from(OFFSETS),
        signed=st.sampled_from((timedelta(days=-30), timedelta(days=-30), timedelta(seconds=-1), timedelta(0),
                                timedelta(seconds=1))),
        flaw=st.sampled_from(FLAWS) | st.none(),
        remuneration=st.booleans() | st.just(True),
        statement=st.booleans() | st.just(True),
        sponsor=st.sampled_from([None, SPONSOR, SPONSOR, "acme pharma", "Other Co"]),
    )


# --------------------------------------------------------------------------- contacts


@dataclass(frozen=True)
class Person:
    language: str
    opt_in: bool
    conditions: tuple[str, ...]
    procedures: tuple[str, ...]
    last_exam: date | None
    auths: tuple[AuthSpec, ...]
    suppressed: bool

    def values(self) -> dict[str, Any]:
        """What the store holds after import: non-PHI columns plus the clinical JSON."""
        return {
            "language": self.language, "newsletter_opt_in": self.opt_in,
            "conditions": list(self.conditions), "procedures": list(self.procedures),
            "last_exam_date": self.last_exam.isoformat() if self.last_exam else None,
        }


def people(scope: str) -> st.SearchStrategy[Person]:
    return st.builds(
        Person,
        language=st.sampled_from(LANGUAGES),
        opt_in=st.booleans(),
        conditions=st.lists(st.sampled_from(WORDS), max_size=3, unique=True).map(tuple),
        procedures=st.lists(st.sampled_from(WORDS), max_size=2, unique=True).map(tuple),
        last_exam=st.none() | days,
        auths=st.lists(auth_specs(scope), max_size=3).map(tuple),
        suppressed=st.booleans(),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Segment, list[Person]]:
    seg = draw(condition_segments())
    return seg, draw(st.lists(people(seg.scope or ""), min_size=1, max_size=14))


def email(i: int) -> str:
    return f"patient{i}@example.com"


def load(rt: Runtime, tmp: Path, persons: list[Person], at: datetime) -> None:
    """Replace the store's contacts, authorizations and suppressions with these, through
    the store's own importers."""
    with rt.engine.begin() as conn:
        for table in (Authorization, Suppression, Contact):
            conn.execute(delete(table.__table__))  # type: ignore[attr-defined]
    contacts_csv, auths_csv = tmp / "contacts.csv", tmp / "authorizations.csv"
    with contacts_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "first_name", "last_name", "language", "newsletter_opt_in",
                    "conditions", "procedures", "last_exam_date"])
        for i, p in enumerate(persons):
            w.writerow([email(i), "Pat", "Doe", p.language, str(p.opt_in).lower(), ";".join(p.conditions),
                        ";".join(p.procedures), p.last_exam.isoformat() if p.last_exam else ""])
    import_contacts(rt.engine, rt.keyring, rt.ledger, contacts_csv, dict(FIELDS.clinical))
    with auths_csv.open("w", newline="") as fh:
        dw = csv.DictWriter(fh, fieldnames=AUTH_COLUMNS)
        dw.writeheader()
        for i, p in enumerate(persons):
            for n, spec in enumerate(p.auths):  # each record is its own signed document
                dw.writerow(spec.row(email(i), at, f"{i}/{n}"))
    import_authorizations(rt.engine, rt.keyring, rt.ledger, auths_csv)
    for i, p in enumerate(persons):
        if p.suppressed:
            suppress(rt.engine, rt.ledger, rt.keyring.lookup_hash(email(i)), "unsubscribe")


# --------------------------------------------------------------------------- the property


class Store:
    """Holds the runtime with an opaque repr: hypothesis prints a failing example's
    arguments field by field, which would bypass Keyring.__repr__ and print test keys."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def __repr__(self) -> str:
        return "<store>"


@pytest.fixture
def store(runtime_factory: Any) -> Store:
    return Store(runtime_factory())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    scenario=scenarios(),
    at=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 6, 30)).map(
        lambda t: t.replace(microsecond=0)),
    page=st.sampled_from([1, 3, 1000]),
)
def test_no_unauthorized_contact_is_returned_or_decrypted(
    store: Store, tmp_path: Path, scenario: tuple[Segment, list[Person]], at: datetime, page: int
) -> None:
    rt, (seg, persons) = store.rt, scenario
    load(rt, tmp_path, persons, at)
    plan = plan_segment(seg)
    assert plan.refusals == () and plan.requires_authorization and plan.clinical_filter is not None
    with rt.engine.connect() as conn:
        ids = conn.execute(select(Contact.__table__.c.email_hash, Contact.__table__.c.id)).tuples().all()  # type: ignore[attr-defined]
    by_hash = dict(ids)
    index_of = {by_hash[rt.keyring.lookup_hash(email(i))]: i for i in range(len(persons))}  # id -> i

    decrypted: Counter[str] = Counter()
    original = rt.keyring.decrypt

    def spy(blob: bytes, aad: bytes) -> bytes:
        _, kind, email_hash = aad.decode().split(":", 2)
        decrypted[kind] += 1
        if kind == "phi":
            decrypted[f"contact:{index_of[by_hash[email_hash]]}"] += 1
        return original(blob, aad)

    ev = Evaluator(plan, at)
    rt.keyring.decrypt = spy  # type: ignore[method-assign]
    try:
        result = list(audience.members(rt.engine, rt.keyring, plan, at, page=page, evaluator=ev))
    finally:
        del rt.keyring.decrypt

    included = {index_of[cid] for cid, _ in result}
    assert decrypted["email"] == decrypted["identity"] == 0
    for i, p in enumerate(persons):
        authorized = any(a.valid_for(seg.scope or "", seg.third_party) for a in p.auths)
        selected = plan.sql_filter is None or matches(plan.sql_filter, p.values(), at)
        if not authorized or p.suppressed:
            assert i not in included, "SEG-2/SEG-5/suppression: a contact without a valid authorization matched"
            assert decrypted[f"contact:{i}"] == 0, "SEG-2: a clinical field was decrypted without authorization"
        else:
            assert decrypted[f"contact:{i}"] == (1 if selected else 0)
            assert (i in included) is matches(seg.match, p.values(), at)
    # the authorization recorded with each member is one of its own
    with rt.engine.connect() as conn:
        owner = dict(conn.execute(select(Authorization.__table__.c.id, Authorization.__table__.c.contact_id)).tuples().all())  # type: ignore[attr-defined]
    assert all(owner[a] == cid for cid, a in result)
    event(f"members: {'some' if result else 'none'}; authorized not matching: {'some' if ev.counts.unmatched else 'none'}")
    c = ev.counts
    assert c.considered == c.suppressed + sum(c.excluded_no_authorization.values()) + c.matched + c.unmatched
    assert c.matched == len(result) == len(included)
