"""Browser-test fixtures: the real app under uvicorn on a free port, a real database
(SQLite file, and PostgreSQL where MAILER_TEST_POSTGRES_URL is set), real accounts, and
Debian's Chromium driven by Playwright. Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest

from mailer.accounts import service as accounts
from mailer.accounts.permissions import Principal
from mailer.runtime import Runtime
from tests.conftest import ROOT

CHROMIUM = os.environ.get("MAILER_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "screens"
PASSWORD = "correct horse battery staple"  # noqa: S105 - a test account's password
ADMIN_PASSWORD = "staple battery horse correct"  # noqa: S105


@dataclass
class Person:
    name: str
    password: str
    totp: str | None = None
    _last_step: int = 0

    def code(self) -> str:
        """A TOTP code the server has not seen yet (a code is accepted once, SEC-7)."""
        t = pyotp.TOTP(self.totp or "")
        step = max(int(time.time()) // 30, self._last_step + 1)
        if step > int(time.time()) // 30 + 1:  # used up the drift window: wait for the next step
            time.sleep(30 - time.time() % 30 + 0.1)
            step = int(time.time()) // 30
        self._last_step = step
        return t.at(step * 30)


@dataclass
class Server:
    rt: Runtime
    url: str
    people: dict[str, Person] = field(default_factory=dict)
    templates: Path = Path()
    _server: Any = None
    _thread: Any = None

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_server(rt: Runtime) -> tuple[Any, Any, str]:
    import uvicorn

    from mailer.web.server import build_app

    config = uvicorn.Config(build_app(rt), host="127.0.0.1", port=0, access_log=False, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def make_people(rt: Runtime) -> dict[str, Person]:
    admin_info, _otp, enrol = accounts.bootstrap_admin(rt)
    by = Principal(admin_info.id, admin_info.name, frozenset({"admin"}), "service")
    accounts.change_password(rt, by, _otp or "", ADMIN_PASSWORD)
    people = {"admin": Person("admin", ADMIN_PASSWORD, enrol.secret)}
    for name, roles in (("mara", ["marketer"]), ("stan", ["staff"]), ("rita", ["reviewer"]),
                        ("rex", ["reviewer"])):
        _info, _otp, enrol2 = accounts.create_account(rt, by, name, roles, password=PASSWORD)
        people[name] = Person(name, PASSWORD, enrol2.secret if enrol2 else None)
    return people


@pytest.fixture
def server_factory(runtime_factory: Any, tmp_path: Path) -> Iterator[Any]:
    """Start the workspace (and /u/) on a free port; returns a Server with its accounts."""
    made: list[Server] = []

    def build(*, contacts: bool = True, **web: Any) -> Server:
        templates = tmp_path / "templates"
        if not templates.exists():
            shutil.copytree(ROOT / "templates", templates)
        rt = runtime_factory(None, web={"templates_dir": str(templates), "segments_dir": str(ROOT / "segments"),
                                        **web})
        people = make_people(rt)
        if contacts:
            from mailer.store.auth_records import import_authorizations
            from mailer.store.contacts import import_contacts

            import_contacts(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/contacts.csv",
                            dict(rt.settings.fields.clinical))
            import_authorizations(rt.engine, rt.keyring, rt.ledger, ROOT / "examples/authorizations.csv")
        srv, thread, url = start_server(rt)
        s = Server(rt, url, people, templates, srv, thread)
        made.append(s)
        return s

    yield build
    for s in made:
        s.stop()


@pytest.fixture
def server(server_factory: Any) -> Server:
    return server_factory()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests need it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Pages in fresh browser contexts (one per person: separate cookie jars)."""
    contexts: list[Any] = []

    def make() -> Any:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def sign_in(page: Any, server: Server, who: str, *, code: str | None = None, password: str | None = None) -> None:
    person = server.people[who]
    page.goto(server.url + "/login")
    page.fill("input[name=name]", person.name)
    page.fill("input[name=password]", password if password is not None else person.password)
    if code is not None or person.totp:
        page.fill("input[name=code]", code if code is not None else person.code())
    page.click("button[type=submit]")


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def csrf_of(page: Any) -> str:
    return page.locator("input[name=csrf_token]").first.get_attribute("value")
