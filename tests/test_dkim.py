"""STD-4: DKIM signatures over the RFC 8058 headers, checked with dkimpy's verifier (an independent implementation)."""

from __future__ import annotations

import base64
import sys
import types
from typing import Any

import dkim
import pytest

from mailer import sending
from mailer.dkim import DKIMSigner, dns_record, generate_key, make_signer
from mailer.errors import ConfigError
from tests.conftest import NO_GATES
from tests.test_send_support import newsletter

REQUIRED = {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post", "list-id"}


@pytest.fixture
def ed25519_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """dkimpy verifies Ed25519 through PyNaCl; without it, the same two calls backed by `cryptography`."""
    try:
        import nacl.signing  # noqa: F401
        return
    except ImportError:
        pass
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    class BadSignatureError(Exception):
        pass

    class Base64Encoder:
        pass

    class VerifyKey:
        def __init__(self, key: bytes, encoder: Any = None) -> None:
            self._key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key))

        def verify(self, message: bytes, signature: bytes) -> bytes:
            try:
                self._key.verify(signature, message)
            except InvalidSignature:
                raise BadSignatureError() from None
            return message

    shim = types.SimpleNamespace(
        signing=types.SimpleNamespace(VerifyKey=VerifyKey),
        encoding=types.SimpleNamespace(Base64Encoder=Base64Encoder),
        exceptions=types.SimpleNamespace(ValueError=ValueError, BadSignatureError=BadSignatureError),
    )
    monkeypatch.setattr(dkim, "nacl", shim, raising=False)
    monkeypatch.setitem(sys.modules, "nacl", shim)


def _dns(pem: str, selector: str = "mailer", domain: str = "riverside-imaging.example"):  # type: ignore[no-untyped-def]
    record = dns_record(pem).encode()

    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        return record if name.rstrip(".") == f"{selector}._domainkey.{domain}" else None

    return lookup


def _tags(data: bytes) -> dict[str, str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    value = head.split("DKIM-Signature:", 1)[1].split("\r\n", 1)[0]
    rest = head.split("DKIM-Signature:", 1)[1]
    lines = [value] + [line for line in rest.split("\r\n")[1:] if line[:1] in (" ", "\t")][:10]
    full = "".join(lines)
    out = {}
    for part in full.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = "".join(v.split())
    return out


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
async def test_every_message_is_signed_and_verifies(sample_rt, sink, kind: str, ed25519_verifier) -> None:
    pem = generate_key(kind)
    sample_rt.keyring.dkim_private_pem = pem
    rt = sample_rt
    object.__setattr__(rt.settings, "dkim", rt.settings.dkim.model_copy(
        update={"enabled": True, "domain": "riverside-imaging.example", "selector": "mailer"}))
    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.sent == len(sink.messages) > 0
    dns = _dns(pem)
    for m in sink.messages:
        assert m.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(m.data, dnsfunc=dns), "signature does not verify"
        tags = _tags(m.data)
        assert tags["a"] == ("ed25519-sha256" if kind == "ed25519" else "rsa-sha256")
        assert tags["d"] == "riverside-imaging.example" and tags["s"] == "mailer"
        assert REQUIRED <= set(tags["h"].split(":"))  # RFC 8058 §4: both List-Unsubscribe headers signed
    # a changed header or body no longer verifies
    data = sink.messages[0].data
    assert not dkim.verify(data.replace(b"Subject: News", b"Subject: Nevs", 1), dnsfunc=dns)
    assert not dkim.verify(data.replace(b"Book online", b"Book 0nline", 1), dnsfunc=dns)
    # a header added in transit (a second List-Unsubscribe) breaks the signature (over-signing)
    head, body = data.split(b"\r\n\r\n", 1)
    assert not dkim.verify(head + b"\r\nList-Unsubscribe: <https://evil.example/>\r\n\r\n" + body, dnsfunc=dns)


def test_canonicalisation_matches_dkimpy_on_awkward_input(ed25519_verifier) -> None:
    msg = (b"From: A <news@example.org>\r\nTo: x@example.com\r\nSubject:  Hello   there\r\n\t world \r\n"
           b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1.2.abc@example.org>\r\n"
           b"List-Unsubscribe: <https://e.org/u/t>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
           b"List-Id: <news.example.org>\r\n\r\nbody  line \t\r\nsecond\t\tline\r\n\r\n\r\n")
    for kind in ("ed25519", "rsa"):
        pem = generate_key(kind)
        signed = DKIMSigner(pem, domain="example.org", selector="s1")(msg) + msg
        assert dkim.verify(signed, dnsfunc=_dns(pem, "s1", "example.org"))


def test_keys_and_records() -> None:
    ed = generate_key()
    assert "PRIVATE KEY" in ed and dns_record(ed).startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(dns_record(ed).split("p=")[1])) == 32
    assert dns_record(generate_key("rsa")).startswith("v=DKIM1; k=rsa; p=")


def test_enabled_without_a_key_is_a_config_error() -> None:
    from mailer.crypto import Keyring

    with pytest.raises(ConfigError) as info:
        make_signer(Keyring.generate(), domain="example.org", selector="s1")
    assert "STD-4" in info.value.rules
    with pytest.raises(ConfigError):
        DKIMSigner(generate_key(), domain="", selector="s1")
