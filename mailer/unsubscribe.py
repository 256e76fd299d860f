"""One-click unsubscribe: token resolution, the opt-out itself, and header checks (STD-3, SPAM-4..6, PHI-6).

Tokens are random (128 bits, `crypto.new_token`), made per message when it is claimed,
and stored only as their SHA-256 (`UnsubscribeToken`); nothing about the address can be
derived from one. A token keeps working `unsubscribe.token_days` (>= 30, SPAM-4) after
its message. Suppression is by the address's lookup HMAC and is checked by the sender
for every message at send time, so an opt-out stops the rest of a running campaign.

The checks at the end (`list_unsubscribe_refusals`, `dkim_refusals`, `optout_page_refusals`)
are pure and serve the acceptance tests of rules §8 items 12 and 15.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

from sqlalchemy import Engine, select, update

from mailer.crypto import token_hash
from mailer.db import writing
from mailer.ledger import UNSUBSCRIBE, Event, Ledger
from mailer.models import UnsubscribeToken, utcnow
from mailer.refusal import Refusal
from mailer.store.suppressions import suppress_in, suppressed_among

_TOK = UnsubscribeToken.__table__  # type: ignore[attr-defined]
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"  # RFC 8058 §3.1, exactly
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


@dataclass(frozen=True)
class TokenRecord:
    token_hash: str
    email_hash: str
    contact_id: int | None
    campaign_id: int | None
    created_at: datetime
    used_at: datetime | None


def resolve(engine: Engine, token: str, /, *, at: datetime, token_days: int) -> TokenRecord | None:
    """The record behind a token, or None if unknown or older than `token_days` (no detail why)."""
    if not _TOKEN_SHAPE.match(token):
        return None
    with engine.connect() as conn:
        row = conn.execute(select(_TOK).where(_TOK.c.token_hash == token_hash(token))).first()
    if row is None or row.created_at < at - timedelta(days=token_days):
        return None
    return TokenRecord(row.token_hash, row.email_hash, row.contact_id, row.campaign_id, row.created_at, row.used_at)


@dataclass(frozen=True)
class OptOut:
    newly_suppressed: bool
    campaign_id: int | None
    already: bool = False  # the token was used before: nothing done, nothing recorded


def one_click(engine: Engine, ledger: Ledger, record: TokenRecord, /, *, at: datetime | None = None,
              via: str = "one-click") -> OptOut:
    """Suppress the token's address now (SPAM-5: immediate) and write the ledger entry.

    A token is used once: marking it used, suppressing and the ledger entry commit together,
    and a replayed POST (the same token again, even at the same moment) finds it used and
    changes nothing, so a thousand replays are one unsubscribe in the ledger."""
    at = at or utcnow()
    with writing(engine) as conn:
        first = conn.execute(update(_TOK).where(_TOK.c.token_hash == record.token_hash, _TOK.c.used_at.is_(None))
                             .values(used_at=at)).rowcount
        if not first:
            return OptOut(False, record.campaign_id, already=True)
        added = suppress_in(conn, [{"email_hash": record.email_hash, "reason": "unsubscribe",
                                    "campaign_id": record.campaign_id, "at": at}]) > 0
        ledger.append_in(conn, [Event(kind=UNSUBSCRIBE, outcome="unsubscribe", contact_id=record.contact_id,
                                      campaign_id=record.campaign_id, recipient_hash=record.email_hash,
                                      actor=f"recipient:{via}", rule_ids=("SPAM-5", "STD-3"),
                                      detail={"new": added})])
    return OptOut(added, record.campaign_id)


def is_unsubscribed(engine: Engine, record: TokenRecord, /) -> bool:
    """The token was used, or its address is suppressed (by another message's link, say)."""
    return record.used_at is not None or bool(suppressed_among(engine, [record.email_hash]))


# --------------------------------------------------------------------------- header checks


def _items(value: str) -> list[str] | None:
    """RFC 2369: a comma-separated list of <URI>; None when the syntax is wrong."""
    parts = [p.strip() for p in value.split(",")]
    if not parts or any(not (p.startswith("<") and p.endswith(">") and len(p) > 2) for p in parts):
        return None
    return [p[1:-1].strip() for p in parts]


def list_unsubscribe_refusals(headers: Sequence[tuple[str, str]], /) -> list[Refusal]:
    """STD-2 / STD-3 on a message's headers (name, value pairs, in order)."""
    lu = [v for k, v in headers if k.lower() == "list-unsubscribe"]
    post = [v for k, v in headers if k.lower() == "list-unsubscribe-post"]
    out: list[Refusal] = []
    if len(lu) != 1:
        out.append(Refusal("STD-2", f"{len(lu)} List-Unsubscribe headers; exactly one is required",
                           "emit one List-Unsubscribe header"))
        if not lu:
            return out
    uris = _items(" ".join(lu[0].split()))
    if uris is None:
        out.append(Refusal("STD-2", "List-Unsubscribe is not a list of <URI> items", "write <https://...>, <mailto:...>"))
        return out
    https = [u for u in uris if urlsplit(u).scheme.lower() == "https"]
    others = [u for u in uris if urlsplit(u).scheme.lower() not in ("https", "mailto")]
    if len(https) != 1:
        out.append(Refusal("STD-3", f"List-Unsubscribe has {len(https)} https URI(s); exactly one is required",
                           "one https one-click URI (a mailto is optional)"))
    if others:
        out.append(Refusal("STD-3", "List-Unsubscribe has a URI that is neither https nor mailto",
                           "remove http: and other schemes"))
    if len(post) != 1 or post[0].strip() != ONE_CLICK_BODY:
        out.append(Refusal("STD-3", "List-Unsubscribe-Post is missing, repeated or not exactly "
                           f"'{ONE_CLICK_BODY}'", f"List-Unsubscribe-Post: {ONE_CLICK_BODY}"))
    return out


def dkim_refusals(headers: Sequence[tuple[str, str]], /) -> list[Refusal]:
    """STD-4: a DKIM signature whose h= covers both List-Unsubscribe headers."""
    sigs = [v for k, v in headers if k.lower() == "dkim-signature"]
    if not sigs:
        return [Refusal("STD-4", "no DKIM signature", "create keys with `mailer keys add-dkim`, publish what `mailer dkim` prints, set dkim.enabled = true")]
    for sig in sigs:
        tags = {}
        for part in "".join(sig.split()).split(";"):
            if "=" in part:
                k, _, v = part.partition("=")
                tags[k.strip().lower()] = v
        signed = {h.strip().lower() for h in tags.get("h", "").split(":")}
        if {"list-unsubscribe", "list-unsubscribe-post"} <= signed:
            return []
    return [Refusal("STD-4", "the DKIM signature's h= does not include both List-Unsubscribe and "
                    "List-Unsubscribe-Post", "sign both headers (RFC 8058 §4)")]


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[Mapping[str, str | None]] = []
        self.forms = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self.forms += 1
        if tag in ("input", "select", "textarea"):
            self.inputs.append({"tag": tag, **dict(attrs)})


_LOGIN = re.compile(r"\b(log ?in|sign ?in|password)\b", re.I)


def optout_page_refusals(html: str, /) -> list[Refusal]:
    """SPAM-6: the opt-out page asks for nothing but the click (no login, no extra data)."""
    p = _Inputs()
    p.feed(html)
    out: list[Refusal] = []
    asks = [i for i in p.inputs if i["tag"] != "input" or (i.get("type") or "text").lower() not in ("hidden", "submit")]
    if asks:
        out.append(Refusal("SPAM-6", f"the opt-out page asks for {len(asks)} field(s) beyond the click",
                           "one button; no phone, address, reason or other data"))
    if any((i.get("type") or "").lower() == "password" for i in p.inputs) or _LOGIN.search(html):
        out.append(Refusal("SPAM-6", "the opt-out page asks for a login", "no login or account for opting out"))
    if p.forms > 1:
        out.append(Refusal("SPAM-6", "the opt-out takes more than one form", "at most one web page, one click"))
    return out
