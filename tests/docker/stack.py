"""Run docker/compose.yaml's services without a Docker daemon, as the image would.

The Dockerfile and compose.yaml are read, not copied: each service's command runs as
the image's non-root uid, in a scratch root that mirrors the image (its WORKDIR with
the files it COPYs, the folders it creates with their owner and mode) and the
service's mounts (a named volume starts with the owner and mode of the image's folder
at its mount point, as Docker does; a bind-mounted file is copied in). Container paths
in commands, environment values and mounted config files are rewritten into that
root; service host names become 127.0.0.1 and container ports become free ports. A
service whose image is not ours (PostgreSQL) is replaced by an external URL.

What this cannot show (and `docker compose up --wait` can, where a daemon exists):
network isolation, read-only mounts being enforced, the image really building.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

# -- the Dockerfile --------------------------------------------------------------------


@dataclass
class Image:
    uid: int
    gid: int
    workdir: str
    entrypoint: list[str]
    env: dict[str, str]
    copies: list[tuple[str, str]]  # (source in the build context, absolute destination)
    folders: dict[str, tuple[int, int, int]]  # absolute path -> (uid, gid, mode)
    stages: int
    cmd: list[str] = field(default_factory=list)
    user: str = "root"


def _instructions(text: str) -> list[tuple[str, str]]:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def parse_dockerfile(path: Path) -> Image:
    """The last stage: its user, workdir, entrypoint, env, COPYs and created folders."""
    instructions = _instructions(path.read_text())
    stages = [i for i, (w, _) in enumerate(instructions) if w == "FROM"]
    last = instructions[stages[-1]:]
    users: dict[str, tuple[int, int]] = {"root": (0, 0)}
    image = Image(uid=0, gid=0, workdir="/", entrypoint=[], env={}, copies=[], folders={}, stages=len(stages))
    for word, rest in last:
        if word == "RUN":
            for part in re.split(r"&&|;", rest):
                argv = shlex.split(part.replace("--mount=", "--mount "))
                if "useradd" in argv:
                    uid = int(argv[argv.index("--uid") + 1])
                    users[argv[-1]] = (uid, uid)
                elif argv[:2] == ["install", "-d"]:
                    owner, group, mode, paths = "root", "root", 0o755, []
                    it = iter(argv[2:])
                    for a in it:
                        if a == "-o":
                            owner = next(it)
                        elif a == "-g":
                            group = next(it)
                        elif a == "-m":
                            mode = int(next(it), 8)
                        else:
                            paths.append(a)
                    for p in paths:
                        image.folders[p] = (users[owner][0], users[group][1], mode)
        elif word == "USER":
            name, _, grp = rest.partition(":")
            uid = users[name][0] if name in users else int(name)
            gid = (users[grp][1] if grp in users else int(grp)) if grp else (users[name][1] if name in users else uid)
            image.uid, image.gid = uid, gid
            image.user = next((n for n, (u, _g) in users.items() if u == uid), str(uid))
        elif word == "WORKDIR":
            image.workdir = rest
        elif word == "COPY" and not rest.startswith("--from"):
            src, dst = shlex.split(rest)[-2:]
            image.copies.append((src, dst if dst.startswith("/") else f"{image.workdir}/{dst.removeprefix('./')}"))
        elif word == "ENV":
            for item in shlex.split(rest):
                k, _, v = item.partition("=")
                image.env[k] = v
        elif word == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif word == "CMD":
            image.cmd = json.loads(rest)
    return image


def dockerignore_excludes(ignore_file: Path, path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a path's parents."""
    import fnmatch

    excluded = False
    for raw in ignore_file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?").replace(".*.*", ".*")
        parts = path.split("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(re.match(regex, c) for c in candidates):
            excluded = not negate
    return excluded


# -- compose ----------------------------------------------------------------------------


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())  # merge keys (<<: *anchor) included
    return data


def dependency_order(services: dict[str, Any], wanted: list[str]) -> list[str]:
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"depends_on cycle: {' -> '.join((*trail, name))}"
        if name in order:
            return
        for dep in services[name].get("depends_on", {}) or {}:
            visit(dep, (*trail, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PATH = re.compile(r"(?<![\w.:/~-])(/[A-Za-z0-9._/-]*[A-Za-z0-9_-])")


class StackError(AssertionError):
    pass


class Stack:
    """docker compose, as far as the README uses it: build, run --rm, up -d --wait, ps, logs, down."""

    def __init__(self, compose_file: Path, root: Path, external: dict[str, str], *,
                 python: tuple[Path, str] | None = None) -> None:
        self.compose_file = compose_file
        self.compose_dir = compose_file.parent
        self.spec = load_compose(compose_file)
        self.services: dict[str, Any] = self.spec["services"]
        ours = [s for s in self.services.values() if "build" in s]
        assert ours, "no service builds the image"
        build = ours[0]["build"]
        self.context = (self.compose_dir / build["context"]).resolve()
        self.dockerfile = self.context / build["dockerfile"]
        self.image = parse_dockerfile(self.dockerfile)
        self.image_name = ours[0].get("image")
        self.root = root
        self.external = external  # service name -> URL that replaces it (e.g. db -> a PostgreSQL URL)
        self.python, self.pythonpath = python or self._runnable_python()
        self.ports: dict[str, dict[int, int]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.ran: list[str] = []
        self.completed: set[str] = set()
        for name, svc in self.services.items():
            if self._is_ours(svc):
                self.ports[name] = {int(p): free_port() for p in svc.get("expose", [])}
        self._built = False
        self._mounts: dict[str, dict[str, Path]] = {}

    def _runnable_python(self) -> tuple[Path, str]:
        """An interpreter the image's uid may execute, with this environment's packages.

        The test's own interpreter may live where that uid cannot go (a pyenv under /root);
        then the system's interpreter of the same version runs with our site-packages (the
        image has its own Python; only the packages matter here)."""
        import site
        import sysconfig

        packages = ":".join(dict.fromkeys([str(self.context), *site.getsitepackages(),
                                           sysconfig.get_paths()["platlib"]]))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        for candidate, path in ((Path(sys.executable), ""), (Path(f"/usr/bin/python{version}"), packages)):
            if not candidate.exists():
                continue
            try:
                probe = subprocess.run([str(candidate), "-c", "import mailer.cli.app"], cwd="/",
                                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": path}, user=self.image.uid,
                                       group=self.image.gid, extra_groups=[], capture_output=True)
            except PermissionError:
                continue
            if probe.returncode == 0:
                return candidate, path
        # An environment limit, not a defect of the stack: the checkout (or its venv) sits where
        # the image's uid cannot read it. Say so instead of failing.
        import pytest

        pytest.skip(f"no Python {version} that uid {self.image.uid} can run with mailer importable "
                    f"(is {self.context} readable by that uid?)")

    # -- the image's filesystem ------------------------------------------------------------
    def _is_ours(self, svc: dict[str, Any]) -> bool:
        return "build" in svc or (self.image_name is not None and svc.get("image") == self.image_name)

    def build(self) -> None:
        """COPY the context's files into <root>/app, as the image's root-owned files."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        ignore = self.context / ".dockerignore"
        for src, dst in self.image.copies:
            if not dst.startswith(self.image.workdir):
                continue
            source = self.context / src
            assert source.exists(), f"Dockerfile copies {src}, which is not in the build context"
            assert not (ignore.exists() and dockerignore_excludes(ignore, src)), f".dockerignore excludes {src}"
            target = self.root / "app" / dst.removeprefix(self.image.workdir).strip("/")
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        for p in [self.root / "app", *(self.root / "app").rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        self._built = True

    def _container(self, name: str) -> Path:
        """A service's own container filesystem: the image's folders with their owner and mode."""
        base = self.root / "containers" / name
        if not base.exists():
            base.mkdir(parents=True)
            base.chmod(0o755)
            for folder, (uid, gid, mode) in sorted(self.image.folders.items()):
                self._mkdir_owned(base / folder.lstrip("/"), uid, gid, mode)
            tmp = base / "tmp"
            tmp.mkdir(exist_ok=True)
            tmp.chmod(0o1777)
        return base

    def _mkdir_owned(self, path: Path, uid: int, gid: int, mode: int) -> None:
        for parent in reversed(path.parents):
            if not parent.exists():
                parent.mkdir()
                parent.chmod(0o755)
        path.mkdir(exist_ok=True)
        os.chown(path, uid, gid)
        path.chmod(mode)

    def mounts(self, name: str) -> dict[str, Path]:
        """Container path -> host path for a service's volumes; named volumes start as Docker's do."""
        if name in self._mounts:
            return self._mounts[name]
        svc = self.services[name]
        found: dict[str, Path] = {}
        binds: list[tuple[Path, Path]] = []
        for spec in svc.get("volumes", []) or []:
            parts = spec.split(":")
            src, target = parts[0], parts[1]
            if src.startswith((".", "/")):
                copy = self._container(name) / "binds" / target.lstrip("/")
                binds.append(((self.compose_dir / src).resolve(), copy))
                found[target] = copy
            else:
                assert src in (self.spec.get("volumes") or {}), f"{name}: volume {src} is not declared"
                vol = self.root / "volumes" / src
                if not vol.exists():
                    # An empty named volume takes the owner and mode of the image's folder at its
                    # mount point; where the image has no such folder, Docker creates it as root.
                    uid, gid, mode = self.image.folders.get(target, (0, 0, 0o755))
                    self._mkdir_owned(vol, uid, gid, mode)
                found[target] = vol
        self._mounts[name] = found
        for host_src, copy in binds:  # a bind-mounted config, with its paths and hosts rewritten
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(self.translate(name, host_src.read_text(), config=True))
            copy.chmod(0o644)
        return found

    def host_path(self, name: str, cpath: str) -> Path:
        mounts = self.mounts(name)
        for target in sorted(mounts, key=len, reverse=True):
            if cpath == target or cpath.startswith(target.rstrip("/") + "/"):
                return mounts[target] / cpath[len(target):].lstrip("/")
        wd = self.image.workdir
        if cpath == wd or cpath.startswith(wd + "/"):
            return self.root / "app" / cpath[len(wd):].lstrip("/")
        return self._container(name) / cpath.lstrip("/")

    # -- rewriting -------------------------------------------------------------------------
    def _port_map(self) -> dict[int, int]:
        return {c: h for ports in self.ports.values() for c, h in ports.items()}

    def translate(self, name: str, text: str, *, config: bool = False) -> str:
        """Container paths -> scratch paths; service names -> 127.0.0.1; ports -> free ports."""
        for svc, url in self.external.items():
            # a URL naming the external service (postgresql://u:p@db:5432/x) is replaced whole
            text = re.sub(rf"[a-z+]+://[^\s\"']*@{re.escape(svc)}(:\d+)?/[^\s\"']*", url, text)
        for svc in self.ports:
            # a host: "sink" (a config value), //web:8000, user@db: never a path's folder (/run/secrets/worker)
            text = re.sub(rf"(?:(?<=//)|(?<=@)|(?<=\")){re.escape(svc)}(?=[\":/])", "127.0.0.1", text)
        for c, h in self._port_map().items():
            text = re.sub(rf"(?<![\w.]){c}(?![\w.])", str(h), text)
        if not config:
            return _PATH.sub(lambda m: str(self.host_path(name, m.group(1))), text)
        return re.sub(r"\"(/[^\"]+)\"", lambda m: '"' + str(self.host_path(name, m.group(1))) + '"', text)

    def argv(self, name: str, args: list[str] | None = None) -> list[str]:
        svc = self.services[name]
        entry = svc.get("entrypoint", self.image.entrypoint)
        command = args if args is not None else svc.get("command", self.image.cmd)
        first, *rest = [*entry, *command]
        return [*self._exe(first), *(self.translate(name, a) for a in rest)]

    def _exe(self, word: str) -> list[str]:
        if word == "mailer":
            return [str(self.python), "-m", "mailer.cli.app"]
        if word in ("python", "python3"):
            return [str(self.python)]
        return [word]

    def env(self, name: str) -> dict[str, str]:
        svc = self.services[name]
        # LOGNAME: what the image's /etc/passwd would answer for its uid (not in this machine's)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "LOGNAME": self.image.user}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        merged = {**self.image.env, **{k: str(v) for k, v in (svc.get("environment") or {}).items()}}
        for k, v in merged.items():
            env[k] = self.translate(name, v)
        return env

    def _popen(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        assert self.image.uid != 0, "the image must run as a non-root user"
        return subprocess.Popen(argv, cwd=self.host_path(name, self.image.workdir), env=self.env(name),
                                user=self.image.uid, group=self.image.gid, extra_groups=[], **kw)

    # -- lifecycle -------------------------------------------------------------------------
    def _start_deps(self, name: str) -> None:
        for dep, cond in (self.services[name].get("depends_on") or {}).items():
            condition = (cond or {}).get("condition", "service_started")
            if dep in self.external:
                continue
            if condition == "service_completed_successfully":
                self._run_once(dep)
            else:
                self.start(dep, wait=condition == "service_healthy")

    def _run_once(self, name: str) -> None:
        """A one-shot service: runs once per `up` (Docker keeps its exited container)."""
        if name in self.completed:
            return
        self._start_deps(name)
        proc = self._popen(name, self.argv(name), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=180)
        self.ran.append(name)
        if proc.returncode != 0:
            raise StackError(f"service {name} exited {proc.returncode}: {out.decode(errors='replace')[-3000:]}")
        self.completed.add(name)

    def start(self, name: str, *, wait: bool) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            if wait:
                self.wait_healthy(name)
            return
        self._start_deps(name)
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        self.logs[name] = log
        with log.open("ab") as fh:
            self.procs[name] = self._popen(name, self.argv(name), stdout=fh, stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy(name)

    def healthcheck(self, name: str) -> tuple[bool, str]:
        hc = self.services[name].get("healthcheck")
        if not hc:
            proc = self.procs.get(name)
            return (proc is not None and proc.poll() is None), "running (no health check)"
        kind, *cmd = hc["test"]
        assert kind == "CMD", f"{name}: health check {kind} cannot run in the image without a shell"
        argv = [*self._exe(cmd[0]), *(self.translate(name, a) for a in cmd[1:])]
        proc = self._popen(name, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=30)
        return proc.returncode == 0, out.decode(errors="replace").strip()

    def wait_healthy(self, name: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        why = ""
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise StackError(f"service {name} exited {proc.returncode}: {self.log(name)[-3000:]}")
            ok, why = self.healthcheck(name)
            if ok:
                return
            time.sleep(0.5)
        raise StackError(f"service {name} never became healthy: {why}\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def default_services(self) -> list[str]:
        return [n for n, s in self.services.items() if not s.get("profiles")]

    def up(self) -> None:
        """`up -d --wait`: every service without a profile, in dependency order, healthy."""
        self.completed.clear()
        for name in dependency_order(self.services, self.default_services()):
            if name in self.external:
                continue
            restart = str(self.services[name].get("restart", "no"))
            if restart == "no" and "healthcheck" not in self.services[name]:
                self._run_once(name)  # a one-shot (migrations)
            else:
                self.start(name, wait=True)

    def run(self, name: str, args: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
        """`run --rm SERVICE ARGS`: its dependencies up, then the command to completion
        (`stdin`: what a person types at its prompts)."""
        self._start_deps(name)
        proc = self._popen(name, self.argv(name, args), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def down(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    # -- the README's lines ----------------------------------------------------------------
    def compose(self, argv: list[str], person: Person | None = None) -> str:
        """One `docker compose ...` line; returns what it would print. `person` answers the
        prompts of `run --rm SERVICE login` and reads what every `run` prints."""
        if argv[:2] == ["-f", "docker/compose.yaml"]:
            argv = argv[2:]
        verb, *rest = argv
        if verb == "build":
            self.build()
            return ""
        if verb == "up":
            assert set(rest) <= {"-d", "--wait", "--detach"}, f"up {rest}: only -d --wait are emulated"
            self.up()
            return ""
        if verb == "run":
            assert rest[0] == "--rm", "run without --rm leaves containers behind"
            args, stdin = person.answer(rest[2:]) if person else (rest[2:], None)
            res = self.run(rest[1], args, stdin=stdin)
            text = (res.stdout + res.stderr).decode(errors="replace")
            if res.returncode != 0:
                raise StackError(f"`docker compose {shlex.join(argv)}` exited {res.returncode}: {text[-3000:]}")
            if person:
                person.read(text)
            return text
        if verb == "logs":
            return self.log(rest[-1])
        if verb == "ps":
            lines = []
            for name in self.default_services():
                if name in self.external:
                    continue
                if name in self.procs:
                    ok, why = self.healthcheck(name)
                    lines.append(f"{name} {'healthy' if ok else 'unhealthy: ' + why}")
            return "\n".join(lines)
        if verb == "down":
            self.down()
            return ""
        raise StackError(f"`docker compose {verb}` is not emulated; extend tests/docker/stack.py")


class Person:
    """Someone following the README: notes the one-time passwords and TOTP secrets the
    output shows, and at `mailer login --user NAME` types the password (a new one at a
    first sign-in) and the code an authenticator app makes. The prompts are answered the
    way a script would: --password-stdin (password, then the new one) and --totp CODE."""

    NEW_PASSWORD = "plum lantern meadow otter 42"

    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.first_sign_in: set[str] = set()
        self._last_step: dict[str, int] = {}

    def read(self, output: str) -> None:
        for name, otp in re.findall(r"^one-time password for (\S+): (\S+)$", output, flags=re.M):
            self.passwords[name] = otp
            self.first_sign_in.add(name)
        self.secrets.update(re.findall(r"^TOTP secret for (\S+): (\S+)$", output, flags=re.M))

    def code(self, name: str) -> str:
        """The current code; a code is accepted once, so a second sign-in in the same 30 s waits."""
        import pyotp

        totp = pyotp.TOTP(self.secrets[name])
        while int(time.time()) // 30 == self._last_step.get(name):
            time.sleep(0.5)
        self._last_step[name] = int(time.time()) // 30
        return totp.now()

    def answer(self, args: list[str]) -> tuple[list[str], str | None]:
        """The command line and keyboard input for one `run --rm SERVICE ARGS`."""
        if args[:1] != ["login"]:
            return args, None
        name = args[args.index("--user") + 1]
        typed = [self.passwords[name]]
        if name in self.first_sign_in:
            self.passwords[name] = self.NEW_PASSWORD
            self.first_sign_in.discard(name)
            typed.append(self.NEW_PASSWORD)
        extra = ["--password-stdin", *(["--totp", self.code(name)] if name in self.secrets else [])]
        return [*args, *extra], "\n".join(typed) + "\n"


def url_host(url: str) -> str:
    return urlsplit(url).hostname or ""
