"""Attacks on the servers themselves: Rasa's HTTP API, the action server, the listening addresses, production start-up.

An outsider with nothing but HTTP tries what the issue found open against
`make run`: reading a tracker, pushing a bot message to a customer
(``output_channel=latest``), replacing the model through Rasa's API, and
erasing a customer by calling the action server directly. Each is refused,
in demo mode (the API is off there) and in production mode (the API is on,
behind its token in a header). Then production mode's start-up refusal:
the launcher, `rasa run` and the action server each exit naming the problem.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, List

import pytest
import sqlalchemy as sa

from bot.serve import RASA
from core.processes import project_env
from core.settings import PROJECT_ROOT
from tests.e2e.attacks.conftest import http, post_json, production_secrets, strong
from tests.e2e.services import free_port

pytestmark = pytest.mark.e2e

PHISHING = "Your account is locked: confirm your card at http://northwind-secure.example"


def refused(target, status: int) -> bool:
    """401 in both modes: production checks the header; in demo the API is off and the guard says so."""
    return status == 401


def victim_with_a_conversation(target) -> str:
    victim = f"victim{uuid.uuid4().hex[:10]}"
    status, _, _ = target.rest(victim, "hello")
    assert status == 200, status
    assert target.conversations_like(victim), "the victim's conversation was not stored"
    return victim


# ------------------------------------------------------------------ Rasa's HTTP API


def test_rasa_api_refuses_no_token_a_url_token_and_a_wrong_bearer(attack_target):
    victim = victim_with_a_conversation(attack_target)
    conversation = attack_target.conversations_like(victim)[0]
    tracker = f"{attack_target.url}/conversations/{conversation}/tracker"
    real = attack_target.secrets.get("RASA_API_TOKEN", strong())
    for url, headers in [
        (tracker, {}),
        (f"{tracker}?token={real}", {}),  # even the right token: never in the URL
        (f"{tracker}?token=guess", {}),
        (tracker, {"Authorization": f"Bearer {strong()}"}),
        (tracker, {"Authorization": f"Basic {real}"}),
        (tracker, {"Authorization": "Bearer "}),
    ]:
        status, _, body = http(url, headers=headers)
        assert refused(attack_target, status), (url.replace(real, "<token>"), headers, status)
        assert victim not in body.decode(errors="replace")
    if not attack_target.production:
        status, _, body = http(tracker, headers={"Authorization": f"Bearer {real}"})
        assert status == 401 and b"no token configured" in body  # demo: the API is off
    if attack_target.production:
        status, _, body = http(f"{tracker}?token={real}")
        assert b"Authorization: Bearer" in body  # the reason says how to send it
        status, _, body = http(tracker, headers=attack_target.api_headers())
        assert status == 200 and json.loads(body)["sender_id"] == conversation  # the header opens it


def test_rasa_api_refuses_a_pushed_bot_message(attack_target):
    victim = victim_with_a_conversation(attack_target)
    conversation = attack_target.conversations_like(victim)[0]
    before = attack_target.stored_events(conversation)
    event = [{"event": "bot", "text": PHISHING}]
    real = attack_target.secrets.get("RASA_API_TOKEN", strong())
    for suffix, headers in [("", {}), (f"&token={real}", {}), ("", {"Authorization": f"Bearer {strong()}"})]:
        url = f"{attack_target.url}/conversations/{conversation}/tracker/events?output_channel=latest{suffix}"
        status, _, _ = post_json(url, event, headers)
        assert refused(attack_target, status), status
    assert attack_target.stored_events(conversation) == before  # nothing was added to the conversation
    if attack_target.production:
        status, _, body = http(f"{attack_target.url}/conversations/{conversation}/tracker", headers=attack_target.api_headers())
        assert status == 200 and PHISHING not in body.decode()


def test_rasa_api_refuses_to_replace_or_unload_the_model(attack_target, tmp_path):
    fake = tmp_path / "evil.tar.gz"
    fake.write_bytes(b"not a model")
    real = attack_target.secrets.get("RASA_API_TOKEN", strong())
    for suffix, headers in [("", {}), (f"?token={real}", {}), ("", {"Authorization": f"Bearer {strong()}"})]:
        status, _, _ = http(f"{attack_target.url}/model{suffix}", json.dumps({"model_file": str(fake)}).encode(),
                            {"Content-Type": "application/json", **headers}, method="PUT")
        assert refused(attack_target, status), status
        status, _, _ = http(f"{attack_target.url}/model{suffix}", headers=headers, method="DELETE")
        assert refused(attack_target, status), status
    status, _, _ = attack_target.rest(f"after{uuid.uuid4().hex[:8]}", "hello")
    assert status == 200  # still serving its own model


# ------------------------------------------------------------------ the action server


def forget_me_call(sender: str) -> Dict:
    """What Rasa would send the action server to run action_forget_me for `sender`."""
    return {
        "next_action": "action_forget_me",
        "sender_id": sender,
        "version": "3.6.21",
        "domain": {},
        "tracker": {"sender_id": sender, "slots": {}, "latest_message": {"text": "delete my data", "intent": {"name": "forget_me"}},
                    "events": [], "paused": False, "followup_action": None, "active_loop": {}, "latest_action_name": "action_listen"},
    }


def erasure_requests_of(target, fragment: str) -> List[str]:
    engine = sa.create_engine(target.db_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("erasure_requests"):
                return []
            rows = conn.execute(sa.text("SELECT customer_id FROM erasure_requests WHERE customer_id LIKE :f"), {"f": f"%{fragment}%"})
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def test_action_server_refuses_forget_me_without_the_secret(attack_target):
    victim = victim_with_a_conversation(attack_target)
    conversation = attack_target.conversations_like(victim)[0]
    before = attack_target.stored_events(conversation)
    for sender in (victim, conversation):
        for headers in ({}, {"X-Action-Secret": "wrong"}, {"X-Action-Secret": strong()}, {"Authorization": f"Bearer {strong()}"}):
            status, _, body = post_json(f"{attack_target.action_url}/webhook", forget_me_call(sender), headers)
            assert status == 401, (headers, status, body)
            assert b"X-Action-Secret" in body or b"ACTION_SERVER_SECRET" in body
    status, _, _ = http(f"{attack_target.action_url}/actions")
    assert status == 401  # the list of actions is not shown either
    assert erasure_requests_of(attack_target, victim) == []  # nothing recorded, nothing erased
    assert attack_target.stored_events(conversation) == before


def test_action_server_health_is_open_and_says_nothing_else(attack_target):
    status, _, body = http(f"{attack_target.action_url}/health")
    # The release it serves (docs/operations.md), and nothing of customers, secrets or the server's files.
    answer = json.loads(body)
    assert status == 200 and set(answer) == {"status", "release"} and answer["status"] == "ok"
    assert set(answer["release"]) == {"version", "state", "failed_version", "switched_at"}  # no error text


def test_rasa_reaches_the_action_server_with_the_secret_header(attack_target):
    """The header Rasa sends (endpoints.yml names ${ACTION_SERVER_SECRET}) passes: custom actions still answer."""
    from bot.handoff.notices import NOTICES

    endpoints = (attack_target.workdir / "endpoints.yml").read_text()
    assert "${ACTION_SERVER_SECRET}" in endpoints and attack_target.env["ACTION_SERVER_SECRET"] not in endpoints
    sender = f"actions{uuid.uuid4().hex[:8]}"
    status, _, replies = attack_target.rest(sender, "how do I reset my online banking password")
    assert status == 200 and replies
    assert NOTICES["utter_action_unavailable"] not in [r.get("text") for r in replies]  # no custom action failed
    conversation = attack_target.conversations_like(sender)[0]
    custom = [e["action_name"] for e in attack_target.stored_events(conversation)
              if (e["action_name"] or "").startswith("action_") and e["action_name"] not in ("action_listen", "action_session_start")]
    assert custom, "no custom action ran"


# ------------------------------------------------------------------ listening addresses


def _listening_addresses(port: int) -> List[str]:
    """Local addresses with a socket listening on TCP `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                if width == 8:
                    found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))
                    found.append(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def _outside_address() -> str:
    """This machine's address on its way out (not loopback), or '' when it has none."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent
        return probe.getsockname()[0]
    except OSError:
        return ""
    finally:
        probe.close()


def test_local_runs_listen_on_loopback_only(attack_target):
    ports = [int(attack_target.env["ASSISTANT_RASA_PORT"]), int(attack_target.env["ASSISTANT_ACTION_PORT"])]
    outside = _outside_address()
    for port in ports:
        addresses = _listening_addresses(port)
        assert addresses and set(addresses) == {"127.0.0.1"}, (port, addresses)
        if outside and not outside.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((outside, port), timeout=3).close()


# ------------------------------------------------------------------ production start-up


def _production_env(tmp_path: Path, drop: str = "", weak: str = "") -> Dict[str, str]:
    """An environment with every production secret strong and one inbox account, minus `drop`, with `weak` weakened."""
    from bot.security import staff
    from core import db

    database = f"sqlite:///{tmp_path / 'assistant.db'}"
    if drop != "inbox":
        staff.add_account(db.connect(database), "ops-admin", strong(), role="admin")
    env = project_env(ASSISTANT_ENV="production", ASSISTANT_DATABASE_URL=database,
               ASSISTANT_TRACKER_DB=str(tmp_path / "tracker.db"), **production_secrets())
    for name in ("INBOX_OIDC_ISSUER", "INBOX_OIDC_CLIENT_ID", "INBOX_OIDC_CLIENT_SECRET", "WEB_CUSTOMER_TOKEN_PUBLIC_KEY"):
        env.pop(name, None)
    if drop and drop != "inbox":
        env.pop(drop)
    if weak:
        env[weak] = "backend=short" if weak == "REST_CALLER_TOKENS" else "test-api-token"
    return env


@pytest.mark.parametrize("drop, named", [
    ("WEB_CUSTOMER_TOKEN_SECRET", "WEB_CUSTOMER_TOKEN_SECRET"),
    ("REST_CALLER_TOKENS", "REST caller"),
    ("RASA_API_TOKEN", "RASA_API_TOKEN"),
    ("ACTION_SERVER_SECRET", "ACTION_SERVER_SECRET"),
    ("inbox", "inbox accounts"),
])
def test_the_launcher_refuses_production_without_a_secret(tmp_path, drop, named):
    env = _production_env(tmp_path, drop=drop)
    result = subprocess.run([sys.executable, "-m", "bot.serve"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 78, result.stderr[-2000:]
    assert "refuses to start in production mode" in result.stderr and named in result.stderr
    assert "training" not in result.stdout  # refused before any work


@pytest.mark.parametrize("weak", ["RASA_API_TOKEN", "REST_CALLER_TOKENS", "ACTION_SERVER_SECRET"])
def test_the_launcher_refuses_production_with_a_weak_secret(tmp_path, weak):
    env = _production_env(tmp_path, weak=weak)
    result = subprocess.run([sys.executable, "-m", "bot.serve"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 78 and "weak" in result.stderr and weak in result.stderr, result.stderr[-2000:]


def test_the_launcher_refuses_an_unknown_mode(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), ASSISTANT_ENV="prod")
    result = subprocess.run([sys.executable, "-m", "bot.serve"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 78 and "ASSISTANT_ENV must be one of local, demo, production" in result.stderr


def test_the_launcher_refuses_an_api_without_a_token(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), ASSISTANT_ENV="local")
    env.pop("RASA_API_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "bot.serve", "--enable-api"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--enable-api needs RASA_API_TOKEN" in result.stderr


def test_rasa_run_started_directly_refuses_production_without_a_secret(tmp_path, trained_model):
    """Not only the launcher: `rasa run` itself (the Docker image's command) exits, naming the problem."""
    env = _production_env(tmp_path, drop="RASA_API_TOKEN")
    port = free_port()
    result = subprocess.run(
        [RASA, "run", "--model", str(trained_model["model"]), "--port", str(port), "--interface", "127.0.0.1",
         "--credentials", str(PROJECT_ROOT / "bot" / "credentials.yml"), "--endpoints", str(PROJECT_ROOT / "bot" / "endpoints.yml")],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 78, (result.returncode, result.stderr[-2000:])
    assert "the Rasa server refuses to start in production mode" in result.stderr + result.stdout
    assert "RASA_API_TOKEN is not set" in result.stderr + result.stdout


def test_the_action_server_started_directly_refuses_production_without_its_secret(tmp_path):
    env = _production_env(tmp_path, weak="ACTION_SERVER_SECRET")
    result = subprocess.run([sys.executable, "-m", "bot.action_server", "--actions", "bot.actions", "--port", str(free_port())],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 78
    assert "the action server refuses to start in production mode" in result.stderr
    assert "ACTION_SERVER_SECRET is weak" in result.stderr


def test_make_run_is_demo_mode_and_says_what_it_relaxes(trained_model, tmp_path):
    """`make run` runs `python -m bot.serve --demo`, which prints the relaxations before anything else."""
    import signal

    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "\t$(PY) -m bot.serve --demo\n" in makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0] + "\n"
    env = dict(trained_model["env"], ASSISTANT_MODEL_DIR=str(Path(trained_model["model"]).parent),
               ASSISTANT_RASA_PORT=str(free_port()), ASSISTANT_ACTION_PORT=str(free_port()),
               ASSISTANT_DATABASE_URL=f"sqlite:///{tmp_path / 'a.db'}", ASSISTANT_TRACKER_DB=str(tmp_path / "t.db"))
    env.pop("ASSISTANT_ENV", None)
    process = subprocess.Popen([sys.executable, "-m", "bot.serve", "--demo"], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: List[str] = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("Production mode (ASSISTANT_ENV=production) refuses all of these."):
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    text = "\n".join(lines)
    assert "DEMO MODE (ASSISTANT_ENV=demo)" in text, text[-2000:]
    assert "REST is open" in text and "/webhooks/web/?customer=<id>" in text and "demo inbox admin account" in text
