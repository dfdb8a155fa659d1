"""Abuse limits at the ingress: per client address, per credential, shared by replicas; the per-customer limit keyed on the verified id.

The issue found the only limit keyed on the sender id a client chooses:
rotating ids was unlimited, flooding a victim's id locked the victim out,
and each replica counted alone. Here two Rasa replicas share a Redis, as
behind the Helm chart's ingress (one trusted proxy: each test client is its
own address through ``X-Forwarded-For``), with small limits so that a few
requests reach them:

- per address: 30 at once, then 1 a second (a long-polling widget spends
  a few requests on every message);
- per credential: 6 at once, then 2 a second;
- per customer (the handoff desk): 3 at once, then 1 every 10 s.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import pytest

from bot.ratelimit import RATE_LIMITED_TEXT
from tests.e2e.attacks.conftest import MODES, AttackTarget, http, post_json, start_target, strong
from tests.e2e.services import ServiceUnavailable, redis_server

pytestmark = pytest.mark.e2e

ADDRESS_BURST, CREDENTIAL_BURST, CUSTOMER_BURST = 30, 6, 3
ADDRESS_PER_MINUTE = 12  # slow refills, so that a loaded CI box cannot outpace them between two requests
LIMITS = {
    "ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE": str(ADDRESS_PER_MINUTE),
    "ASSISTANT_INGRESS_PER_ADDRESS_BURST": str(ADDRESS_BURST),
    "ASSISTANT_INGRESS_PER_CREDENTIAL_PER_MINUTE": "12",  # slow refill: a loaded CI box cannot outpace it
    "ASSISTANT_INGRESS_PER_CREDENTIAL_BURST": str(CREDENTIAL_BURST),
    "ASSISTANT_RATE_LIMIT_PER_MINUTE": "6",
    "ASSISTANT_RATE_LIMIT_BURST": str(CUSTOMER_BURST),
    "ASSISTANT_INGRESS_PROXY_HOPS": "1",
}


@pytest.fixture(scope="module", params=MODES)
def limited(request, trained_model, tmp_path_factory):
    """Two Rasa replicas sharing Redis, strict limits, in demo and in production mode."""
    try:
        redis_context = redis_server()
        redis = redis_context.__enter__()
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
    extra = dict(LIMITS, ASSISTANT_LOCK_STORE_URL=redis.url(1), ASSISTANT_LOCK_STORE_KEY_PREFIX=f"limits{request.param}",
                 WEB_CUSTOMER_TOKEN_SECRET=strong())  # the website's key, so the victim can sign in to the widget
    if request.param == "production":
        extra["REST_CALLER_TOKENS"] = f"backend={strong()},flooder={strong()}"
    target = start_target(trained_model, request.param, tmp_path_factory.mktemp(f"limits-{request.param}"), extra, replicas=2)
    target.secrets.update({k: extra[k] for k in ("WEB_CUSTOMER_TOKEN_SECRET", "REST_CALLER_TOKENS") if k in extra})
    target.redis = redis
    try:
        yield target
    finally:
        target.servers.stop()
        redis_context.__exit__(None, None, None)


def an_address() -> str:
    """A client address of the documentation range, new for every call."""
    return f"198.51.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def caller_token(target: AttackTarget, name: str) -> Optional[str]:
    for entry in target.secrets.get("REST_CALLER_TOKENS", "").split(","):
        if entry.startswith(f"{name}="):
            return entry.split("=", 1)[1]
    return None


def rest(url: str, sender: str, text: str, address: str, token: Optional[str] = None) -> Tuple[int, Dict[str, str], Any]:
    headers = {"X-Forwarded-For": address}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, answer_headers, body = post_json(f"{url}/webhooks/rest/webhook", {"sender": sender, "message": text}, headers)
    try:
        return status, answer_headers, json.loads(body) if body else None
    except ValueError:
        return status, answer_headers, body


def test_rotating_sender_ids_from_one_address_are_refused(limited):
    from concurrent.futures import ThreadPoolExecutor

    address = an_address()
    sent = ADDRESS_BURST + 6
    with ThreadPoolExecutor(max_workers=sent) as pool:  # all at once: faster than the bucket refills
        answers = list(pool.map(lambda _: rest(limited.url, f"rot{uuid.uuid4().hex[:10]}", "hello", address), range(sent)))
    statuses = [a[0] for a in answers]
    limited_answers = [a for a in answers if a[0] == 429]
    assert limited_answers and len(limited_answers) <= sent - ADDRESS_BURST + 1, statuses
    for _, headers, body in limited_answers:
        assert int(headers["Retry-After"]) >= 1
        assert "too many requests from your address" in body["error"]
    # Another address is not affected.
    status, _, _ = rest(limited.url, f"rot{uuid.uuid4().hex[:10]}", "hello", an_address())
    assert status != 429


def test_rotating_sender_ids_and_addresses_with_one_credential_are_refused(limited):
    token = caller_token(limited, "flooder") or strong()  # demo: a made-up one (refused 401, counted all the same)
    statuses = []
    for _ in range(CREDENTIAL_BURST + 10):  # one a time, each from a new address, until the credential's bucket is empty
        status, headers, body = rest(limited.url, f"cred{uuid.uuid4().hex[:10]}", "hi", an_address(), token)
        statuses.append(status)
        if status == 429:
            assert "too many requests with this credential" in body["error"] and int(headers["Retry-After"]) >= 1
            break
    assert 429 in statuses and statuses[:CREDENTIAL_BURST - 1].count(429) == 0, statuses
    assert limited.redis.client(1).keys(f"limits{limited.mode}:ingress:credential:*")  # hashed, shared
    assert not [k for k in limited.redis.client(1).keys("*") if token.encode() in k]  # never in clear


def test_every_webhook_path_is_limited_and_the_refusals_are_counted(limited):
    address = an_address()
    statuses = []
    for _ in range(ADDRESS_BURST + 10):  # until the address's bucket is empty
        statuses.append(http(f"{limited.url}/webhooks/inbox/", headers={"X-Forwarded-For": address})[0])
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and 429 not in statuses[:ADDRESS_BURST - 1], statuses
    status, _, body = http(f"{limited.url}/metrics")
    assert status == 200 and 'assistant_rate_limited_messages_total{channel="ingress:inbox"}' in body.decode()


def test_the_address_limit_is_shared_by_the_replicas(limited):
    """Alternating between the two replicas does not double the allowance: Redis holds one bucket."""
    address = an_address()
    started = time.monotonic()
    statuses = [http(f"{limited.urls[i % 2]}/webhooks/rest/", headers={"X-Forwarded-For": address})[0]
                for i in range(2 * ADDRESS_BURST + 4)]
    elapsed = time.monotonic() - started
    passed = len([s for s in statuses if s != 429])
    assert passed <= ADDRESS_BURST + int(elapsed * ADDRESS_PER_MINUTE / 60) + 1 < 2 * ADDRESS_BURST, (passed, elapsed, statuses)
    assert any(s == 429 for s in statuses[1::2]) and any(s == 429 for s in statuses[0::2])  # both replicas refuse
    keys = limited.redis.client(1).keys(f"limits{limited.mode}:ingress:address:*")
    assert keys, "the buckets are not in Redis"


def _customer_token(target: AttackTarget, customer: str) -> str:
    import jwt

    from core.settings import load_settings

    settings = load_settings(environ=target.env)
    now = int(time.time())
    return jwt.encode({"iss": settings.web_token_issuer, "aud": settings.web_token_audience, "sub": customer,
                       "iat": now, "exp": now + 300}, target.secrets["WEB_CUSTOMER_TOKEN_SECRET"], algorithm="HS256")


async def _widget_chat(url: str, address: str, session: Dict[str, Any], texts: List[str],
                       wait_s: float = 90) -> Tuple[List[Dict[str, Any]], str]:
    """Connect a widget (socket.io) from `address`, open `session`, say `texts`: what the bot said, and the conversation id."""
    import aiohttp
    import socketio

    said: List[Dict[str, Any]] = []
    conversation: List[str] = []
    confirmed = asyncio.Event()
    # Every request of the client comes "from" `address` (engine.io sends custom headers only with its handshake).
    http_session = aiohttp.ClientSession(headers={"X-Forwarded-For": address})
    client = socketio.AsyncClient(reconnection=False, http_session=http_session)

    @client.on("session_confirm")
    async def _confirm(data):
        conversation.append(data)
        confirmed.set()

    @client.on("bot_uttered")
    async def _uttered(data):
        said.append(data)

    # Long-polling: the aiohttp here is too old for python-socketio's websocket client.
    await client.connect(url, transports=["polling"], socketio_path="/socket.io", wait_timeout=30)
    try:
        await client.emit("session_request", session)
        await asyncio.wait_for(confirmed.wait(), 30)
        for text in texts:
            try:
                await client.emit("user_uttered", {"message": text, "session_id": conversation[0]})
            except socketio.exceptions.BadNamespaceError:
                break  # a long-polling request was refused (429) and the client gave up its connection
            await asyncio.sleep(0.05)  # one long-polling POST each (engine.io refuses more than 16 packets in one)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not said and client.connected:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the rest of the answer
        return said, conversation[0]
    finally:
        if client.connected:
            await client.disconnect()
        await http_session.close()


def test_flooding_a_victims_id_does_not_lock_the_victim_out_of_the_widget(limited):
    victim = f"cust{uuid.uuid4().hex[:10]}"
    token = caller_token(limited, "backend")  # production: a trusted caller misused; demo: open REST
    attacker = an_address()
    answers = [rest(limited.url, victim, "hello", attacker, token) for _ in range(CUSTOMER_BURST + 3)]
    refused = [a for a in answers if a[0] == 429]
    assert refused, [a[0] for a in answers]
    # The flood ran into the per-customer limit of its own namespaced conversation (REST: 429 and the notice).
    assert all([m.get("text") for m in a[2]] == [RATE_LIMITED_TEXT] for a in refused), refused
    # The victim, signed in to the widget from their own address, is answered as usual.
    said, _ = asyncio.run(_widget_chat(limited.url, an_address(), {"customer_token": _customer_token(limited, victim)}, ["hello"]))
    texts = [m.get("text") for m in said]
    assert said and RATE_LIMITED_TEXT not in texts and not any(m.get("notice") == "rate_limited" for m in said), said
    assert limited.conversations_like(f"web:{victim}")  # their own conversation
    assert [c for c in limited.conversations_like(victim) if c.startswith("rest:")]  # the flood went to another one


def _refused_at_the_door(url: str, channel: str) -> float:
    """`assistant_rate_limited_messages_total{channel="ingress:<channel>"}` on the Rasa server at `url`."""
    status, _, body = http(f"{url}/metrics")
    assert status == 200
    found = re.search(rf'^assistant_rate_limited_messages_total{{channel="ingress:{channel}"}} (\S+)$', body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_socket_io_messages_count_against_the_address(limited):
    """A widget that floods messages from one address has the ones over the limit refused at the door, unread."""
    before = _refused_at_the_door(limited.url, "web")
    sent = ADDRESS_BURST + 10
    said, conversation = asyncio.run(_widget_chat(limited.url, an_address(), {}, [f"message {i}" for i in range(sent)], wait_s=20))
    time.sleep(2)
    read = [e for e in limited.stored_events(conversation) if e["type_name"] == "user"]
    assert len(read) < sent
    # Refused as socket.io events, or with the long-polling requests that carried them.
    assert _refused_at_the_door(limited.url, "web") > before, said
