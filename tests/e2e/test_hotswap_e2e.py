"""Hot swap end to end: two Rasa replicas and the action server switch to a promoted model without a restart.

The real servers (`bot.serve.Assistant`): one action server and two Rasa
replicas sharing one model folder (a Redis lock store, as replicas need). The
folder starts with a release naming the trained model; the promoted model is
the same archive with every response prefixed (`bot.bench_load.repack_with_marker`),
so each answer says which model gave it. While customers keep talking to both
replicas, a release naming the marked model is published: no message fails,
both replicas and the action server report the new version on ``/health``
and ``/metrics`` within a bounded time, each switch is a row of the audit
trail, and every answer after that comes from the new model. A release whose archive is broken is not served: the
replicas keep answering from the model they had and ``/health`` says why.
A rollback release switches them back.
"""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import sqlalchemy as sa

from bot.bench_load import repack_with_marker
from bot.serve import Assistant
from core import db, releases
from core.settings import PROJECT_ROOT
from tests.e2e.conftest import rest_send, start_showing_logs
from tests.e2e.services import free_port, redis  # noqa: F401  (redis: the module-scoped fixture)

pytestmark = pytest.mark.e2e

MARKER = "[promoted] "
POLL_SECONDS = 0.5
SWITCH_BOUND_S = 120.0  # a poll interval plus loading the whole graph on this shared 2-core machine


def get_json(url: str) -> Dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a 503 /health still says what it serves
        return json.loads(exc.read())


def release_of(url: str) -> Dict[str, Any]:
    return get_json(f"{url}/health")["release"]


def wait_for(what: str, condition: Callable[[], bool], timeout: float = SWITCH_BOUND_S) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


@pytest.fixture(scope="module")
def replicas(trained_model, redis, tmp_path_factory):
    """The action server and two Rasa replicas serving from one model folder with a release in it."""
    workdir = tmp_path_factory.mktemp("hotswap")
    model_dir = workdir / "models"
    model_dir.mkdir()
    served = Path(shutil.copy(trained_model["model"], model_dir / "served.tar.gz"))
    marked = repack_with_marker(served, model_dir / "promoted.tar.gz", MARKER)
    first = releases.publish(parts={}, rasa_model=served, model_dir=model_dir)
    env = dict(trained_model["env"])
    env.update(
        ASSISTANT_MODEL_DIR=str(model_dir), ASSISTANT_MODEL_POLL_SECONDS=str(POLL_SECONDS),
        ASSISTANT_LOCK_STORE_URL=redis.url(1), ASSISTANT_LOCK_STORE_KEY_PREFIX="hotswap",
        ASSISTANT_DATABASE_URL=f"sqlite:///{workdir / 'assistant.db'}", ASSISTANT_TRACKER_DB=str(workdir / "tracker.db"),
        ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0",  # every test customer comes from this one address
    )
    ports = [free_port(), free_port()]
    servers = Assistant(served, env, ports[0], free_port(), workdir, PROJECT_ROOT / "bot" / "credentials.yml",
                        log_dir=workdir, extra_rasa_ports=ports[1:])
    start_showing_logs(servers, workdir)
    try:
        yield {"servers": servers, "model_dir": model_dir, "served": served, "marked": marked, "first": first}
    finally:
        servers.stop()


def answers(url: str, sender: str, text: str = "hello") -> List[str]:
    return [m.get("text") or "" for m in rest_send(url, sender, text, timeout=120)]


def test_each_server_reports_the_release_it_serves(replicas):
    servers, first = replicas["servers"], replicas["first"]
    for url in [*servers.urls, servers.action_url]:
        wait_for(f"{url} serving {first.version}", lambda: release_of(url)["version"] == first.version, 30)
        assert release_of(url)["state"] == "serving"
    for url in servers.urls:
        assert not any(t.startswith(MARKER) for t in answers(url, "before-swap"))
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
        assert f'version="{first.version}"' in metrics and "assistant_release_info" in metrics


def test_a_promotion_reaches_every_replica_while_customers_talk_and_no_message_fails(replicas):
    servers = replicas["servers"]
    failures: List[str] = []
    sent = {"n": 0}
    stop = threading.Event()

    def customer(number: int, url: str) -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            try:  # a new customer every message: no one customer's rate limit is reached
                if not answers(url, f"swap-{number}-{turn}", "hello" if turn % 2 else "what is the exchange rate abroad"):
                    failures.append(f"{url}: no answer")
            except Exception as exc:  # noqa: BLE001 - every kind of failure is what this test counts
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
            sent["n"] += 1
            time.sleep(0.25)

    talkers = [threading.Thread(target=customer, args=(n, url)) for n, url in enumerate(servers.urls * 2)]
    for t in talkers:
        t.start()
    try:
        time.sleep(2)
        promoted = releases.publish(parts={}, rasa_model=replicas["marked"], model_dir=replicas["model_dir"])
        for url in [*servers.urls, servers.action_url]:
            wait_for(f"{url} serving {promoted.version}", lambda: release_of(url)["version"] == promoted.version)
        time.sleep(3)  # customers keep talking to the new model
    finally:
        stop.set()
        for t in talkers:
            t.join(timeout=180)
    took = {url: release_of(url)["switched_at"] - promoted.promoted_at for url in [*servers.urls, servers.action_url]}
    sys.stderr.write(f"hot swap: {sent['n']} messages during the swap; seconds from publish to switch: "
                     + ", ".join(f"{u} {s:.1f}" for u, s in took.items()) + "\n")
    assert not failures, failures[:5]
    assert all(0 <= s <= SWITCH_BOUND_S for s in took.values())
    for url in servers.urls:
        assert all(t.startswith(MARKER) for t in answers(url, "after-swap")), "an answer came from the old model"
        assert f'version="{promoted.version}"' in urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    with db.connect(servers.env["ASSISTANT_DATABASE_URL"]).connect() as conn:  # each switch is in the audit trail
        actors = conn.execute(sa.select(db.audit_log.c.actor).where(db.audit_log.c.action == "model.reload",
                                                                    db.audit_log.c.target == promoted.version)).scalars().all()
    assert sorted(a.split("@")[0] for a in actors) == ["actions", "rasa", "rasa"]


def test_a_broken_release_keeps_the_served_model_and_health_says_why_then_a_rollback_switches_back(replicas):
    servers, model_dir = replicas["servers"], replicas["model_dir"]
    serving = release_of(servers.urls[0])["version"]
    broken = model_dir / "broken.tar.gz"
    broken.write_bytes(replicas["marked"].read_bytes()[:5000])  # cut short, as a failed copy would leave it
    bad = releases.publish(parts={}, rasa_model=broken, model_dir=model_dir)
    for url in servers.urls:
        wait_for(f"{url} refusing {bad.version}", lambda: release_of(url)["state"] == "reload_failed")
        release = release_of(url)
        assert release["version"] == serving and release["failed_version"] == bad.version
        assert "broken.tar.gz" in release["error"]
        assert all(t.startswith(MARKER) for t in answers(url, "during-broken")), "the served model kept answering"
        assert "assistant_reload_failed{process=\"rasa\"} 1.0" in urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    back = releases.publish(parts={}, rasa_model=replicas["served"], action="rollback", model_dir=model_dir)
    for url in servers.urls:
        wait_for(f"{url} serving {back.version}", lambda: release_of(url)["version"] == back.version)
        assert release_of(url)["state"] == "serving" and release_of(url)["error"] is None
        assert not any(t.startswith(MARKER) for t in answers(url, "after-rollback"))
