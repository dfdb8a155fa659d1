"""Real PostgreSQL, Redis and nginx for the tests and benchmarks, on free loopback ports in temporary folders.

Each is a context manager that starts the real server from the Debian package
(`scripts/setup` installs them), waits until it answers, yields a handle with
its address, and stops it and removes its folder afterwards:

    with postgres_server() as pg, redis_server() as redis:
        url = pg.create_database("tracker")       # postgresql://northwind:...@127.0.0.1:PORT/tracker
        lock_url = redis.url(1)                    # redis://:...@127.0.0.1:PORT/1
        with nginx_proxy(["127.0.0.1:5005", "127.0.0.1:5006"]) as nginx:
            nginx.url                              # http://127.0.0.1:PORT

The matching pytest fixtures (`postgres`, `redis`, in tests/e2e/services.py) skip, with the reason, only
when the server's binary is missing. PostgreSQL refuses to run as root, so
as root it runs as the `postgres` system user (`runuser -u postgres --`) in a
folder owned by that user. Both PostgreSQL and Redis require a password
(random per run), so the tests also show that the passwords reach Rasa
through the environment.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from bot.bench_load import free_port  # noqa: F401  (imported from here by the e2e tests and benchmarks)
from core.processes import die_with_parent
from core.settings import PROJECT_ROOT

def _pg_bin() -> Path:
    """PostgreSQL's programs: ASSISTANT_TEST_PG_BIN, else Debian's 15, else the newest Debian has."""
    if os.environ.get("ASSISTANT_TEST_PG_BIN"):
        return Path(os.environ["ASSISTANT_TEST_PG_BIN"])
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "initdb").exists():
        return preferred
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else preferred


PG_BIN = _pg_bin()
NGINX_TEMPLATE = PROJECT_ROOT / "deploy" / "nginx.conf"


class ServiceUnavailable(RuntimeError):
    """A server's binary is not installed here (the fixtures turn this into a skip)."""


def wait_for_port(port: int, process: Optional[subprocess.Popen], timeout: float, name: str, log: Optional[Path] = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before it listened{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f}s{_tail(log)}")


def _tail(log: Optional[Path], chars: int = 3000) -> str:
    if log is None or not log.exists():
        return ""
    return f"\n--- {log.name} (tail) ---\n" + log.read_text(errors="replace")[-chars:]


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def _shared_tempdir(prefix: str) -> Path:
    """A temporary folder another system user can be given (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------ PostgreSQL

@dataclass
class PostgresServer:
    """A running PostgreSQL: superuser `user` with `password`, on 127.0.0.1:`port`."""

    port: int
    user: str
    password: str
    folder: Path
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres", with_password: bool = True) -> str:
        """SQLAlchemy URL of `database` (which must exist: see `create_database`)."""
        auth = f"{self.user}:{self.password}" if with_password else self.user
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` (letters, digits, _) and return its URL."""
        import psycopg2

        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be letters, digits and _: {name!r}")
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


def _as_postgres_user() -> List[str]:
    """The command prefix that runs PostgreSQL's tools as a non-root user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServiceUnavailable("running as root and there is no 'postgres' system user to run PostgreSQL as "
                                 "(Debian's postgresql package creates it)") from exc
    runuser = shutil.which("runuser")
    if not runuser:
        raise ServiceUnavailable("running as root and 'runuser' (util-linux) is missing, so PostgreSQL cannot run as 'postgres'")
    return [runuser, "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server(user: str = "northwind", password: Optional[str] = None, timeout: float = 60) -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster (initdb + pg_ctl) on a free loopback port, removed afterwards."""
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not initdb.exists() or not pg_ctl.exists():
        raise ServiceUnavailable(f"PostgreSQL is not installed ({initdb} missing): run scripts/setup, "
                                 "or apt-get install postgresql")
    prefix = _as_postgres_user()
    password = password or secrets.token_urlsafe(16)
    folder = _shared_tempdir("assistant-pg-")
    data, log, pwfile = folder / "data", folder / "postgres.log", folder / "pwfile"
    pwfile.write_text(password + "\n")
    if prefix:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    pwfile.chmod(0o600)
    port = free_port()
    started = False
    try:
        subprocess.run(
            prefix + [str(initdb), "-D", str(data), "-U", user, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, text=True,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = subprocess.run(
            prefix + [str(pg_ctl), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", str(int(timeout)), "start"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}{_tail(log)}")
        started = True
        yield PostgresServer(port=port, user=user, password=password, folder=folder)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed: {exc.stdout}{exc.stderr}") from exc
    finally:
        if started:
            subprocess.run(prefix + [str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------- Redis

@dataclass
class RedisServer:
    """A running Redis on 127.0.0.1:`port` that requires `password`."""

    port: int
    password: str
    host: str = "127.0.0.1"

    def url(self, db: int = 0, with_password: bool = True) -> str:
        auth = f":{self.password}@" if with_password and self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(host=self.host, port=self.port, db=db, password=self.password or None)


@contextlib.contextmanager
def redis_server(password: Optional[str] = None, timeout: float = 30) -> Iterator[RedisServer]:
    """redis-server on a free loopback port, nothing saved to disk, stopped afterwards."""
    exe = shutil.which("redis-server")
    if not exe:
        raise ServiceUnavailable("redis-server is not installed: run scripts/setup, or apt-get install redis-server")
    password = password if password is not None else secrets.token_hex(16)  # hex: a leading "--" would read as an option
    folder = _shared_tempdir("assistant-redis-")
    log, port = folder / "redis.log", free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(folder), "--logfile", str(log)]
    if password:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=die_with_parent)
    try:
        wait_for_port(port, process, timeout, "redis-server", log)
        server = RedisServer(port=port, password=password)
        server.client().ping()
        yield server
    finally:
        _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------- nginx

@dataclass
class NginxProxy:
    """nginx on 127.0.0.1:`port` in front of `upstreams`; `conf` is the rendered deploy/nginx.conf."""

    port: int
    upstreams: List[str]
    folder: Path
    conf: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def access_log(self) -> List[str]:
        log = self.folder / "access.log"
        return log.read_text(errors="replace").splitlines() if log.exists() else []


def render_nginx_conf(prefix: Path, listen: str, upstreams: Sequence[str], template: Path = NGINX_TEMPLATE) -> str:
    """deploy/nginx.conf with its placeholders filled."""
    servers = "\n        ".join(f"server {address};" for address in upstreams)
    lines = template.read_text(encoding="utf-8").splitlines(keepends=True)
    for name, value in (("@PREFIX@", str(prefix)), ("@LISTEN@", listen), ("@RASA_SERVERS@", servers)):
        if not any(name in line and not line.lstrip().startswith("#") for line in lines):
            raise ValueError(f"{template} has no {name} placeholder")
        lines = [line if line.lstrip().startswith("#") else line.replace(name, value) for line in lines]
    return "".join(lines)


@contextlib.contextmanager
def nginx_proxy(upstreams: Sequence[str], timeout: float = 30) -> Iterator[NginxProxy]:
    """Debian's nginx with deploy/nginx.conf, balancing over `upstreams` ("host:port"), stopped afterwards."""
    exe = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
    if not exe:
        raise ServiceUnavailable("nginx is not installed: run scripts/setup, or apt-get install nginx")
    folder = _shared_tempdir("assistant-nginx-")
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(render_nginx_conf(folder, f"127.0.0.1:{port}", upstreams))
    args = [exe, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    check = subprocess.run(args[:-2] + ["-t"], capture_output=True, text=True)
    if check.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"nginx -t refused the rendered deploy/nginx.conf:\n{check.stderr}")
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=die_with_parent)
    try:
        wait_for_port(port, process, timeout, "nginx", folder / "error.log")
        yield NginxProxy(port=port, upstreams=list(upstreams), folder=folder, conf=conf)
    finally:
        _stop(process, signal.SIGQUIT)  # graceful: finish the requests in flight
        shutil.rmtree(folder, ignore_errors=True)
