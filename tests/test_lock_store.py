"""The Redis lock store several Rasa servers share (bot/lock_store.py), on a real Redis.

Processes stand in for Rasa replicas: each handles several messages of the
same conversation at once, under the lock, doing a read-modify-write that
loses updates if two ever run together. With the atomic lock store every
update survives, nothing fails with a LockError and the lock is gone at the
end. Also: the store is what Rasa builds from the endpoints.yml section the
launcher writes, with the password taken from the environment.
"""
from __future__ import annotations

import asyncio
import multiprocessing

import pytest

from bot.lock_store import AtomicRedisLockStore
from bot.serve import LOCK_STORE_TYPE, lock_store_section
from tests.e2e.services import redis  # noqa: F401  (a fixture)

PROCESSES, MESSAGES = 3, 4


def test_rasa_builds_the_atomic_store_from_the_launchers_endpoints(redis, tmp_path, monkeypatch):  # noqa: F811
    import yaml
    from rasa.core.lock_store import LockStore
    from rasa.utils.endpoints import read_endpoint_config

    section, secrets = lock_store_section(redis.url(3), key_prefix="northwind")
    assert section["type"] == LOCK_STORE_TYPE and section["db"] == 3
    assert redis.password not in yaml.safe_dump(section)  # the password stays in the environment
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(yaml.safe_dump({"lock_store": section}))
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)

    store = LockStore.create(read_endpoint_config(str(endpoints), "lock_store"))

    assert isinstance(store, AtomicRedisLockStore)
    assert store.key_prefix.startswith("northwind:")
    first, second = store.issue_ticket("conv-x"), store.issue_ticket("conv-x")
    assert second == first + 1
    assert redis.client(3).exists(store.key_prefix + "conv-x")  # in the configured Redis database
    store.cleanup("conv-x", first)
    assert redis.client(3).exists(store.key_prefix + "conv-x")  # the second ticket still waits
    store.cleanup("conv-x", second)
    assert not redis.client(3).exists(store.key_prefix + "conv-x")


def _replica(port: int, password: str, barrier, results) -> None:
    import redis as redis_client

    store = AtomicRedisLockStore(host="127.0.0.1", port=port, db=1, password=password)
    counter = redis_client.Redis(host="127.0.0.1", port=port, db=2, password=password)
    failures = []

    async def handle_message() -> None:
        try:
            async with store.lock("same-conversation", wait_time_in_seconds=0.01):
                seen = int(counter.get("turns") or 0)
                await asyncio.sleep(0.005)  # the turn's work, while the conversation is locked
                counter.set("turns", seen + 1)
        except Exception as exc:  # reported to the test
            failures.append(f"{type(exc).__name__}: {exc}")

    async def main() -> None:
        barrier.wait()  # every replica starts at the same moment
        await asyncio.gather(*(handle_message() for _ in range(MESSAGES)))

    asyncio.run(main())
    results.put(failures)


def test_replicas_never_hold_one_conversations_lock_at_once(redis):  # noqa: F811
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=_replica, args=(redis.port, redis.password, barrier, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    failures = [f for _ in processes for f in results.get(timeout=5)]
    assert failures == []
    assert int(redis.client(2).get("turns")) == PROCESSES * MESSAGES  # no update lost: one at a time
    assert redis.client(1).keys("*") == []  # the lock is removed once nobody waits


def test_a_waiting_message_rechecks_its_ticket_promptly_on_redis_too():
    import inspect

    from rasa.core.lock_store import RedisLockStore

    from bot.lock_store import LOCK_POLL_S

    assert issubclass(AtomicRedisLockStore, RedisLockStore)
    assert inspect.signature(AtomicRedisLockStore.lock).parameters["wait_time_in_seconds"].default == LOCK_POLL_S == 0.02


@pytest.mark.parametrize("url", ["http://localhost:6379/1", "redis://localhost:6379/one", "redis:///1"])
def test_a_lock_store_url_that_is_not_redis_is_refused(url):
    with pytest.raises(ValueError, match="lock_store_url|Redis database"):
        lock_store_section(url)
