"""The launcher's endpoints.yml: tracker store and lock store from the settings, passwords only in the environment."""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
import yaml

from bot.serve import (
    LOCK_PASSWORD_ENV,
    LOCK_STORE_TYPE,
    TRACKER_PASSWORD_ENV,
    Assistant,
    tracker_store_section,
)

TRACKER_URL = "postgresql://rasa:test-s3cr%40t@db.example:5433/conversations?sslmode=require"
LOCK_URL = "redis://:test-r3dis-pw@redis.example:6380/2"


def endpoints(tmp_path: Path, extra_ports=(), **env: str):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    environ.update(ASSISTANT_SETTINGS=str(tmp_path / "none.yml"), **env)
    assistant = Assistant(Path("model.tar.gz"), environ, 5005, 5055, tmp_path, Path("credentials.yml"), extra_rasa_ports=extra_ports)
    path = assistant.endpoints_file()
    return path.read_text(), yaml.safe_load(path.read_text()), assistant._store_env


def test_postgresql_url_becomes_rasas_sql_store_keys():
    section, secrets = tracker_store_section(TRACKER_URL)

    assert section["dialect"] == "postgresql" and section["url"] == "db.example" and section["port"] == 5433
    assert section["db"] == "conversations" and section["username"] == "rasa"
    assert section["query"] == {"sslmode": "require"}
    assert section["password"] == "${" + TRACKER_PASSWORD_ENV + "}" and secrets == {TRACKER_PASSWORD_ENV: "test-s3cr@t"}


def test_without_urls_conversations_stay_in_the_sqlite_file(tmp_path):
    _, written, secrets = endpoints(tmp_path, ASSISTANT_TRACKER_DB=str(tmp_path / "tracker.db"))

    assert written["tracker_store"]["dialect"] == "sqlite" and written["tracker_store"]["db"] == str(tmp_path / "tracker.db")
    assert written["lock_store"] == {"type": "bot.lock_store.PromptInMemoryLockStore"} and secrets == {}  # bot/endpoints.yml's


def test_urls_give_postgresql_and_redis_with_the_passwords_left_out_of_the_file(tmp_path, monkeypatch):
    from rasa.utils.endpoints import read_endpoint_config

    text, written, secrets = endpoints(tmp_path, extra_ports=[5006], ASSISTANT_TRACKER_URL=TRACKER_URL, ASSISTANT_LOCK_STORE_URL=LOCK_URL)

    assert "s3cr" not in text and "test-r3dis-pw" not in text
    assert written["lock_store"] == {"type": LOCK_STORE_TYPE, "url": "redis.example", "port": 6380, "db": 2,
                                     "key_prefix": "northwind", "password": "${" + LOCK_PASSWORD_ENV + "}"}
    # Rasa fills the ${...} from the environment the launcher gives it.
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ACTION_SERVER_SECRET", "test-action-secret")  # the action endpoint's header names it too
    tracker = read_endpoint_config(str(tmp_path / "endpoints.yml"), "tracker_store")
    lock = read_endpoint_config(str(tmp_path / "endpoints.yml"), "lock_store")
    assert tracker.url == "db.example" and tracker.kwargs["password"] == "test-s3cr@t"
    assert lock.url == "redis.example" and lock.kwargs["password"] == "test-r3dis-pw"


def test_rasa_builds_the_prompt_in_memory_lock_store_from_the_shipped_endpoints(monkeypatch):
    from rasa.core.lock_store import InMemoryLockStore, LockStore
    from rasa.utils.endpoints import read_endpoint_config

    from bot.lock_store import LOCK_POLL_S, PromptInMemoryLockStore

    monkeypatch.setenv("ACTION_SERVER_SECRET", "test-action-secret")  # the file names it; Rasa expands it on read
    store = LockStore.create(read_endpoint_config(str(Path(__file__).parents[1] / "bot" / "endpoints.yml"), "lock_store"))
    assert isinstance(store, PromptInMemoryLockStore) and isinstance(store, InMemoryLockStore)
    assert inspect.signature(store.lock).parameters["wait_time_in_seconds"].default == LOCK_POLL_S


def test_several_replicas_are_refused_without_a_shared_lock_store(tmp_path):
    with pytest.raises(RuntimeError, match="ASSISTANT_LOCK_STORE_URL"):
        endpoints(tmp_path, extra_ports=[5006], ASSISTANT_TRACKER_URL=TRACKER_URL)
