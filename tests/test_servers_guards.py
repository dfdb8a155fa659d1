"""The servers' guards as units: the API token header, the action-server secret, the ingress keys and the shared bucket."""
from __future__ import annotations

import asyncio
import re
import time

import pytest
import yaml

from bot.action_server import secret_refusal
from bot.channels.api_guard import token_refusal
from bot.channels.ingress import client_address, credential_key

TOKEN = "k" * 10 + "0123456789abcdefghijklmnopqrstuv"


# ------------------------------------------------------------------ Rasa API token


@pytest.mark.parametrize("path, query, header, why", [
    ("/conversations/c1/tracker", True, f"Bearer {TOKEN}", "not accepted in the URL"),
    ("/conversations/c1/tracker", False, None, "Authorization: Bearer"),
    ("/model", False, "Bearer wrong", "wrong API token"),
    ("/model/parse", False, f"Basic {TOKEN}", "Authorization: Bearer"),
    ("/status", False, "Bearer ", "Authorization: Bearer"),
    ("/domain", False, TOKEN, "Authorization: Bearer"),
])
def test_api_requests_without_the_header_token_are_refused(path, query, header, why):
    assert why in (token_refusal(path, query, header, TOKEN) or "")


def test_the_header_token_passes_and_other_routes_are_not_touched():
    assert token_refusal("/conversations/c1/tracker", False, f"Bearer {TOKEN}", TOKEN) is None
    assert token_refusal("/conversations/c1/tracker", False, f"bearer  {TOKEN} ", TOKEN) is None
    assert token_refusal("/webhooks/rest/webhook", True, None, TOKEN) is None
    assert token_refusal("/", False, None, TOKEN) is None
    assert token_refusal("/version", False, None, TOKEN) is None


def test_without_a_configured_token_the_api_answers_nobody():
    assert "no token configured" in token_refusal("/conversations/c1/tracker", False, "Bearer anything", "")


# ------------------------------------------------------------------ action server secret


def test_the_action_secret_is_required_and_compared():
    assert secret_refusal(None, TOKEN) == "missing X-Action-Secret header"
    assert secret_refusal("", TOKEN) == "missing X-Action-Secret header"
    assert secret_refusal("wrong", TOKEN) == "wrong X-Action-Secret"
    assert secret_refusal("\udcff", TOKEN) == "wrong X-Action-Secret"  # undecodable bytes: refused, not a 500
    assert secret_refusal(TOKEN, TOKEN) is None
    assert "answers nobody" in secret_refusal(TOKEN, "")


def test_the_launcher_writes_the_secret_header_by_name_only(tmp_path):
    from bot.serve import Assistant

    env = {"ASSISTANT_TRACKER_DB": str(tmp_path / "t.db"), "ACTION_SERVER_SECRET": TOKEN}
    servers = Assistant(tmp_path / "m.tar.gz", env, 5005, 5055, tmp_path, tmp_path / "credentials.yml")
    text = servers.endpoints_file().read_text()
    endpoint = yaml.safe_load(text)["action_endpoint"]
    assert endpoint == {"url": "http://localhost:5055/webhook", "headers": {"X-Action-Secret": "${ACTION_SERVER_SECRET}"}}
    assert TOKEN not in text


def test_an_api_token_that_starts_with_a_dash_reaches_rasas_argument_parser_as_a_value(tmp_path):
    """A token_urlsafe secret starts with "-" one time in 64: `rasa run --auth-token -x...` exited 2."""
    import argparse

    from rasa.cli.arguments.run import add_server_arguments

    from bot.serve import Assistant

    env = {"ASSISTANT_TRACKER_DB": str(tmp_path / "t.db"), "RASA_API_TOKEN": "-" + TOKEN}
    servers = Assistant(tmp_path / "m", env, 5005, 5055, tmp_path, tmp_path / "c.yml")
    args = servers.rasa_args(5005, tmp_path / "e.yml")
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    parsed, _ = parser.parse_known_args([arg for arg in args[2:] if not arg.startswith("--model")])
    assert parsed.auth_token == servers._bridge_token and parsed.enable_api


def test_the_launcher_binds_loopback_and_opens_the_api_only_with_a_token(tmp_path):
    from bot.serve import Assistant

    env = {"ASSISTANT_TRACKER_DB": str(tmp_path / "t.db")}
    args = Assistant(tmp_path / "m", env, 5005, 5055, tmp_path, tmp_path / "c.yml").rasa_args(5005, tmp_path / "e.yml")
    assert args[args.index("--interface") + 1] == "127.0.0.1"
    assert "--enable-api" not in args and "--auth-token" not in args
    env = dict(env, RASA_API_TOKEN=TOKEN, ASSISTANT_BIND_HOST="0.0.0.0")
    args = Assistant(tmp_path / "m", env, 5005, 5055, tmp_path, tmp_path / "c.yml").rasa_args(5005, tmp_path / "e.yml")
    assert "--enable-api" in args and not any(TOKEN in arg for arg in args)  # the operator's secret is not in `ps`
    [given] = [arg for arg in args if arg.startswith("--auth-token=")]
    assert re.fullmatch(r"--auth-token=[0-9a-f]{64}", given)
    assert args[args.index("--interface") + 1] == "0.0.0.0"


# ------------------------------------------------------------------ ingress keys


def test_client_address_trusts_only_the_configured_proxies():
    assert client_address("10.0.0.5", "1.2.3.4", 0) == "10.0.0.5"  # no proxy: the header is the client's word
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4", 1) == "1.2.3.4"  # the ingress appended the real one
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", 2) == "1.2.3.4"
    assert client_address("10.0.0.5", "1.2.3.4", 2) == "10.0.0.5"  # fewer entries than proxies: not believed
    assert client_address("10.0.0.5", None, 1) == "10.0.0.5"


def test_credential_key_hashes_the_bearer_token():
    key = credential_key(f"Bearer {TOKEN}")
    assert key and TOKEN not in key and len(key) == 32 and key == credential_key(f"bearer {TOKEN}")
    assert credential_key(None) is None and credential_key("Basic abc") is None and credential_key("Bearer ") is None


# ------------------------------------------------------------------ the shared bucket (real Redis)


def test_the_redis_bucket_is_atomic_shared_and_refills():
    from redis import asyncio as aioredis

    from bot.ratelimit import SharedRateLimiter
    from tests.e2e.services import ServiceUnavailable, redis_server

    try:
        context = redis_server()
        server = context.__enter__()
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
    try:
        async def run():
            one = SharedRateLimiter(aioredis.from_url(server.url(2)), per_minute=60, burst=5, prefix="t")
            two = SharedRateLimiter(aioredis.from_url(server.url(2)), per_minute=60, burst=5, prefix="t")
            waits = await asyncio.gather(*[(one if i % 2 else two).acquire("k") for i in range(12)])
            assert sorted(waits)[:5] == [0.0] * 5 and all(w > 0 for w in sorted(waits)[5:])  # 5 in all, not 5 each
            assert await one.acquire("other") == 0.0  # keys are separate
            await asyncio.sleep(1.1)
            assert await two.acquire("k") == 0.0  # one token a second came back
            ttl = await one.client.pttl("t:k")
            assert 0 < ttl <= 6000  # the bucket expires once it would be full again
        asyncio.run(run())
    finally:
        context.__exit__(None, None, None)


def test_the_redis_bucket_falls_back_to_this_process_when_redis_is_down(caplog):
    from redis import asyncio as aioredis

    from bot.ratelimit import SharedRateLimiter
    from tests.e2e.services import free_port

    limiter = SharedRateLimiter(aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5),
                                per_minute=60, burst=2, prefix="t")

    async def run():
        return [await limiter.acquire("k") for _ in range(3)]

    started = time.monotonic()
    waits = asyncio.run(run())
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0 and time.monotonic() - started < 10
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # said once, not per request


def test_the_token_bridge_refuses_to_start_on_another_sanic(monkeypatch):
    from types import SimpleNamespace

    import sanic

    from bot.channels import api_guard

    monkeypatch.setattr(sanic, "__version__", "22.12.0")
    app = SimpleNamespace(ctx=SimpleNamespace(), register_middleware=lambda *a: None)
    with pytest.raises(RuntimeError, match="Sanic 22.12.0"):
        api_guard.install(app)


def test_the_shipped_endpoints_file_names_the_action_secret():
    from core.settings import PROJECT_ROOT

    text = (PROJECT_ROOT / "bot" / "endpoints.yml").read_text()
    assert yaml.safe_load(text)["action_endpoint"]["headers"] == {"X-Action-Secret": "${ACTION_SERVER_SECRET}"}


def test_socket_events_over_the_address_limit_are_dropped_and_told_once():
    from types import SimpleNamespace

    from bot.channels import ingress
    from core.settings import Settings

    handled, emitted = [], []

    async def user_uttered(sid, data):
        handled.append(data)

    async def emit(event, data, room=None):
        emitted.append((event, data, room))

    request = SimpleNamespace(ip="10.0.0.9")
    sio = SimpleNamespace(handlers={"/": {"user_uttered": user_uttered, "connect": user_uttered}}, emit=emit,
                          get_environ=lambda sid: {"sanic.request": request, "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9"})
    app = SimpleNamespace(ctx=SimpleNamespace(ingress_limits=ingress.IngressLimits(
        Settings(ingress_per_address_per_minute=6, ingress_per_address_burst=3, ingress_proxy_hops=1))))
    ingress.guard_socketio(app, sio)
    assert sio.handlers["/"]["connect"] is user_uttered  # connect and disconnect are not wrapped

    async def flood():
        for i in range(8):
            await sio.handlers["/"]["user_uttered"]("sid1", {"message": str(i)})

    asyncio.run(flood())
    assert [d["message"] for d in handled] == ["0", "1", "2"]  # the burst, then dropped
    assert len(emitted) == 1 and emitted[0][0] == "bot_uttered" and emitted[0][2] == "sid1"
    assert emitted[0][1]["notice"] == "rate_limited" and emitted[0][1]["retry_after"] >= 1
    assert app.ctx.ingress_limits.by_address.limiter._buckets.keys() == {"203.0.113.9"}  # the trusted proxy's entry
