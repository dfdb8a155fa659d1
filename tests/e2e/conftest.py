"""The `assistant` fixture: the demo assistant trained once and served for real.

It trains the Rasa model from `config.yml` (with shorter epochs, so the suite
stays fast), builds the answer index and the recommender into a temporary
folder, starts the real action server and Rasa server on free ports, and
talks to them through the REST channel.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import yaml

from bot.serve import Assistant, prepare
from core.processes import project_env
from core.settings import PROJECT_ROOT
from tests.e2e.services import free_port  # noqa: F401  (also imported from here by other modules)

# Fewer epochs than production: the tests check behaviour, not accuracy.
TEST_EPOCHS = {"nlu.TransformerIntentClassifier": 6, "TEDPolicy": 30}

# Secrets the channel tests sign their requests with (never used outside tests).
TEST_SECRETS = {
    "SLACK_TOKEN": "xoxb-test-token",
    "SLACK_SIGNING_SECRET": "test-signing-secret",
    "TELEGRAM_TOKEN": "123456:test-telegram-token",
    "TELEGRAM_SECRET_TOKEN": "test-telegram-secret",
    "TELEGRAM_VERIFY": "northwind_test_bot",
    "RASA_API_TOKEN": "test-api-token",
    "REST_CALLER_TOKENS": "e2e=test-rest-caller-token",
}
# The REST caller the tests post as: customer `x` talks in conversation rest:e2e:x.
TEST_REST_CALLER, TEST_REST_TOKEN = TEST_SECRETS["REST_CALLER_TOKENS"].split("=", 1)


def conversation_of(sender: str, caller: str = TEST_REST_CALLER) -> str:
    """The conversation id of REST customer `sender` posted by `caller` (an id with a channel prefix is kept)."""
    return sender if ":" in sender else f"rest:{caller}:{sender}"


def rest_caller(env: Dict[str, str]) -> tuple:
    """(name, token) of the first REST caller in `env`; ("demo", None) when none is configured (demo mode)."""
    entries = [e for e in env.get("REST_CALLER_TOKENS", "").split(",") if "=" in e]
    return tuple(entries[0].strip().split("=", 1)) if entries else ("demo", None)


def test_config(path: Path) -> Path:
    """config.yml with the test epochs."""
    config = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text())
    for part in config.get("pipeline", []) + config.get("policies", []):
        if part["name"] in TEST_EPOCHS:
            part["epochs"] = TEST_EPOCHS[part["name"]]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rest_send(base_url: str, sender: str, text: str, metadata: Optional[Dict[str, Any]] = None, timeout: float = 60,
              token: Optional[str] = TEST_REST_TOKEN) -> List[Dict[str, Any]]:
    """`text` from customer `sender` through the REST channel of the server at `base_url`, as the
    caller whose bearer `token` is given (None: no credential, demo mode's caller ``demo``); the bot's messages."""
    body: Dict[str, Any] = {"sender": sender, "message": text}
    if metadata is not None:
        body["metadata"] = metadata
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base_url}/webhooks/rest/webhook", data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class RunningAssistant:
    """Handle the tests use: URLs, the database URL and a REST `send`."""

    url: str
    db_url: str
    env: Dict[str, str]
    servers: Assistant
    workdir: Path

    def send(self, sender: str, text: str, metadata: Optional[Dict[str, Any]] = None, timeout: float = 60) -> List[Dict[str, Any]]:
        """Send `text` as customer `sender` through the REST channel (as this server's REST caller); the bot's messages."""
        return rest_send(self.url, sender, text, metadata, timeout, token=rest_caller(self.env)[1])

    def conversation_of(self, sender: str) -> str:
        """The conversation id `send` uses for customer `sender` (``rest:<caller>:<sender>``)."""
        return conversation_of(sender, rest_caller(self.env)[0])

    def inbox_account(self, role: str = "agent", display_name: Optional[str] = None) -> tuple:
        """A new inbox account with `role` in this server's database; (username, password) to sign in with."""
        from tests.e2e.inbox_client import inbox_account

        return inbox_account(self.db_url, role, display_name)

    def tracker(self, sender: str) -> Dict[str, Any]:
        """The conversation tracker of REST customer `sender` (or of a namespaced conversation id) through Rasa's HTTP API."""
        token = self.env.get("RASA_API_TOKEN", "")
        request = urllib.request.Request(f"{self.url}/conversations/{self.conversation_of(sender)}/tracker",
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def start_showing_logs(servers: Assistant, workdir: Path) -> Assistant:
    """Start `servers`; when they fail, stop them and print the tail of their logs before raising."""
    try:
        return servers.start()
    except RuntimeError:
        servers.stop()
        for name in ("actions", "rasa"):
            log = workdir / f"{name}.log"
            if log.exists():
                sys.stderr.write(f"--- {name}.log (tail) ---\n" + log.read_text(errors="replace")[-4000:])
        raise


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Dict[str, Any]:
    """Model archive, index and recommender trained once per test session."""
    workdir = tmp_path_factory.mktemp("assistant")
    env = project_env(
        ASSISTANT_DATABASE_URL=f"sqlite:///{workdir / 'assistant.db'}",
        ASSISTANT_INDEX_DIR=str(workdir / "index"),
        ASSISTANT_RECOMMENDER_DIR=str(workdir / "recommender"),
        ASSISTANT_TRACKER_DB=str(workdir / "tracker.db"),
        **TEST_SECRETS,
    )
    reuse = os.environ.get("ASSISTANT_TEST_MODEL")  # speeds up local reruns
    model_dir = Path(reuse).parent if reuse else workdir / "models"
    model = prepare(env, test_config(workdir / "config.yml"), model_dir)
    return {"model": model, "env": env, "workdir": workdir}


@pytest.fixture(scope="session")
def assistant(trained_model) -> RunningAssistant:
    """The real Rasa server and action server, running for the whole session."""
    env = dict(trained_model["env"])
    env["ASSISTANT_RASA_PORT"] = str(free_port())
    env["ASSISTANT_ACTION_PORT"] = str(free_port())
    # Demo mode: the demo page signs in ?customer=<id> (the widget tests); REST posts with the test caller's credential.
    env["ASSISTANT_ENV"] = "demo"
    # The whole suite comes from one address: the per-address ingress limit is off here
    # (tests/e2e/attacks/test_limits.py tests it).
    env["ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE"] = "0"
    # Slack's and Telegram's APIs are replaced at the network edge by local
    # stand-ins that the channel tests start on these ports.
    env["SLACK_API_BASE_URL"] = f"http://127.0.0.1:{free_port()}/api/"
    env["TELEGRAM_API_BASE_URL"] = f"http://127.0.0.1:{free_port()}"
    workdir = trained_model["workdir"]
    # The inbox's onboarding page reviews this project (tests/e2e/test_onboarding_inbox.py writes its proposal).
    env["ASSISTANT_ONBOARDING_DIR"] = str(workdir / "onboarding-project")
    env["ASSISTANT_ONBOARDING_TRANSCRIPTS"] = str(workdir / "onboarding-transcripts")
    credentials = PROJECT_ROOT / "bot" / "credentials.yml"
    if not credentials.exists():
        credentials = workdir / "credentials.yml"
        credentials.write_text("rest:\n")
    servers = Assistant(
        trained_model["model"], env, int(env["ASSISTANT_RASA_PORT"]), int(env["ASSISTANT_ACTION_PORT"]),
        workdir, credentials, log_dir=workdir,
    )
    start_showing_logs(servers, workdir)
    yield RunningAssistant(servers.url, env["ASSISTANT_DATABASE_URL"], env, servers, workdir)
    servers.stop()
