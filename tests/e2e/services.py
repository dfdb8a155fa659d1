"""The real PostgreSQL, Redis and nginx of bot/local_services.py, and the pytest fixtures that start them.

The servers themselves live in `bot.local_services` so that the benchmarks
(bot/bench_soak.py, bot/bench_replicas.py) start the same ones; the tests
import them from here as before. The fixtures skip, with the reason, only
when the server's binary is missing.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from bot.local_services import (  # noqa: F401  (imported from here by the e2e tests)
    NGINX_TEMPLATE,
    PG_BIN,
    NginxProxy,
    PostgresServer,
    RedisServer,
    ServiceUnavailable,
    _as_postgres_user,
    free_port,
    nginx_proxy,
    postgres_server,
    redis_server,
    render_nginx_conf,
    wait_for_port,
)


def _enter_or_skip(stack: contextlib.ExitStack, manager):
    try:
        return stack.enter_context(manager)
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 for the module (skipped only when it is not installed)."""
    with contextlib.ExitStack() as stack:
        yield _enter_or_skip(stack, postgres_server())


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A real Redis for the module (skipped only when it is not installed)."""
    with contextlib.ExitStack() as stack:
        yield _enter_or_skip(stack, redis_server())
