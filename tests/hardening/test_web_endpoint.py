"""The public unsubscribe endpoint holds (STD-3, SPAM-5): bounded bodies, a deadline for slow
headers, replays are no-ops, no redirect built from Host, security headers on every answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from mailer.ledger_report import build_report
from mailer.web import create_app
from mailer.web.guard import MAX_BODY, server_config
from tests.test_one_click_unsubscribe import FORM, ONE_CLICK, email_hash, suppressed, token_for

BASE = "https://riverside-imaging.example"


@pytest.fixture
def client(sample_rt: Any) -> Iterator[TestClient]:
    with TestClient(create_app(sample_rt), base_url=BASE, follow_redirects=False) as c:
        yield c


@pytest.fixture
def live(sample_rt: Any) -> Iterator[tuple[int, Any]]:
    """The app under the uvicorn config `mailer serve` uses, on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(create_app(sample_rt), host="127.0.0.1", port=port)
    config.http.header_seconds = 0.5  # type: ignore[union-attr]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield port, sample_rt
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _unsubscribes(rt: Any) -> int:
    return sum(1 for e in rt.ledger.rows() if e.kind == "unsubscribe")


def test_a_replayed_post_is_one_unsubscribe_and_says_already(sample_rt: Any, client: TestClient) -> None:
    tok = token_for(sample_rt, 1)
    first = client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM)
    assert first.status_code == 200 and "You are unsubscribed" in first.text
    for _ in range(20):
        again = client.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM)
        assert again.status_code == 200 and "already unsubscribed" in again.text
    assert _unsubscribes(sample_rt) == 1
    q = sample_rt.ledger.rows().__next__().at
    rep = build_report(sample_rt.ledger, f"{q.year}Q{(q.month - 1) // 3 + 1}", verify=False)
    assert rep.unsubscribes == {"unsubscribe": 1}
    page = client.get(f"/u/{tok}")
    assert page.status_code == 200 and "already unsubscribed" in page.text and "<form" not in page.text


def test_concurrent_replays_are_one_unsubscribe(sample_rt: Any) -> None:
    tok = token_for(sample_rt, 2)
    app = create_app(sample_rt)
    barrier = threading.Barrier(4)

    def post() -> None:
        with TestClient(app, base_url=BASE) as c:
            barrier.wait(5)
            assert c.post(f"/u/{tok}", content=ONE_CLICK, headers=FORM).status_code == 200

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert _unsubscribes(sample_rt) == 1 and email_hash(sample_rt, 2) in suppressed(sample_rt)


def test_a_big_body_gets_413_before_it_is_read(live: Any) -> None:
    port, rt = live
    tok = token_for(rt, 3)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST /u/{tok} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  f"Content-Length: {1 << 30}\r\n\r\n".encode())  # announces 1 GB, sends nothing
        s.settimeout(5)
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert email_hash(rt, 3) not in suppressed(rt)
    # A chunked body that grows past the limit is cut off too. Sent in one write, so the
    # server has it all when it answers: a client still uploading when the server closes
    # gets a reset instead of the 413 (what made this test flaky with a streaming client).
    chunks = b"".join(b"400\r\n" + b"x" * 1024 + b"\r\n" for _ in range(MAX_BODY // 1024 + 2)) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST /u/{tok} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode() + chunks)
        s.settimeout(5)
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert email_hash(rt, 3) not in suppressed(rt)


def test_slow_headers_are_cut_off(live: Any) -> None:
    port, _rt = live
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes the head
        s.settimeout(5)
        started = time.monotonic()
        assert s.recv(1024) == b""  # the server closed the connection
        assert time.monotonic() - started < 4


def test_no_redirect_from_a_forged_host(sample_rt: Any) -> None:
    tok = token_for(sample_rt, 4)
    with TestClient(create_app(sample_rt), base_url=BASE, follow_redirects=False) as c:
        r = c.post(f"/u/{tok}/", content=ONE_CLICK, headers={**FORM, "Host": "evil.example"})
        assert r.status_code == 400 and "location" not in r.headers
        r = c.post(f"/u/{tok}/", content=ONE_CLICK, headers=FORM)  # the trailing slash, on the right host
        assert r.status_code == 200 and "location" not in r.headers
    with TestClient(create_app(sample_rt, trusted_hosts=["*"]), base_url="https://evil.example",
                    follow_redirects=False) as c:
        for path in (f"/u/{tok}/", "/healthz/", "/u/"):
            assert "location" not in c.get(path).headers


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nope", 404), ("PUT", "/u/AAAAAAAAAAAAAAAAAAAAAA", 405),
                                                        ("DELETE", "/healthz", 405), ("GET", "/u/short", 404)])
def test_errors_carry_the_security_headers(client: TestClient, method: str, path: str, status: int) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
