"""Scale-out end to end: two Rasa replicas behind nginx, conversations in PostgreSQL, locks in Redis.

The topology of docs/deployment.md, run for real on this machine: a real
PostgreSQL 15 (tracker store and the project's tables), a real Redis (lock
store), one action server, two Rasa server replicas started by
`bot.serve.Assistant` with ASSISTANT_TRACKER_URL / ASSISTANT_LOCK_STORE_URL /
ASSISTANT_DATABASE_URL, and Debian's nginx with deploy/nginx.conf in front.

Customers talk in several turns whose messages go to replica 1, replica 2
and nginx in turn, several customers at once, and one customer sends a burst
of messages to both replicas at the same moment. Afterwards every
conversation, read from either replica, holds each customer message exactly
once, in the order sent, each followed by exactly the replies its request
got, and both replicas return the same tracker. Rows a replica writes in the
project's tables (a suggestion click, a rating, a handoff) are seen by the
other at once. The web widget's socket.io works through nginx (websocket and
long-polling).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
import sqlalchemy as sa
import yaml

from bot.serve import Assistant
from core import db
from core.settings import PROJECT_ROOT
from tests.e2e.conftest import conversation_of, rest_send
from tests.e2e.services import (
    NginxProxy,
    RedisServer,
    ServiceUnavailable,
    free_port,
    nginx_proxy,
    postgres_server,
    redis_server,
)

pytestmark = pytest.mark.e2e

RESPONSES = {  # a completed freeze ends with the satisfaction rating (bot/domain/satisfaction.yml)
    name: texts
    for part in ("core.yml", "satisfaction.yml")
    for name, texts in yaml.safe_load((PROJECT_ROOT / "bot" / "domain" / part).read_text(encoding="utf-8"))["responses"].items()
}
LOCK_DB = 1  # the Redis database of the lock store


def response_text(name: str, **slots: str) -> str:
    return RESPONSES[name][0]["text"].format(**slots)


Replies = List[Dict[str, Any]]


@dataclass
class ScaledOut:
    """The running topology: replica URLs, nginx, the databases, Redis."""

    replicas: List[str]
    nginx: NginxProxy
    env: Dict[str, str]
    db_url: str
    tracker_url: str
    redis: RedisServer

    def send(self, base_url: str, sender: str, text: str, timeout: float = 180) -> Replies:
        """`text` from customer `sender` through the REST channel at `base_url`; the bot's messages."""
        return rest_send(base_url, sender, text, timeout=timeout)

    def tracker(self, base_url: str, sender: str) -> Dict[str, Any]:
        """`sender`'s tracker through Rasa's HTTP API at `base_url`, every event."""
        token = self.env["RASA_API_TOKEN"]
        request = urllib.request.Request(f"{base_url}/conversations/{conversation_of(sender)}/tracker?include_events=ALL",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    @property
    def targets(self) -> List[str]:
        """Where messages go in turn: replica 1, replica 2, nginx."""
        return [*self.replicas, self.nginx.url]


def _dump_logs(folder) -> None:
    for log in sorted(folder.glob("*.log")):
        sys.stderr.write(f"--- {log.name} (tail) ---\n" + log.read_text(errors="replace")[-4000:] + "\n")


@pytest.fixture(scope="module")
def scaled_out(trained_model, tmp_path_factory):
    """PostgreSQL + Redis + action server + two Rasa replicas + nginx, for this module."""
    workdir = tmp_path_factory.mktemp("scaleout")
    with contextlib.ExitStack() as stack:
        try:
            pg = stack.enter_context(postgres_server())
            redis = stack.enter_context(redis_server())
        except ServiceUnavailable as exc:
            pytest.skip(str(exc))
        tracker_url = pg.create_database("rasa_tracker")
        db_url = pg.create_database("northwind")
        env = dict(trained_model["env"])
        env.update(
            ASSISTANT_TRACKER_URL=tracker_url,  # the passwords are in these variables, never in a file
            ASSISTANT_LOCK_STORE_URL=redis.url(LOCK_DB),
            ASSISTANT_DATABASE_URL=db_url,
            ASSISTANT_LOCK_STORE_KEY_PREFIX="scaleout",
            SLACK_API_BASE_URL=f"http://127.0.0.1:{free_port()}/api/",
            TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{free_port()}",
        )
        ports = [free_port(), free_port()]
        servers = Assistant(
            trained_model["model"], env, ports[0], free_port(), workdir, PROJECT_ROOT / "bot" / "credentials.yml",
            log_dir=workdir, extra_rasa_ports=ports[1:],
        )
        stack.callback(servers.stop)
        started = time.monotonic()
        try:
            servers.start(timeout=420)
        except RuntimeError:
            _dump_logs(workdir)
            raise
        sys.stderr.write(f"scale-out: action server and two Rasa replicas up in {time.monotonic() - started:.0f}s\n")
        endpoints = (workdir / "endpoints.yml").read_text()
        assert pg.password not in endpoints and redis.password not in endpoints  # from the environment only
        try:
            nginx = stack.enter_context(nginx_proxy([f"127.0.0.1:{port}" for port in ports]))
        except ServiceUnavailable as exc:
            pytest.skip(str(exc))
        yield ScaledOut(servers.urls, nginx, env, db_url, tracker_url, redis)


# --------------------------------------------------------------- what the trackers must show

def turns(events: Sequence[Dict[str, Any]]) -> List[Tuple[str, List[Optional[str]]]]:
    """(customer text, [texts of the bot messages after it]) for each customer message, in order."""
    found: List[Tuple[str, List[Optional[str]]]] = []
    for event in events:
        if event["event"] == "user":
            found.append((event.get("text"), []))
        elif event["event"] == "bot" and found:
            found[-1][1].append(event.get("text"))
    return found


def reply_texts(replies: Replies) -> List[Optional[str]]:
    return [message.get("text") for message in replies]


def same_tracker_on_every_replica(stack: ScaledOut, sender: str) -> List[Dict[str, Any]]:
    """`sender`'s events, after checking that both replicas and nginx return the very same tracker."""
    trackers = [stack.tracker(url, sender) for url in stack.targets]
    first = trackers[0]
    for other in trackers[1:]:
        assert other["events"] == first["events"], f"replicas disagree on {sender}'s events"
        assert other["slots"] == first["slots"]
    return first["events"]


def check_conversation(stack: ScaledOut, sender: str, sent: List[Tuple[str, Replies]], ordered: bool = True) -> None:
    """Each sent message once (in order when `ordered`), each followed by exactly the replies its request got."""
    found = turns(same_tracker_on_every_replica(stack, sender))
    texts = [text for text, _ in found]
    if ordered:
        assert texts == [text for text, _ in sent], f"{sender}: messages missing, repeated or reordered"
    else:
        assert sorted(texts) == sorted(text for text, _ in sent), f"{sender}: messages missing or repeated"
    got = dict(sent)
    for text, bot_texts in found:
        assert bot_texts == reply_texts(got[text]), f"{sender}: the replies to {text!r} are not the ones its request got"


# --------------------------------------------------------------------------- conversations

FREEZE = ["please freeze my card", "12", "it ends in 4821", "/affirm"]
CHATS = [
    ["hi there", "my new card still hasn't arrived, when will it come?", "how can I change the PIN on my card", "great, thanks"],
    ["how much do you charge to send money to France?", "and what about taking cash out of a machine in Paris?",
     "I need a bank statement", "thank you"],
]
BURST = [
    "how do I activate the new card you sent me",
    "how can I add money to my account",
    "is there a fee for bank transfers",
    "how can I cancel the direct debit for my old phone contract",
    "my card got declined at the supermarket even though I have money",
    "the shop refunded me ten days ago but I still can't see the money",
]


def talk(stack: ScaledOut, sender: str, messages: Sequence[str], offset: int) -> List[Tuple[str, Replies]]:
    """One customer's turns, in order, each to the next of replica 1 / replica 2 / nginx."""
    sent = []
    for number, text in enumerate(messages):
        replies = stack.send(stack.targets[(number + offset) % len(stack.targets)], sender, text)
        assert replies, f"no reply to {text!r}"
        sent.append((text, replies))
    return sent


def test_turns_spread_over_replicas_are_kept_once_and_in_order(scaled_out):
    customers = {f"scale-{name}-{uuid.uuid4().hex[:8]}": script
                 for name, script in (("freeze", FREEZE), ("chat1", CHATS[0]), ("chat2", CHATS[1]))}

    with ThreadPoolExecutor(len(customers)) as pool:  # the customers talk at the same time
        futures = {sender: pool.submit(talk, scaled_out, sender, script, offset)
                   for offset, (sender, script) in enumerate(customers.items())}
        conversations = {sender: future.result() for sender, future in futures.items()}

    for sender, sent in conversations.items():
        check_conversation(scaled_out, sender, sent)
    # The form's state crossed replicas: each step was answered knowing the one before.
    freeze = dict(conversations[next(s for s in customers if "-freeze-" in s)])
    assert reply_texts(freeze["please freeze my card"]) == [response_text("utter_ask_card_last_four")]
    assert reply_texts(freeze["12"]) == [response_text("utter_card_last_four_invalid"), response_text("utter_ask_card_last_four")]
    assert reply_texts(freeze["it ends in 4821"]) == [response_text("utter_ask_freeze_confirmed", card_last_four="4821")]
    assert reply_texts(freeze["/affirm"]) == [response_text("utter_card_frozen", card_last_four="4821"),
                                              response_text("utter_ask_satisfaction")]


def test_a_burst_of_one_customers_messages_to_both_replicas_is_processed_one_at_a_time(scaled_out):
    sender = f"scale-burst-{uuid.uuid4().hex[:8]}"
    targets = [scaled_out.replicas[n % 2] for n in range(len(BURST) - 1)] + [scaled_out.nginx.url]

    with ThreadPoolExecutor(len(BURST)) as pool:  # all at the same moment, half to each replica
        futures = [pool.submit(scaled_out.send, url, sender, text) for url, text in zip(targets, BURST)]
        sent = [(text, future.result()) for text, future in zip(BURST, futures)]

    assert all(replies for _, replies in sent)
    # Any order is right (they arrived together), but each message exactly once, with its own replies
    # right after it: two replicas working on the conversation at once would interleave or lose events.
    check_conversation(scaled_out, sender, sent, ordered=False)
    # Every conversation lock released and removed (the ingress limits' buckets share this Redis, and stay).
    assert [k for k in scaled_out.redis.client(LOCK_DB).keys("*") if b":ingress:" not in k] == []


def test_nginx_spreads_requests_over_both_replicas(scaled_out):
    for number in range(4):
        scaled_out.send(scaled_out.nginx.url, f"scale-nginx-{uuid.uuid4().hex[:8]}", "hello")
    upstreams = {line.split("upstream=")[1].split()[0] for line in scaled_out.nginx.access_log()
                 if "/webhooks/rest/webhook" in line and "upstream=" in line}
    assert upstreams == {f"127.0.0.1:{url.rsplit(':', 1)[1]}" for url in scaled_out.replicas}


# ------------------------------------------------------------------ the project's own tables

ABROAD = "which exchange rate does Northwind use"
ABROAD_AGAIN = "what rate will I get when I spend in dollars"


def suggested(replies: Replies) -> List[str]:
    prefix = "/select_suggestion"
    return [json.loads(b["payload"][len(prefix):])["item_id"]
            for r in replies for b in r.get("buttons") or [] if b.get("payload", "").startswith(prefix)]


def test_rows_written_through_one_replica_are_seen_by_the_other(scaled_out):
    replica_1, replica_2 = scaled_out.replicas
    customer = f"scale-tables-{uuid.uuid4().hex[:8]}"
    engine = db.connect(scaled_out.db_url)

    first = scaled_out.send(replica_1, customer, ABROAD)
    assert first[0]["text"] == response_text("utter_exchange_rate")
    offered = suggested(first)
    assert offered, "the answer about exchange rates carries suggestions"
    rate_down = next(b["payload"] for b in first[0]["buttons"] if '"rating":"down"' in b["payload"])

    # A click and a rating through replica 2, on the answer replica 1 gave.
    assert scaled_out.send(replica_2, customer, f'/select_suggestion{{"item_id":"{offered[0]}"}}')
    assert scaled_out.send(replica_2, customer, rate_down)
    with engine.connect() as conn:
        clicks = conn.execute(sa.select(db.interactions.c.item_id).where(
            db.interactions.c.customer_id == customer, db.interactions.c.kind == "click")).scalars().all()
        ratings = conn.execute(sa.select(db.answer_ratings.c.rating).where(
            db.answer_ratings.c.conversation_id == conversation_of(customer))).scalars().all()
    assert clicks == [offered[0]] and ratings == [-1]

    # Replica 1 ranks with the click replica 2 stored.
    again = scaled_out.send(replica_1, customer, ABROAD_AGAIN)
    assert again[0]["text"] == response_text("utter_exchange_rate")
    assert offered[0] not in suggested(again)

    # A handoff queued through replica 1 holds the conversation on replica 2 too.
    handed = scaled_out.send(replica_1, customer, "I want to speak to a real person")
    assert any("in the queue" in (m.get("text") or "") for m in handed)
    waiting = scaled_out.send(replica_2, customer, "are you still there?")
    assert len(waiting) == 1 and "in the queue" in waiting[0]["text"], "replica 2 answered a conversation held for an agent"
    with engine.connect() as conn:
        statuses = conn.execute(sa.select(db.handoffs.c.status).where(
            db.handoffs.c.conversation_id == conversation_of(customer))).scalars().all()
    assert statuses == ["waiting"]


# ------------------------------------------------------------------------ web widget via nginx

# The widget's socket.io (Engine.IO 4) spoken directly: python-socketio's own client
# needs a newer aiohttp than Rasa pins, and the protocol is small.

def _packet(event: str, data: Any) -> str:
    return "42" + json.dumps([event, data])


def _event(packet: str) -> Optional[Tuple[str, Any]]:
    if packet.startswith("42"):
        event, *args = json.loads(packet[2:])
        return event, (args[0] if args else None)
    return None


async def _websocket_turn(base_url: str, customer: str, text: str) -> Dict[str, Any]:
    import websockets

    async def until(ws, wanted: str) -> Any:
        while True:
            packet = await asyncio.wait_for(ws.recv(), 180)
            if packet == "2":  # ping
                await ws.send("3")
            elif packet.startswith("40") and wanted == "connect":
                return None
            elif (_event(packet) or ("", None))[0] == wanted:
                return _event(packet)[1]

    url = base_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url, open_timeout=30) as ws:
        assert (await asyncio.wait_for(ws.recv(), 30)).startswith("0")  # Engine.IO open
        await ws.send("40")
        await until(ws, "connect")
        await ws.send(_packet("session_request", {}))
        conversation = await until(ws, "session_confirm")  # issued by the server: web:anon-<hex>
        await ws.send(_packet("user_uttered", {"message": text}))
        return await until(ws, "bot_uttered"), conversation


def _polling_turn(base_url: str, customer: str, text: str) -> Dict[str, Any]:
    """The same over long-polling: every packet is its own HTTP request through nginx."""
    url = f"{base_url}/socket.io/?EIO=4&transport=polling"

    def get(address: str) -> List[str]:
        with urllib.request.urlopen(address, timeout=180) as response:
            return response.read().decode().split("\x1e")

    def post(address: str, body: str) -> None:
        request = urllib.request.Request(address, data=body.encode(), headers={"Content-Type": "text/plain;charset=UTF-8"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.read().lower() == b"ok"

    [opened] = get(url)
    session = f"{url}&sid={json.loads(opened[1:])['sid']}"

    def until(wanted: str) -> Any:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for packet in get(session):
                if packet == "2":
                    post(session, "3")
                elif packet.startswith("40") and wanted == "connect":
                    return None
                elif (_event(packet) or ("", None))[0] == wanted:
                    return _event(packet)[1]
        raise AssertionError(f"no {wanted} over long-polling")

    post(session, "40")
    until("connect")
    post(session, _packet("session_request", {}))
    conversation = until("session_confirm")  # issued by the server: web:anon-<hex>
    post(session, _packet("user_uttered", {"message": text}))
    return until("bot_uttered"), conversation


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_the_web_widget_talks_through_nginx(scaled_out, transport):
    customer = f"scale-widget-{transport}-{uuid.uuid4().hex[:8]}"

    if transport == "websocket":
        reply, conversation = asyncio.run(_websocket_turn(scaled_out.nginx.url, customer, "hello there"))
    else:
        reply, conversation = _polling_turn(scaled_out.nginx.url, customer, "hello there")

    assert reply["text"] == response_text("utter_greet")
    # The widget hears the reply before Rasa commits the turn (REST answers only after
    # it); reading the tracker earlier would get Rasa's fresh, unsaved one for a new
    # conversation. So wait for the turn to be stored, then compare every replica.
    deadline = time.monotonic() + 30
    while not turns(scaled_out.tracker(scaled_out.replicas[0], conversation)["events"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    # The conversation is in the shared store: both replicas have it.
    [(text, bot_texts)] = turns(same_tracker_on_every_replica(scaled_out, conversation))
    assert text == "hello there" and bot_texts == [response_text("utter_greet")]


# ------------------------------------------------- an agent on one replica, the widget on the other

AGENT_TEXT = "Robin here, how can I help?"


def _inbox(base_url: str, db_url: str):
    """A signed-in agent session on one replica: post(path, body) -> JSON."""
    from tests.e2e.inbox_client import InboxClient, inbox_account

    client = InboxClient(base_url)
    assert client.login(*inbox_account(db_url, "agent", display_name="Robin"))[0] == 200

    def post(path: str, body: Dict[str, Any]) -> Any:
        status, _, answer = client.post(path, body)
        assert status == 200, (status, answer)
        return answer

    return post


async def _agent_reply_reaches_widget(stack: ScaledOut, customer: str) -> Dict[str, Any]:
    """Widget on replica 1 asks for a person; the agent answers from replica 2; what the widget gets."""
    import websockets

    async def until(ws, wanted: str, timeout: float = 180) -> Any:
        deadline = time.monotonic() + timeout  # pings every 25 s would otherwise keep it waiting forever
        while True:
            packet = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            if packet == "2":
                await ws.send("3")
            elif packet.startswith("40") and wanted == "connect":
                return None
            elif (_event(packet) or ("", None))[0] == wanted:
                found = _event(packet)[1]
                if wanted != "bot_uttered" or (found or {}).get("text") == AGENT_TEXT:
                    return found

    url = stack.replicas[0].replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url, open_timeout=30) as ws:
        assert (await asyncio.wait_for(ws.recv(), 30)).startswith("0")
        await ws.send("40")
        await until(ws, "connect")
        await ws.send(_packet("session_request", {}))
        session_id = await until(ws, "session_confirm")
        await ws.send(_packet("user_uttered", {"message": "I want to talk to a real person please"}))
        await until(ws, "handoff_state")
        conversation = session_id
        post = _inbox(stack.replicas[1], stack.env["ASSISTANT_DATABASE_URL"])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, post, f"api/conversations/{conversation}/take", {})
        await loop.run_in_executor(None, post, f"api/conversations/{conversation}/reply", {"text": AGENT_TEXT})
        return await until(ws, "bot_uttered", timeout=60)


def test_an_agent_on_one_replica_reaches_a_widget_on_the_other(scaled_out):
    """socket.io rooms are shared through Redis: the reply is pushed, not left for the next message."""
    reply = asyncio.run(_agent_reply_reaches_widget(scaled_out, f"scale-agent-{uuid.uuid4().hex[:8]}"))
    assert reply["text"] == AGENT_TEXT
