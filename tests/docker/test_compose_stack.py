"""The Docker stack works as shipped: the README's Docker steps, followed literally.

Without a Docker daemon (CI here), tests/docker/stack.py runs each compose service's
command as the image's non-root uid in a scratch root that mirrors the image and its
volumes, with PostgreSQL from MAILER_TEST_POSTGRES_URL (a fresh schema). Where
`docker info` succeeds, the same steps also run against the real daemon.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text

from mailer.db import normalize_url
from tests.conftest import IN_CI, PG_URL, ROOT, _pg_schema_url
from tests.docker.stack import Person, Stack, dockerignore_excludes, load_compose, parse_dockerfile

COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def readme_docker_steps() -> list[str]:
    """The sh block of the README's "Run it with Docker" section, one command per line."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run it with Docker", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block, "the README's Docker section has no sh block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


# -- what the files say -----------------------------------------------------------------


def test_the_image_is_multi_stage_and_runs_as_a_user_who_owns_every_folder_it_writes() -> None:
    image = parse_dockerfile(DOCKERFILE)
    assert image.stages >= 2, "build the wheels in one stage, run from a slim one"
    assert image.uid >= 1000 and image.gid >= 1000
    assert any(dst.endswith("/examples") for _src, dst in image.copies), "the quick start needs examples/"
    spec = load_compose(COMPOSE)
    for name, svc in spec["services"].items():
        if svc.get("image") != "mailer:dev":
            continue
        assert "user" not in svc, f"{name} overrides the image's non-root user"
        for vol in svc.get("volumes", []):
            src, target = vol.split(":")[:2]
            if src in spec["volumes"]:
                owner = image.folders.get(target)
                assert owner and owner[0] == image.uid, (
                    f"{name}: volume {src} at {target} would be root-owned: create {target} in the "
                    f"Dockerfile with install -d -o mailer")


def test_dockerignore_keeps_local_state_and_keys_out_of_the_build_context() -> None:
    ignore = ROOT / ".dockerignore"
    for path in (".venv/bin/python", ".demo/keys.json", ".demo/mailer.db", "keys.json", ".sink/000001.eml",
                 ".local/keys.json", "docker/secrets/keys.json", "mailer/__pycache__/app.cpython-311.pyc",
                 "tests/conftest.py", ".git/HEAD"):
        assert dockerignore_excludes(ignore, path), f"{path} would be sent to the Docker daemon"
    for path in ("pyproject.toml", "README.md", "mailer/cli/app.py", "examples/contacts.csv",
                 "templates/newsletter/template.toml", "segments/newsletter.toml", "config/mailer.example.toml"):
        assert not dockerignore_excludes(ignore, path), f"{path} is needed by the image"


def test_every_long_running_service_has_a_health_check_and_the_sink_listens_on_all_interfaces() -> None:
    services = load_compose(COMPOSE)["services"]
    for name in ("db", "sink", "worker", "web"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    sink = services["sink"]["command"]
    assert sink[sink.index("--host") + 1] in ("0.0.0.0", "::"), "the worker could not reach a sink bound to loopback"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["sink"]["condition"] == "service_healthy"


def test_the_worker_reads_its_token_from_a_read_only_volume_the_admin_writes() -> None:
    spec = load_compose(COMPOSE)
    services = spec["services"]
    token_file = services["worker"]["environment"]["MAILER_TOKEN_FILE"]
    assert "MAILER_TOKEN" not in services["worker"]["environment"], "no token in the compose file itself"
    mounts = {v.split(":")[1]: v.split(":") for v in services["worker"]["volumes"]}
    folder = str(Path(token_file).parent)
    assert folder in mounts and mounts[folder][-1] == "ro", "the worker mounts its token read-only"
    admin = {v.split(":")[1]: v.split(":") for v in services["admin"]["volumes"]}
    assert admin[folder][0] == mounts[folder][0] and admin[folder][-1] != "ro", "the admin writes the token"
    assert f"users token worker --out {token_file}" in (ROOT / "README.md").read_text()
    config_home = services["admin"]["environment"]["XDG_CONFIG_HOME"]
    assert config_home in admin and admin[config_home][0] in spec["volumes"], "mailer login's session outlives run --rm"
    for name in ("worker", "admin"):  # environment replaces the anchor's map: nothing dropped
        assert {"MAILER_CONFIG", "MAILER_DATABASE_URL"} <= set(services[name]["environment"])


# -- the stack, run -------------------------------------------------------------------


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but MAILER_TEST_POSTGRES_URL is not set")
        pytest.skip("the compose stack uses PostgreSQL: set MAILER_TEST_POSTGRES_URL")
    schema = "stack_" + uuid.uuid4().hex[:10]
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def stack(pg_schema_url: str) -> Iterator[Stack]:
    if os.geteuid() != 0:
        pytest.skip("running the services as the image's uid needs root (CI runs as root)")
    root = Path(tempfile.mkdtemp(prefix="mailer-stack-"))
    s = Stack(COMPOSE, root, external={"db": pg_schema_url})
    try:
        yield s
    finally:
        s.down()
        shutil.rmtree(root, ignore_errors=True)


def _follow_readme(stack: Stack) -> dict[str, str]:
    printed: dict[str, str] = {}
    person = Person()
    for line in readme_docker_steps():
        argv = shlex.split(line)
        if argv[0] == "export":
            assert argv[1] == "COMPOSE_FILE=docker/compose.yaml"
            continue
        assert argv[:2] == ["docker", "compose"], f"README Docker step is not a compose command: {line}"
        printed[line] = stack.compose(argv[2:], person)
        if argv[2:4] == ["up", "-d"]:
            _check_after_up(stack)
        if argv[2] == "down":
            break
        if argv[2] == "ps":
            _schedule_through_the_worker(stack, person)
    return printed


def _check_after_up(stack: Stack) -> None:
    """Right after `up -d --wait`: the key file, the migrations, the health checks, /healthz."""
    keys = stack.root / "volumes" / "keys" / "keys.json"
    st = keys.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (stack.image.uid, 0o600), "init wrote the key file as the image's user"
    assert stack.ran.count("migrate") == 1, "the migrate service ran once before the worker and web"
    engine = create_engine(normalize_url(stack.external["db"]))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar(), "the schema is migrated"
    engine.dispose()
    for name in ("sink", "worker", "web"):
        ok, why = stack.healthcheck(name)
        assert ok, f"{name}: {why}"
    port = stack.ports["web"][8000]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:  # noqa: S310
        assert resp.status == 200 and resp.read().strip() == b"ok"


def _status(db_url: str, campaign: int) -> str:
    """Read straight from the stack's database (a CLI process per poll would be slow)."""
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT status FROM campaign WHERE id = :id"), {"id": campaign}).scalar())
    finally:
        engine.dispose()


def _schedule_through_the_worker(stack: Stack, person: Person) -> None:
    """The worker, not the admin CLI, reaches the sink: a campaign scheduled a few seconds
    ahead, sent as the service account whose token the worker read from its volume."""
    before = stack.log("sink").count("received ")
    for args in (["campaign", "create", "--name", "Worker run", "--template", "templates/newsletter",
                  "--segment", "segments/newsletter.toml"],
                 ["campaign", "submit", "2"], ["login", "--user", "rob"], ["campaign", "approve", "2"],
                 ["login", "--user", "maria"]):
        args, stdin = person.answer(args)
        res = stack.run("admin", args, stdin=stdin)
        assert res.returncode == 0, (res.stdout + res.stderr).decode()[-2000:]
    at = (datetime.now(ZoneInfo("America/Chicago")) + timedelta(seconds=15)).strftime("%Y-%m-%d %H:%M:%S")
    res = stack.run("admin", ["campaign", "schedule", "2", "--at", at])
    assert res.returncode == 0, (res.stdout + res.stderr).decode()[-2000:]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _status(stack.external["db"], 2) != "done":
        time.sleep(1)
    assert _status(stack.external["db"], 2) == "done", stack.log("worker")[-3000:]
    assert stack.log("sink").count("received ") > before, "the worker's messages reached the sink"
    engine = create_engine(normalize_url(stack.external["db"]))
    try:
        with engine.connect() as conn:
            actors = {r[0] for r in conn.execute(text(
                "SELECT actor FROM ledger WHERE campaign_id = 2 AND kind = 'send'"))}
    finally:
        engine.dispose()
    assert actors == {"worker"}, f"the worker's sends are recorded as the service account: {actors}"


def test_the_readme_docker_steps_work_in_order(stack: Stack) -> None:
    printed = _follow_readme(stack)
    sink_log = next(out for line, out in printed.items() if line.endswith("logs sink"))
    received = [ln for ln in sink_log.splitlines() if ln.startswith("received ")]
    assert received, sink_log[-2000:]
    assert all(re.fullmatch(r"received <[^>]+> \d+ bytes -> \d{6}\.eml", ln) for ln in received)
    emls = sorted((stack.root / "volumes" / "sinkmail").glob("*.eml"))
    assert len(emls) == stack.log("sink").count("received <"), "one file per message, the worker's included"
    assert all(e.stat().st_uid == stack.image.uid and e.stat().st_mode & 0o777 == 0o600 for e in emls)
    contacts = (ROOT / "examples" / "contacts.csv").read_text().splitlines()[1:]
    addresses = [row.split(",")[0] for row in contacts]
    assert not any(a in sink_log for a in addresses), "the sink's log never shows an address"
    ps = next(out for line, out in printed.items() if line.endswith(" ps"))
    assert ps and all(ln.endswith("healthy") and "unhealthy" not in ln for ln in ps.splitlines()), ps
    assert not stack.procs, "down stopped every service"


# -- with a Docker daemon ---------------------------------------------------------------


def _docker_available() -> str:
    if shutil.which("docker") is None:
        return "no docker client on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return "`docker info` fails (no Docker daemon): " + (info.stderr.strip().splitlines() or ["?"])[-1][:200]
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60).returncode != 0:
        return "the docker compose plugin is not installed"
    return ""


def test_the_readme_docker_steps_against_a_real_daemon(tmp_path: Path) -> None:
    why = _docker_available()
    if why:
        pytest.skip(f"real Docker part skipped: {why}; the daemon-free run above covers the same steps")
    project = f"mailertest{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "COMPOSE_FILE": str(COMPOSE), "COMPOSE_PROJECT_NAME": project}
    person = Person()
    try:
        for line in readme_docker_steps():
            argv = shlex.split(line)
            if argv[0] == "export":
                continue
            if argv[2] == "down":
                break
            stdin = None
            if argv[2:4] == ["run", "--rm"]:  # -T: no TTY, the answers come on standard input
                args, stdin = person.answer(argv[5:])
                argv = [*argv[:4], "-T", argv[4], *args]
            res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, input=stdin)
            assert res.returncode == 0, f"{line}: {res.stdout[-2000:]} {res.stderr[-2000:]}"
            person.read(res.stdout)
            if argv[2] == "logs":
                assert "received <" in res.stdout
    finally:
        subprocess.run(["docker", "compose", "down", "-v"], cwd=ROOT, env=env, capture_output=True, timeout=300)
