"""Transports: how a composed message leaves. SMTP over verified TLS, or memory for tests.

TLS policy (TLS-1..TLS-4) is explicit, never a library default: `start_tls=True` or
`use_tls=True`, certificate and hostname checks on, TLS 1.2 minimum. A relay that does
not offer STARTTLS, or whose certificate does not verify, raises TLSPolicyError before
MAIL FROM. aiosmtplib's errors are translated to ours in exactly one place.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mailer.compose import OutboundMessage
from mailer.errors import (
    AuthenticationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TLSPolicyError,
    TransportError,
)


@dataclass(frozen=True)
class SendResult:
    code: int
    text: str
    tls_version: str | None = None
    tls_cipher: str | None = None


class Transport(Protocol):
    relay: str

    async def send(self, message: OutboundMessage, /) -> SendResult: ...

    async def close(self) -> None: ...


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """TLS-2/TLS-3: verified certificates and hostnames, TLS 1.2 or newer."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@dataclass
class TLSPolicy:
    mode: str = "starttls"  # starttls | implicit
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("starttls", "implicit"):
            raise TLSPolicyError(f"TLS mode {self.mode!r} is not allowed", rules=("TLS-1",),
                                 hint="use 'starttls' (port 587) or 'implicit' (port 465)")


class RecipientRejected(PermanentDeliveryError):
    """A 5xx at RCPT TO saying the address does not exist (550/551/553, 5.1.x): a bounce (BNC-1)."""


_NO_SUCH_ADDRESS = (550, 551, 553)
_AUTH_CODES = (530, 534, 535, 538)  # authentication required / failed (RFC 4954)


def _classify(err: BaseException, *, connecting: bool = False) -> TransportError:
    """Map aiosmtplib/ssl/OS errors to ours (the only place that knows aiosmtplib's).

    `connecting`: raised by `SMTP.connect`, which is greeting, EHLO, STARTTLS, EHLO and
    login. There a bare reply error can only be the answer to STARTTLS: TLS-1, not a 4xx.
    """
    if isinstance(err, TransportError):
        return err
    if isinstance(err, ssl.SSLCertVerificationError):
        return TLSPolicyError(f"relay certificate did not verify: {err.verify_message}", rules=("TLS-3",),
                              hint="trust the relay's CA with smtp.ca_file; verification stays on")
    if isinstance(err, ssl.SSLError):
        return TLSPolicyError(f"TLS handshake failed: {err.reason}", rules=("TLS-2",),
                              hint="the relay must offer TLS 1.2 or newer")
    if connecting and isinstance(err, aiosmtplib.SMTPServerDisconnected) and (
            "upgrading transport" in str(err) or _caused_by(err, ssl.SSLError)):
        # the peer dropped the TLS handshake (no common protocol version, or a path that
        # interferes with STARTTLS): never a reason to go on in clear
        return TLSPolicyError("TLS handshake with the relay failed (no TLS 1.2+ agreed)", rules=("TLS-2",),
                              hint="the relay must offer TLS 1.2 or newer")
    if isinstance(err, aiosmtplib.SMTPAuthenticationError) or (
            connecting and isinstance(err, aiosmtplib.SMTPResponseException) and err.code in _AUTH_CODES):
        return AuthenticationError(f"the relay refused the login ({err.code} {' '.join(str(err.message).split())[:120]})",
                                   code=err.code, rules=("SEC-8",),
                                   hint="check smtp.username and the password variable named by smtp.password_env")
    if connecting and type(err) is aiosmtplib.SMTPResponseException:
        return TLSPolicyError(f"relay refused STARTTLS ({err.code}); refusing to send in clear", code=err.code,
                              rules=("TLS-1",), hint="use a relay with working STARTTLS or implicit TLS on port 465")
    if isinstance(err, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
        return TemporaryDeliveryError(f"{type(err).__name__}: {err}")
    if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
        first = err.recipients[0] if err.recipients else None
        code = first.code if first else 550
        return _by_code(code, first.message if first else "recipient refused", at_rcpt=True)
    if isinstance(err, aiosmtplib.SMTPRecipientRefused):
        return _by_code(err.code, err.message, at_rcpt=True)
    if isinstance(err, aiosmtplib.SMTPResponseException):
        return _by_code(err.code, err.message)
    if isinstance(err, aiosmtplib.SMTPException) and "STARTTLS" in str(err).upper():
        return TLSPolicyError("relay does not offer STARTTLS; refusing to send in clear", rules=("TLS-1",),
                              hint="use a relay with STARTTLS or implicit TLS on port 465")
    if isinstance(err, OSError | asyncio.TimeoutError | aiosmtplib.SMTPException):
        return TemporaryDeliveryError(f"{type(err).__name__}: {err}")
    return TransportError(f"{type(err).__name__}")


def _reason(err: BaseException) -> str:
    """A connection failure in words: 'name not known', 'connection refused', 'timed out'."""
    cur: BaseException | None = err
    for _ in range(8):
        if cur is None:
            break
        if isinstance(cur, ConnectionRefusedError) or (isinstance(cur, OSError) and cur.errno == errno.ECONNREFUSED):
            return "connection refused"
        if isinstance(cur, OSError) and cur.strerror:
            text = cur.strerror
            return {"Name or service not known": "name not known",
                    "nodename nor servname provided, or not known": "name not known",
                    "Temporary failure in name resolution": "name not known (temporary DNS failure)"}.get(text, text.lower())
        if isinstance(cur, TimeoutError | asyncio.TimeoutError | aiosmtplib.SMTPTimeoutError):
            return "timed out"
        cur = cur.__cause__ or cur.__context__
    text = str(err)
    low = text.lower()
    if "connection refused" in low or "connect call failed" in low or "errno 111" in low:
        return "connection refused"
    if "name or service not known" in low or "nodename nor servname" in low or "name resolution" in low:
        return "name not known"
    if "timed out" in low or "timeout" in low:
        return "timed out"
    return " ".join(text.split())[:160] or type(err).__name__


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    seen = 0
    cur: BaseException | None = err
    while cur is not None and seen < 8:
        if isinstance(cur, kind):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


def _by_code(code: int, text: str, *, at_rcpt: bool = False) -> TransportError:
    text = " ".join(str(text).split())[:200]
    if 400 <= code < 500:
        return TemporaryDeliveryError(f"{code} {text}", code=code)
    if code in _AUTH_CODES and not at_rcpt:
        return AuthenticationError(f"the relay refused the login ({code} {text})", code=code, rules=("SEC-8",),
                                   hint="check smtp.username and the password variable named by smtp.password_env")
    if at_rcpt and (code in _NO_SUCH_ADDRESS or text.startswith("5.1.")):
        return RecipientRejected(f"{code} {text}", code=code, rules=("BNC-1",))
    return PermanentDeliveryError(f"{code} {text}", code=code)


@dataclass(eq=False)
class _Conn:
    client: aiosmtplib.SMTP
    tls_version: str | None = None
    tls_cipher: str | None = None
    used: int = 0
    dirty: bool = False  # the last transaction did not complete: RSET before the next one


@dataclass
class SMTPTransport:
    """A pool of K reused connections; broken ones are replaced.

    `rset`: "after-failure" (default) sends RSET before a transaction only when the one
    before it on that connection did not complete; after a 250 to DATA the transaction
    is over and the next MAIL FROM starts clean (RFC 5321 §3.3, §4.1.1.5), so a RSET
    there is a round trip that changes nothing. "always" sends it before every reuse.
    """

    host: str
    port: int
    policy: TLSPolicy = field(default_factory=TLSPolicy)
    connections: int = 4
    timeout: float = 30.0
    local_hostname: str = "mailer.localdomain"
    username: str = ""
    password: str = ""
    rset: str = "after-failure"  # or "always"

    def __post_init__(self) -> None:
        if self.rset not in ("after-failure", "always"):
            raise ValueError("rset must be 'after-failure' or 'always'")
        self.relay = f"{self.host}:{self.port}"
        self._ctx = tls_context(self.policy.ca_file)
        self._idle: asyncio.LifoQueue[_Conn] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._all: set[_Conn] = set()

    def _ensure_pool(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
            self._idle = asyncio.LifoQueue()

    async def _open(self) -> _Conn:
        implicit = self.policy.mode == "implicit"
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout,
            local_hostname=self.local_hostname,  # perf-notes: avoids getfqdn() per connection
            use_tls=implicit, start_tls=not implicit,  # TLS-1: required, never opportunistic
            validate_certs=True, tls_context=self._ctx,
            username=self.username or None, password=self.password or None,
        )
        try:
            await client.connect()
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception as err:
            client.close()
            mapped = _classify(err, connecting=True)
            if type(mapped) is TemporaryDeliveryError:  # say which relay, in words
                mapped = TemporaryDeliveryError(f"cannot connect to {self.relay}: {_reason(err)}", code=mapped.code)
            raise mapped from err
        ssl_obj = client.transport.get_extra_info("ssl_object") if client.transport else None
        if ssl_obj is None:  # belt and braces: never MAIL FROM without TLS (TLS-1)
            client.close()
            raise TLSPolicyError("connection is not encrypted after connect", rules=("TLS-1",))
        cipher = ssl_obj.cipher()
        conn = _Conn(client, ssl_obj.version(), cipher[0] if cipher else None)
        self._all.add(conn)
        return conn

    async def _acquire(self) -> _Conn:
        self._ensure_pool()
        assert self._slots is not None and self._idle is not None
        await self._slots.acquire()
        try:
            while not self._idle.empty():
                conn = self._idle.get_nowait()
                if conn.client.is_connected:
                    return conn
                self._all.discard(conn)
            return await self._open()
        except BaseException:
            self._slots.release()
            raise

    def _release(self, conn: _Conn | None) -> None:
        assert self._slots is not None and self._idle is not None
        if conn is not None:
            self._idle.put_nowait(conn)
        self._slots.release()

    def _discard(self, conn: _Conn) -> None:
        self._all.discard(conn)
        conn.client.close()

    async def send(self, message: OutboundMessage, /) -> SendResult:
        """One message, one RCPT TO (SEND-1). Raises Temporary/Permanent/TLSPolicy errors."""
        conn = await self._acquire()
        keep: _Conn | None = conn
        try:
            if conn.used and (conn.dirty or self.rset == "always"):
                await conn.client.rset()
            conn.used += 1
            conn.dirty = True
            errors, text = await conn.client.sendmail(message.envelope_from, [message.recipient], message.data)
            if errors:
                resp = next(iter(errors.values()))
                raise _by_code(resp.code, resp.message, at_rcpt=True)
            conn.dirty = False
            code, _, rest = text.partition(" ")
            return SendResult(int(code) if code.isdigit() else 250, rest[:200], conn.tls_version, conn.tls_cipher)
        except asyncio.CancelledError:
            self._discard(conn)  # mid-transaction: the connection's state is unknown
            keep = None
            raise
        except Exception as err:
            mapped = _classify(err)
            if not isinstance(mapped, PermanentDeliveryError) or not conn.client.is_connected:
                self._discard(conn)
                keep = None
            if mapped is err:
                raise
            raise mapped from err
        finally:
            self._release(keep)

    async def probe(self) -> str:
        """Open one connection (TLS, and AUTH when configured) before anyone is claimed.

        The connection stays in the pool for the run. Returns what was agreed, e.g.
        "TLSv1.3 TLS_AES_256_GCM_SHA384"; raises TLSPolicyError, AuthenticationError or
        TemporaryDeliveryError("cannot connect to host:port: ...")."""
        self._ensure_pool()
        assert self._slots is not None and self._idle is not None
        conn = await self._acquire()
        self._release(conn)
        return f"{conn.tls_version} {conn.tls_cipher}".strip()

    async def close(self) -> None:
        for conn in list(self._all):
            try:
                if conn.client.is_connected:
                    await conn.client.quit()
            except Exception:  # noqa: BLE001 - closing anyway
                conn.client.close()
        self._all.clear()
        self._idle = None
        self._slots = None


@dataclass
class MemoryTransport:
    """Keeps messages in a list; `fail` maps a recipient to an error to raise."""

    relay: str = "memory"
    connections: int = 1
    sent: list[OutboundMessage] = field(default_factory=list)
    fail: dict[str, TransportError] = field(default_factory=dict)

    async def send(self, message: OutboundMessage, /) -> SendResult:
        err = self.fail.get(message.recipient)
        if err is not None:
            raise err
        self.sent.append(message)
        return SendResult(250, "OK queued", "TLSv1.3", "TLS_AES_256_GCM_SHA384")

    async def probe(self) -> str:
        return "TLSv1.3 TLS_AES_256_GCM_SHA384"

    async def close(self) -> None:
        return None

    def recipients(self) -> Sequence[str]:
        return [m.recipient for m in self.sent]
