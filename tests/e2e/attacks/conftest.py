"""The `attack_target` fixture: the real servers, attacked from outside, in demo and in production mode.

Every module in this folder acts as an outsider with nothing but HTTP and
socket.io. `attack_target` is parametrized over the two ways the assistant
is run:

- ``demo``: what `make run` starts (`python -m bot.serve --demo`): no
  secrets at all, so Rasa's HTTP API is off and the launcher makes a random
  action-server secret for the run;
- ``production``: ``ASSISTANT_ENV=production`` with a strong random value for
  every secret of the contract (widget token key, a REST caller, the API
  token, the action-server secret, an encryption key) and one inbox account
  created before start, so production mode's start-up checks pass.

Both run from the model trained once per session (`trained_model` in
tests/e2e/conftest.py), each with a database and tracker store of its own.
The handle says which mode it is (`.mode`); a test that only makes sense in
one mode checks it.
"""
from __future__ import annotations

import json
import secrets as random_secrets
import sqlite3
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from bot.serve import Assistant
from core.settings import PROJECT_ROOT
from tests.e2e.conftest import RunningAssistant
from tests.e2e.services import free_port

MODES = ["demo", "production"]

# Every secret the contract names, as the production target sets them.
SECRET_NAMES = (
    "WEB_CUSTOMER_TOKEN_SECRET", "REST_CALLER_TOKENS", "RASA_API_TOKEN", "ACTION_SERVER_SECRET",
    "ASSISTANT_ENCRYPTION_KEY",
)
# The channel-test secrets of the session fixture that are not part of what
# `make run` has: removed, so that the demo target is the plain demo.
NOT_IN_DEMO = ("RASA_API_TOKEN", "ACTION_SERVER_SECRET", "WEB_CUSTOMER_TOKEN_SECRET",
               "WEB_CUSTOMER_TOKEN_PUBLIC_KEY", "REST_CALLER_TOKENS", "ASSISTANT_ENCRYPTION_KEY")

REST_CALLER = "backend"  # the production target's REST caller name
INBOX_ADMIN = "attack-admin"  # the production target's inbox account


def strong(n: int = 32) -> str:
    """A random secret of well over 32 characters."""
    return random_secrets.token_urlsafe(n)


def production_secrets() -> Dict[str, str]:
    """A strong random value for every secret production mode requires."""
    from cryptography.fernet import Fernet

    return {
        "WEB_CUSTOMER_TOKEN_SECRET": strong(),
        "REST_CALLER_TOKENS": f"{REST_CALLER}={strong()}",
        # token_urlsafe starts with "-" one time in 64, which once stopped `rasa run` (exit 2): always here
        "RASA_API_TOKEN": "-" + strong(),
        "ACTION_SERVER_SECRET": strong(),
        "ASSISTANT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }


def add_inbox_account(env: Dict[str, str], name: str, password: str) -> Optional[str]:
    """Create an inbox admin account in the target's database before start; None, or why it could not."""
    try:
        from bot.security import staff
    except ImportError as exc:
        return f"bot.security.staff is not there yet ({exc})"
    from core import db

    staff.add_account(db.connect(env["ASSISTANT_DATABASE_URL"]), name, password, role="admin")
    return None


@dataclass
class AttackTarget(RunningAssistant):
    """The running servers of one mode, as an outsider sees them, and what the test needs to check them."""

    mode: str = "demo"
    action_url: str = ""
    secrets: Dict[str, str] = field(default_factory=dict)
    urls: List[str] = field(default_factory=list)  # every Rasa replica
    notes: List[str] = field(default_factory=list)  # what could not be set up (e.g. no inbox account)

    @property
    def production(self) -> bool:
        return self.mode == "production"

    def rest_caller_token(self) -> Optional[str]:
        """The production target's REST caller credential (None in demo, where REST is open)."""
        first = self.secrets.get("REST_CALLER_TOKENS", "").split(",")[0]
        return first.split("=", 1)[1] if "=" in first else None

    def api_headers(self) -> Dict[str, str]:
        """Headers that open Rasa's HTTP API (empty when the API is off)."""
        token = self.secrets.get("RASA_API_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def rest(self, sender: str, text: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], Any]:
        """`text` from `sender` over REST, as the trusted caller in production (open REST in demo): status, headers, body."""
        token = self.rest_caller_token()
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        status, answer_headers, body = post_json(f"{self.url}/webhooks/rest/webhook", {"sender": sender, "message": text},
                                                 {**auth, **(headers or {})})
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        return status, answer_headers, parsed

    def conversations_like(self, fragment: str) -> List[str]:
        """The stored conversation ids that contain `fragment` (namespaced ids: ``rest:<caller>:<id>``, ``web:...``)."""
        path = Path(self.env["ASSISTANT_TRACKER_DB"])
        if not path.exists():
            return []
        with sqlite3.connect(path) as connection:
            try:
                rows = connection.execute("SELECT DISTINCT sender_id FROM events WHERE sender_id LIKE ?", (f"%{fragment}%",))
                return [row[0] for row in rows]
            except sqlite3.OperationalError:
                return []

    def stored_events(self, conversation_id: str) -> List[Dict[str, Any]]:
        """The tracker store's events of `conversation_id`, read straight from its SQLite file (the insider's view).

        Each row: ``type_name``, ``action_name``, ``intent_name`` (the
        ``data`` column may be encrypted in production).
        """
        path = Path(self.env["ASSISTANT_TRACKER_DB"])
        if not path.exists():
            return []
        with sqlite3.connect(path) as connection:
            connection.row_factory = sqlite3.Row
            try:
                rows = connection.execute(
                    "SELECT type_name, action_name, intent_name FROM events WHERE sender_id = ? ORDER BY id",
                    (conversation_id,),
                ).fetchall()
            except sqlite3.OperationalError:  # no conversation stored yet
                return []
        return [dict(row) for row in rows]


def http(url: str, data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
         method: Optional[str] = None, timeout: float = 60) -> Tuple[int, Dict[str, str], bytes]:
    """One HTTP request as an outsider: (status, headers, body), errors included."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url: str, body: Any, headers: Optional[Dict[str, str]] = None, timeout: float = 60) -> Tuple[int, Dict[str, str], bytes]:
    return http(url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}, timeout=timeout)


def start_target(trained_model: Dict[str, Any], mode: str, workdir: Path, extra_env: Optional[Dict[str, str]] = None,
                 replicas: int = 1) -> AttackTarget:
    """Start the real action server and `replicas` Rasa servers in `mode`, in `workdir`; the handle."""
    env = {k: v for k, v in trained_model["env"].items() if k not in NOT_IN_DEMO}
    env.update(
        ASSISTANT_ENV=mode,
        ASSISTANT_DATABASE_URL=f"sqlite:///{workdir / 'assistant.db'}",
        ASSISTANT_TRACKER_DB=str(workdir / "tracker.db"),
        ASSISTANT_RASA_PORT=str(free_port()),
        ASSISTANT_ACTION_PORT=str(free_port()),
        SLACK_API_BASE_URL=f"http://127.0.0.1:{free_port()}/api/",
        TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{free_port()}",
    )
    notes: List[str] = []
    chosen: Dict[str, str] = {}
    if mode == "production":
        chosen = production_secrets()
        env.update(chosen)
        chosen["INBOX_ACCOUNT"] = f"{INBOX_ADMIN}:{strong()}"
    # Every attack module's requests come from 127.0.0.1: the per-address limit is set high
    # here so that they do not starve each other (test_limits.py starts its own, strict one).
    env.update(ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="6000", ASSISTANT_INGRESS_PER_ADDRESS_BURST="3000")
    env.update(extra_env or {})
    if mode == "production":
        problem = add_inbox_account(env, INBOX_ADMIN, chosen["INBOX_ACCOUNT"].split(":", 1)[1])
        if problem:
            notes.append(f"no inbox account: {problem}")
    credentials = PROJECT_ROOT / "bot" / "credentials.yml"
    servers = Assistant(
        trained_model["model"], env, int(env["ASSISTANT_RASA_PORT"]), int(env["ASSISTANT_ACTION_PORT"]),
        workdir, credentials, log_dir=workdir, extra_rasa_ports=[free_port() for _ in range(replicas - 1)],
    )
    try:
        servers.start()
    except (RuntimeError, SystemExit):
        servers.stop()
        for log in sorted(workdir.glob("*.log")):
            sys.stderr.write(f"--- {log.name} (tail) ---\n" + log.read_text(errors="replace")[-4000:])
        raise
    env = dict(servers.env)  # with what the launcher chose (e.g. the demo run's random action-server secret)
    chosen.setdefault("ACTION_SERVER_SECRET", env.get("ACTION_SERVER_SECRET", ""))
    return AttackTarget(
        url=servers.url, db_url=env["ASSISTANT_DATABASE_URL"], env=env, servers=servers, workdir=workdir,
        mode=mode, action_url=getattr(servers, "action_url", f"http://127.0.0.1:{servers.action_port}"),
        secrets=chosen, urls=list(servers.urls), notes=notes,
    )


@pytest.fixture(scope="session", params=MODES)
def attack_target(request, trained_model, tmp_path_factory) -> Iterator[AttackTarget]:
    """The real servers in demo mode, then in production mode with every secret set strongly.

    Session scope: pytest runs every attack module's demo tests against one
    start, then every production test against another.
    """
    target = start_target(trained_model, request.param, tmp_path_factory.mktemp(f"attack-{request.param}"))
    try:
        yield target
    finally:
        target.servers.stop()
