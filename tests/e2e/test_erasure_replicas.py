"""Erasure end to end: two action-server replicas, one killed in the middle of an erasure, the database down.

The real Rasa server talks to action server A; action server B shares the
project database (a real PostgreSQL) and the tracker store (a SQLite file),
and runs its own privacy worker. A customer talks over two REST callers (two
channels, one verified customer), asks to be erased and confirms. The
test holds a lock on the ``customers`` table, so the worker that claims the
request stops in the middle (after it removed the tracker rows, before the
project rows); that action server is killed and started again; PostgreSQL
is stopped for a few seconds and started again. The request must still
finish: every store clean, the customer told when it was recorded and again
when it finished.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, List

import psycopg2
import pytest
import sqlalchemy as sa

from bot.privacy import requests
from bot.privacy.worker import notice_text
from bot.serve import Assistant, wait_until_up
from core import db
from core.settings import PROJECT_ROOT
from tests.e2e.conftest import TEST_SECRETS, rest_send
from tests.e2e.services import PG_BIN, _as_postgres_user, free_port, postgres  # noqa: F401 (fixture)

BANK_TOKEN = "bank-caller-token-for-the-erasure-test"
LEASE_SECONDS = 15


def _start_actions(env: Dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.action_server", "--actions", "bot.actions", "--port", str(port), "--host", "127.0.0.1"],
        cwd=PROJECT_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    wait_until_up(f"http://127.0.0.1:{port}/health", process, 180, f"action server on {port}")
    return process


def _pg_ctl(pg, command: str) -> None:
    options = (f"-p {pg.port} -k {pg.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")
    args = [str(PG_BIN / "pg_ctl"), "-D", str(pg.folder / "data"), "-w"]
    args += ["-m", "fast", "stop"] if command == "stop" else ["-l", str(pg.folder / "postgres.log"), "-o", options, "start"]
    subprocess.run(_as_postgres_user() + args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def rig(trained_model, postgres, tmp_path_factory):
    """Rasa server -> action server A; action server B beside it; project database on PostgreSQL."""
    workdir = tmp_path_factory.mktemp("erasure")
    env = dict(trained_model["env"])
    env.update(
        ASSISTANT_ENV="demo", ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0",
        ASSISTANT_DATABASE_URL=postgres.create_database("erasure"),
        ASSISTANT_TRACKER_DB=str(workdir / "tracker.db"),
        REST_CALLER_TOKENS=f"{TEST_SECRETS['REST_CALLER_TOKENS']},bank={BANK_TOKEN}",
        ACTION_SERVER_SECRET="erasure-test-action-secret-0123456789abcdef",
        ASSISTANT_PRIVACY_POLL_SECONDS="1", ASSISTANT_ERASURE_LEASE_SECONDS=str(LEASE_SECONDS),
    )
    ports = {"a": free_port(), "b": free_port()}
    replicas = {name: _start_actions(env, port, workdir / f"actions-{name}.log") for name, port in ports.items()}
    rasa_port = free_port()
    servers = Assistant(trained_model["model"], env, rasa_port, ports["a"], workdir, PROJECT_ROOT / "bot" / "credentials.yml",
                        log_dir=workdir, start_actions=False)
    try:
        servers.start()
        yield {"url": servers.url, "env": env, "ports": ports, "replicas": replicas, "workdir": workdir, "pg": postgres}
    finally:
        servers.stop()
        for process in replicas.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _events(rig, conversation: str) -> List[tuple]:
    engine = sa.create_engine(f"sqlite:///{rig['env']['ASSISTANT_TRACKER_DB']}")
    events = sa.table("events", sa.column("id"), sa.column("sender_id"), sa.column("type_name"), sa.column("data"))
    try:
        with engine.connect() as conn:
            return [(t, json.loads(d)) for t, d in conn.execute(
                sa.select(events.c.type_name, events.c.data).where(events.c.sender_id == conversation).order_by(events.c.id))]
    finally:
        engine.dispose()


def _held(engine, customer: str, conversations: List[str]) -> Dict[str, int]:
    ids = [customer, *conversations]
    with engine.connect() as conn:
        held = {"customers": conn.execute(sa.select(sa.func.count()).select_from(db.customers).where(db.customers.c.id.in_(ids))).scalar()}
        for table in (db.interactions, db.answer_ratings, db.handoffs):
            held[table.name] = conn.execute(sa.select(sa.func.count()).select_from(table).where(
                sa.or_(table.c.customer_id.in_(ids), table.c.conversation_id.in_(ids)))).scalar()
        held["review_queue"] = conn.execute(sa.select(sa.func.count()).select_from(db.review_queue).where(db.review_queue.c.conversation_id.in_(ids))).scalar()
        held["identities"] = conn.execute(sa.select(sa.func.count()).select_from(db.identities).where(db.identities.c.customer_id == customer)).scalar()
    return held


def test_erasure_finishes_across_replicas_a_restart_and_the_database_down(rig):
    url, env, pg = rig["url"], rig["env"], rig["pg"]
    customer = f"erase-{uuid.uuid4().hex[:8]}"
    web_token = TEST_SECRETS["REST_CALLER_TOKENS"].split("=", 1)[1]
    first, second = f"rest:e2e:{customer}", f"rest:bank:{customer}"  # two channels, one customer
    rest_send(url, customer, "which exchange rate does Northwind use", token=web_token)
    rest_send(url, customer, "I want to talk to a person", token=BANK_TOKEN)
    engine = db.connect(env["ASSISTANT_DATABASE_URL"])
    with engine.begin() as conn:  # a rating and a review item of theirs, as the actions store them
        conn.execute(db.answer_ratings.insert().values(answer_id="intent:exchange_rate", query="rate?", rating=-1,
                                                       customer_id=customer, conversation_id=first, ts=time.time()))
        conn.execute(db.review_queue.insert().values(conversation_id=first, text="rate?", reason="thumbs_down", status="open",
                                                     created_at=time.time()))
    before = _held(engine, customer, [first, second])
    assert before["identities"] == 2 and before["answer_ratings"] and before["review_queue"], before
    assert _events(rig, first) and _events(rig, second)

    # Hold the customers table: whoever claims the request stops in the middle of it.
    blocker = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="erasure")
    blocker.cursor().execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
    [ask] = rest_send(url, customer, "please delete my data", token=web_token)
    assert [b["payload"] for b in ask["buttons"]] == ["/affirm", "/deny"]
    recorded = rest_send(url, customer, "/affirm", token=web_token)
    assert "recorded your request" in recorded[0]["text"]  # told once

    # In the middle: the conversations' events are gone and that step is recorded (the worker records
    # each step once it is done; killed between the two, the next pass would find nothing to count).
    claimed = _wait(lambda: next((r for r in requests.requests_of(engine, customer)
                                  if r["status"] == "running" and (r.get("removed") or {}).get("tracker_events")
                                  and not _events(rig, first)), None), 30, "a worker in the middle")
    pid = int(claimed["claimed_by"].rsplit(":", 1)[1])
    name = next(n for n, p in rig["replicas"].items() if p.pid == pid)
    os.killpg(pid, signal.SIGKILL)  # the action server dies holding the claim
    rig["replicas"][name].wait(timeout=20)
    rig["replicas"][name] = _start_actions(env, rig["ports"][name], rig["workdir"] / f"actions-{name}.log")

    blocker.close()
    _pg_ctl(pg, "stop")  # the database down for a few seconds
    time.sleep(4)
    for replica_name, port in rig["ports"].items():  # the workers fail their rounds but keep their servers up
        assert rig["replicas"][replica_name].poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.status == 200
    _pg_ctl(pg, "start")

    done = _wait(lambda: next((r for r in requests.requests_of(engine, customer) if r["status"] == "done"), None),
                 LEASE_SECONDS + 60, "the erasure to finish")
    assert done["attempts"] >= 2 and done["claimed_by"] != claimed["claimed_by"]  # taken over after the restart
    assert done["removed"]["tracker_events"] > 0 and done["removed"]["identities"] == 2
    assert len(requests.requests_of(engine, customer)) == 1  # one request, however many attempts

    assert not any(_held(engine, customer, [first, second]).values()), _held(engine, customer, [first, second])
    assert _events(rig, second) == []
    left = _events(rig, first)
    assert [e.get("text") for t, e in left if t == "bot"] == [notice_text()]  # told twice: it has finished
    assert [t for t, _ in left if t == "user"] == []
    # The customer writes again: the conversation starts from the notice, nothing old is written back.
    rest_send(url, customer, "hello", token=web_token)
    texts = [e.get("text") for t, e in _events(rig, first) if t == "user"]
    assert texts == ["hello"]
