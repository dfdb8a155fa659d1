"""Start the assistant: train what is missing, run the action server and the Rasa server.

    python -m bot.serve --demo     # what `make run` calls: demo mode, relaxations printed
    python -m bot.serve            # the mode ASSISTANT_ENV says (default local)
    python -m bot.serve --retrain  # retrain the Rasa model first

The mode (`bot.security.mode`) goes to both servers as ASSISTANT_ENV; in
production mode the launcher refuses to start, naming every missing or weak
secret (and so do the servers themselves). Both servers listen on the
``bind_host`` setting (127.0.0.1 unless a container says 0.0.0.0). Rasa's
HTTP API is on only with RASA_API_TOKEN (sent as ``Authorization: Bearer``);
``--enable-api`` without it is refused. The action server answers only
requests with ``X-Action-Secret`` (ACTION_SERVER_SECRET; outside production
a random one is made for the run when unset).

Prints the URLs once both answer; Ctrl-C (SIGINT) or SIGTERM stops both.
The same `Assistant` class starts the real servers for the end-to-end tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from bot.insight.experiments import ExperimentConfigError, load_experiments
from core.crypto import EncryptionKeyError, check_key
from core.logs import write_logging_config
# Model files are read before start: Rasa would serve on without a model that fails to load.
from core.model_check import ModelCheckError, check_artifacts, check_model, newest_model
from core.processes import project_env
from core.settings import BRIDGE_TOKEN_VARIABLE, PROJECT_ROOT, SENTIMENT_TRAINING_DATA, get_settings, load_settings

PYTHON = sys.executable
RASA = str(Path(PYTHON).with_name("rasa"))


def served_model(model_dir: Path) -> Optional[Path]:
    """The archive to serve: the one the release in force names (`core.releases`), else the newest in `model_dir`.

    A release marker that cannot be read stops the start, naming the file.
    """
    from bot.model_swap import archive_path
    from core import releases

    try:
        release = releases.read(model_dir)
    except releases.ReleaseFileError as exc:
        raise SystemExit(f"cannot choose the Rasa model to serve: {exc}") from exc
    if release is not None and release.rasa_model:
        return archive_path(release.rasa_model)
    return newest_model(model_dir)


def run_step(args: List[str], env: Dict[str, str], what: str) -> None:
    """Run one preparation command, failing loudly with what it was for."""
    print(f"==> {what}", flush=True)
    result = subprocess.run(args, cwd=PROJECT_ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed (exit {result.returncode}): {' '.join(args)}")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def prepare(env: Dict[str, str], config: Path, model_dir: Path, retrain: bool = False) -> Path:
    """Build the answer index, the recommender and the Rasa model when missing."""
    settings_env = {k: v for k, v in env.items() if k.startswith("ASSISTANT_")}
    index_dir = Path(settings_env.get("ASSISTANT_INDEX_DIR", get_settings().index_dir))
    rec_dir = Path(settings_env.get("ASSISTANT_RECOMMENDER_DIR", get_settings().recommender_dir))
    if _has_module("training.build_index") and not index_dir.exists():
        run_step([PYTHON, "-m", "training.build_index", "--out", str(index_dir)], env, "building the answer index")
    if _has_module("training.train_recommender") and not rec_dir.exists():
        if _has_module("training.generate_demo_customers"):
            run_step([PYTHON, "-m", "training.generate_demo_customers"], env, "generating synthetic demo customers")
            if _has_module("training.segments"):  # the inbox's segment page (docs/analytics.md)
                run_step([PYTHON, "-m", "training.segments"], env, "finding customer segments")
        run_step([PYTHON, "-m", "training.train_recommender", "--out", str(rec_dir)], env, "training the recommender")
    # The sentiment model (nlu/sentiment.py): trained when missing (or of the first version, without its
    # fine-tuned reader) and the airline data is beside the clone; without it the desk's frustration
    # detector decides alone.
    from nlu import SENTIMENT_DIR as sentiment_dir, sentiment_model_is_current

    if _has_module("training.train_sentiment") and not sentiment_model_is_current(sentiment_dir) \
            and SENTIMENT_TRAINING_DATA.exists():
        try:
            run_step([PYTHON, "-m", "training.train_sentiment", "--quiet"], env, "training the sentiment model")
        except SystemExit as exc:  # not fatal: the assistant serves without it
            print(f"warning: {exc}; frustration is judged by the word-list detector alone", flush=True)
    model = served_model(model_dir)
    if model is None or retrain:
        run_step(
            [RASA, "train", "--config", str(config), "--domain", "bot/domain", "--data", "bot/data", "--out", str(model_dir), "--quiet"],
            env,
            "training the Rasa model (intent adapter inside)",
        )
        model = newest_model(model_dir)
    if model is None:
        raise SystemExit(f"no model archive in {model_dir} after training")
    return model


def wait_until_up(url: str, process: subprocess.Popen, timeout: float, name: str) -> None:
    """Poll `url` until it answers 200, or fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer at {url} within {timeout:.0f}s")


# Rasa reads these from its environment (endpoints.yml says `password: ${...}`),
# so a password never lands in the endpoints file the launcher writes.
TRACKER_PASSWORD_ENV = "ASSISTANT_TRACKER_STORE_PASSWORD"
LOCK_PASSWORD_ENV = "ASSISTANT_LOCK_STORE_PASSWORD"
# Rasa's Redis lock store with atomic ticket changes (bot/lock_store.py); same keys as `type: redis`.
LOCK_STORE_TYPE = "bot.lock_store.AtomicRedisLockStore"


# Each server answers one message at a time per core, so its numeric libraries get one
# thread each (the environment may say otherwise). Without this, numpy's OpenBLAS keeps
# a second thread spinning on sched_yield after every small matrix product: it burnt
# about 60% of a core in the Rasa server under load and halved its throughput.
SERVING_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# The Rasa server's listen queue (Rasa reads SANIC_BACKLOG; Sanic's default is 100). In a burst
# (150 msg/s of new customers, each on a new connection) a queue of 100 filled while the event loop
# was busy and the kernel reset the connections past it: 100 of 1,511 burst messages lost to
# ECONNRESET before anything answered them, none with 1024 (docs/benchmarks.md, "Bursts").
LISTEN_BACKLOG = {"SANIC_BACKLOG": "1024"}

# The header the action server checks (bot/action_server.py); endpoints.yml names the variable, never the value.
ACTION_SECRET_ENV = "ACTION_SERVER_SECRET"
ACTION_SECRET_HEADERS = {"X-Action-Secret": "${" + ACTION_SECRET_ENV + "}"}


def check_mode(env: Dict[str, str]) -> str:
    """The mode of a run with `env`, written back into it as ASSISTANT_ENV so both servers get it.

    Raises `bot.security.mode.ModeError` for an unknown mode and, in production,
    `ProductionRefused` naming every missing or weak secret. Outside
    production, an unset ACTION_SERVER_SECRET becomes a random one for this run.
    """
    from bot.security.mode import mode_from, refuse_unsafe_start

    mode = mode_from(env.get("ASSISTANT_ENV") or load_settings(environ=env).env)
    env["ASSISTANT_ENV"] = mode
    refuse_unsafe_start("the assistant", env=env)
    if mode != "production" and not (env.get(ACTION_SECRET_ENV) or "").strip():
        env[ACTION_SECRET_ENV] = secrets.token_urlsafe(32)
    return mode


# Rasa's SQL tracker store with a cache of parsed events (bot/stores.py); same keys as `type: SQL`.
TRACKER_STORE_TYPE = "bot.stores.CachingSQLTrackerStore"


def tracker_store_section(url: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """endpoints.yml `tracker_store` for an SQLAlchemy URL, and the secret env it needs.

    ``postgresql://user:pw@host:5432/db?sslmode=require`` gives type SQL,
    dialect postgresql, url (the host), port, db, username, query and
    ``password: ${ASSISTANT_TRACKER_STORE_PASSWORD}`` with the password in the
    returned environment. Without a password in the URL, libpq's PGPASSWORD
    (or ~/.pgpass) still applies. ``sqlite:///path`` gives the SQLite store.
    """
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"tracker_url is not an SQLAlchemy URL (e.g. postgresql://user@host:5432/db): {url!r}") from exc
    section: Dict[str, Any] = {"type": TRACKER_STORE_TYPE, "dialect": parsed.drivername, "db": parsed.database}
    if parsed.get_backend_name() == "sqlite":
        return section, {}
    if parsed.host:
        section["url"] = parsed.host
    if parsed.port:
        section["port"] = parsed.port
    if parsed.username:
        section["username"] = parsed.username
    if parsed.query:
        section["query"] = dict(parsed.query)
    secrets: Dict[str, str] = {}
    if parsed.password:
        section["password"] = "${" + TRACKER_PASSWORD_ENV + "}"
        secrets[TRACKER_PASSWORD_ENV] = str(parsed.password)
    return section, secrets


def lock_store_section(url: str, key_prefix: str = "") -> Tuple[Dict[str, Any], Dict[str, str]]:
    """endpoints.yml `lock_store` for ``redis://[user:pw@]host:port/db`` (``rediss://`` for TLS)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"lock_store_url must look like redis://host:6379/1, got {url!r}")
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"the Redis database in lock_store_url must be a number, got {db!r}")
    section: Dict[str, Any] = {"type": LOCK_STORE_TYPE, "url": parts.hostname, "port": parts.port or 6379, "db": int(db)}
    if parts.scheme == "rediss":
        section["use_ssl"] = True
    if key_prefix:
        if not key_prefix.isalnum():
            raise ValueError(f"lock_store_key_prefix must be letters and digits only, got {key_prefix!r}")
        section["key_prefix"] = key_prefix
    if parts.username:
        section["username"] = urllib.parse.unquote(parts.username)
    secrets: Dict[str, str] = {}
    if parts.password:
        section["password"] = "${" + LOCK_PASSWORD_ENV + "}"
        secrets[LOCK_PASSWORD_ENV] = urllib.parse.unquote(parts.password)
    return section, secrets


class Assistant:
    """The running servers: the action server and one or more Rasa servers.

    `extra_rasa_ports` starts more Rasa servers (replicas) beside the one on
    `rasa_port`, all sharing the one action server, the tracker store and the
    lock store; more than one needs a shared lock store (`lock_store_url`,
    Redis) so that two replicas never work on one conversation at once.
    `start_actions=False` starts only Rasa servers, for an action server that
    runs elsewhere on `action_port`.
    """

    def __init__(self, model: Path, env: Dict[str, str], rasa_port: int, action_port: int, workdir: Path, credentials: Path,
                 log_dir: Optional[Path] = None, extra_rasa_ports: Sequence[int] = (), start_actions: bool = True):
        self.model, self.env, self.workdir = model, env, workdir
        self.rasa_port, self.action_port = rasa_port, action_port
        self.rasa_ports = [rasa_port, *extra_rasa_ports]
        self.start_actions = start_actions
        self.credentials = credentials
        self.log_dir = log_dir
        self.processes: List[subprocess.Popen] = []
        self.url = f"http://localhost:{rasa_port}"
        self.urls = [f"http://localhost:{port}" for port in self.rasa_ports]
        self._store_env: Dict[str, str] = {}  # store passwords, given to the Rasa servers only
        self.enable_api = bool((env.get("RASA_API_TOKEN") or "").strip())  # Rasa's HTTP API: only with a token
        # What `rasa run --auth-token` gets: a per-run value, not RASA_API_TOKEN, so the operator's
        # secret is not in the process list (`ps`, /proc/*/cmdline), and hex, so it never starts
        # with "-" (argparse read such a token as a missing value and `rasa run` exited 2).
        # bot/channels/api_guard.py checks the header against RASA_API_TOKEN and hands this on.
        self._bridge_token = secrets.token_hex(32) if self.enable_api else ""
        settings = load_settings(environ=env)
        self.bind_host = settings.bind_host
        reach = "localhost" if self.bind_host in ("0.0.0.0", "::", "127.0.0.1") else self.bind_host
        self.action_url = f"http://{reach}:{action_port}"

    def endpoints_file(self) -> Path:
        """endpoints.yml for this run: action server port, tracker store and lock store from settings.

        Tracker store: `tracker_url` (PostgreSQL) when set, else the SQLite file
        `tracker_db`. Lock store: Redis at `lock_store_url` when set, else what
        bot/endpoints.yml says (in memory). Passwords stay in the environment.
        """
        source = PROJECT_ROOT / "bot" / "endpoints.yml"
        template = (yaml.safe_load(source.read_text()) if source.exists() else None) or {}
        template["action_endpoint"] = {"url": f"{self.action_url}/webhook", "headers": dict(ACTION_SECRET_HEADERS)}
        settings = load_settings(environ=self.env)
        self._store_env = {}
        if settings.tracker_url:
            template["tracker_store"], secrets = tracker_store_section(settings.tracker_url)
            self._store_env.update(secrets)
        else:
            template["tracker_store"] = {"type": TRACKER_STORE_TYPE, "dialect": "sqlite", "db": settings.tracker_db}
        if settings.lock_store_url:
            template["lock_store"], secrets = lock_store_section(settings.lock_store_url, settings.lock_store_key_prefix)
            self._store_env.update(secrets)
        if len(self.rasa_ports) > 1 and (template.get("lock_store") or {}).get("type") not in ("redis", LOCK_STORE_TYPE):
            raise RuntimeError(
                f"{len(self.rasa_ports)} Rasa servers need a shared lock store: set ASSISTANT_LOCK_STORE_URL "
                "(e.g. redis://localhost:6379/1), or one server's in-memory lock lets two replicas "
                "answer one conversation at once"
            )
        path = self.workdir / "endpoints.yml"
        path.write_text(yaml.safe_dump(template, sort_keys=False))
        return path

    def _spawn(self, args: List[str], name: str, extra_env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.log", "ab") if self.log_dir else None
        env = {**SERVING_THREADS, **LISTEN_BACKLOG, **self.env, **(extra_env or {})}
        process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True)
        self.processes.append(process)
        return process

    def rasa_env(self) -> Dict[str, str]:
        """What a Rasa server of this run gets on top of `env`: the stores' passwords, the API token bridge's value."""
        return dict(self._store_env, **({BRIDGE_TOKEN_VARIABLE: self._bridge_token} if self.enable_api else {}))

    def rasa_args(self, port: int, endpoints: Path) -> List[str]:
        """The `rasa run` command line of the Rasa server on `port`."""
        args = [
            RASA, "run", "--model", str(self.model), "--port", str(port),
            "--endpoints", str(endpoints), "--credentials", str(self.credentials), "--interface", self.bind_host,
            "--cors", self.env.get("ASSISTANT_CORS_ORIGINS", f"http://localhost:{port}"),
            "--logging-config-file", str(write_logging_config(self.workdir, "rasa")),  # JSON lines (core/logs.py)
        ]
        if self.enable_api:  # only with its token, which bot/channels/api_guard.py takes from a header
            args += ["--enable-api", f"--auth-token={self._bridge_token}"]
        return args

    def check_mode(self) -> str:
        """`check_mode` of this run's environment."""
        return check_mode(self.env)

    def start(self, timeout: float = 240) -> "Assistant":
        """Start the action server (unless `start_actions` is off), then the Rasa servers, and wait until they answer."""
        self.check_mode()  # production without every secret stops here, each problem named
        check_key(self.env)  # a malformed ASSISTANT_ENCRYPTION_KEY stops both servers here, not one of them later
        check_model(self.model)  # a broken file stops start-up here, named, instead of a server without a model
        settings = load_settings(environ=self.env)
        check_artifacts(Path(settings.index_dir), Path(settings.recommender_dir))
        if self.start_actions:
            actions = self._spawn([PYTHON, "-m", "bot.action_server", "--actions", "bot.actions", "--port", str(self.action_port),
                                   "--host", self.bind_host,
                                   "--logging-config-file", str(write_logging_config(self.workdir, "actions"))], "actions")
            wait_until_up(f"{self.action_url}/health", actions, timeout, "action server")
        endpoints = self.endpoints_file()
        servers = []
        for number, port in enumerate(self.rasa_ports, start=1):
            name = "rasa" if number == 1 else f"rasa-{number}"
            servers.append((self._spawn(self.rasa_args(port, endpoints), name, self.rasa_env()), port, name))
        for server, port, name in servers:  # started together, waited for in turn
            wait_until_up(f"http://localhost:{port}/webhooks/rest/", server, timeout, "Rasa server" if name == "rasa" else f"Rasa server {name}")
        return self

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after 15 s)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()


def demo_inbox_account(database_url: str) -> Optional[Tuple[str, str]]:
    """Demo mode's inbox admin (username, fresh password), or None when an admin disabled it."""
    from bot.security.staff import ensure_demo_account
    from core import db

    username, password = ensure_demo_account(db.connect(database_url))
    return (username, password) if password else None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="retrain the Rasa model even if one exists")
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "config.yml")
    parser.add_argument("--demo", action="store_true", help="demo mode (ASSISTANT_ENV=demo): what `make run` starts")
    parser.add_argument("--enable-api", action="store_true",
                        help="ask for Rasa's HTTP API (refused without RASA_API_TOKEN; on anyway when it is set)")
    parser.add_argument("--onboarded", type=Path, metavar="PROJECT",
                        help="serve the assistant built by `python -m training.onboard build PROJECT` (its model "
                             "and answer index) instead of the demo bank")
    args = parser.parse_args(argv)
    from bot.security.mode import DEMO_RELAXATIONS, ModeError, ProductionRefused

    env = project_env()
    onboarded_model = None
    if args.onboarded is not None:
        project = args.onboarded.resolve()
        onboarded_model = project / "models" / "onboarding.tar.gz"
        if not onboarded_model.is_file():
            print(f"cannot start the assistant: no built model at {onboarded_model}; run "
                  f"python -m training.onboard build {args.onboarded} first", file=sys.stderr)
            return 2
        # The project's own models folder (so no release of the demo bank's is swapped in) and answer index;
        # no recommender (the demo bank's products are not its company's).
        env["ASSISTANT_MODEL_DIR"] = str(project / "models")
        env["ASSISTANT_INDEX_DIR"] = str(project / "index")
        env["ASSISTANT_RECOMMENDER_DIR"] = str(project / "recommender")
    if args.demo:
        env["ASSISTANT_ENV"] = "demo"
    if args.enable_api and not (env.get("RASA_API_TOKEN") or "").strip():
        print("cannot start the assistant: --enable-api needs RASA_API_TOKEN (a random value of 32+ characters), "
              "which callers send as 'Authorization: Bearer <token>'", file=sys.stderr)
        return 2
    try:  # the mode is checked before any training, so a refused start is quick
        mode = check_mode(env)
    except (ModeError, ProductionRefused) as exc:
        print(f"cannot start the assistant: {exc}", file=sys.stderr)
        return ProductionRefused.exit_code
    if mode == "demo":
        print("DEMO MODE (ASSISTANT_ENV=demo): for trying the assistant on this machine, never for customers. It relaxes:")
        for relaxation in DEMO_RELAXATIONS:
            print(f"  - {relaxation}")
        print("Production mode (ASSISTANT_ENV=production) refuses all of these.", flush=True)
    settings = load_settings(environ=env)
    try:
        check_key(env)
        load_experiments(settings.experiments_file)  # before any training: a broken bot/experiments.yml stops here
    except (EncryptionKeyError, ExperimentConfigError) as exc:
        print(f"cannot start the assistant: {exc}", file=sys.stderr)
        return 2
    (PROJECT_ROOT / "var").mkdir(exist_ok=True)
    demo_account = demo_inbox_account(settings.database_url) if mode == "demo" else None
    model = onboarded_model or prepare(env, args.config, Path(settings.model_dir), args.retrain)
    credentials = PROJECT_ROOT / "bot" / "credentials.yml"
    assistant = Assistant(model, env, settings.rasa_port, settings.action_port, Path(tempfile.mkdtemp(prefix="assistant-")), credentials)
    stop = {"now": False}

    def _stop(signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        try:
            assistant.start()
        except ModelCheckError as exc:
            print(f"cannot start the assistant: {exc}", file=sys.stderr)
            return 2
        except ProductionRefused as exc:
            print(f"cannot start the assistant: {exc}", file=sys.stderr)
            return ProductionRefused.exit_code
        print(f"\nThe assistant built in {args.onboarded} is up:" if onboarded_model else "\nNorthwind Bank assistant is up:")
        print(f"  web chat   {assistant.url}/webhooks/web/")
        print(f"  agent inbox {assistant.url}/webhooks/inbox/")
        print(f"  REST API   {assistant.url}/webhooks/rest/webhook")
        print(f"  Slack      {assistant.url}/webhooks/slack/webhook")
        print(f"  Telegram   {assistant.url}/webhooks/telegram/webhook")
        print(f"  actions    {assistant.action_url}/health")
        if demo_account:
            print(f"  demo inbox account: {demo_account[0]} / {demo_account[1]}  (demo mode only; new password every start)")
        print(f"  Rasa HTTP API {'on (Authorization: Bearer $RASA_API_TOKEN)' if assistant.enable_api else 'off (set RASA_API_TOKEN to turn it on)'}")
        print(f"Mode: {mode}; listening on {assistant.bind_host} only" if assistant.bind_host.startswith("127.")
              else f"Mode: {mode}; listening on {assistant.bind_host}")
        print("Press Ctrl-C to stop.", flush=True)
        while not stop["now"] and all(p.poll() is None for p in assistant.processes):
            time.sleep(0.5)
        for process in assistant.processes:
            if process.poll() is not None:
                print(f"a server exited with code {process.returncode}; stopping", file=sys.stderr)
    finally:
        assistant.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
