"""The channels' webhooks over real HTTP: signatures, secret tokens, malformed bodies.

The channels run in a real Sanic server on loopback, registered under
``/webhooks/<name>/`` as Rasa registers them; the assistant behind them is
replaced by a list that records what reaches it (these tests are about the
channels; tests/e2e/ runs them in front of the real assistant). Outbound
calls go to the local Slack and Telegram stand-ins.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Dict, List, Optional

import pytest
from rasa.core.channels.channel import UserMessage
from sanic import Sanic

from bot.handoff.desk import HandoffDesk
from bot.handoff.queue import HandoffQueue
from bot.channels.rest import RestInput
from bot.channels.slack import SlackInput
from tests.standins import SlackWebAPI, TelegramBotAPI
from bot.channels.telegram import SECRET_HEADER, TelegramInput, callback_data
from bot.channels.web import WebChatInput
from bot.security import identity
from bot.security.callers import CallerRegistry
from core import db
from core.settings import get_settings

SIGNING_SECRET = "test-signing-secret"
TELEGRAM_SECRET = "test-telegram-secret"
TELEGRAM_TOKEN = "123456:test-telegram-token"
REST_TOKEN = "rest-caller-token-for-the-channel-tests-0123456789"
REST_AUTH = {"Content-Type": "application/json", "Authorization": f"Bearer {REST_TOKEN}"}


def free_port() -> int:
    """A loopback port nobody listens on (Sanic reads port 0 as its default, 8000)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServedChannels:
    """Input channels in a real Sanic server on a free loopback port, in a background thread."""

    def __init__(self, channels, engine) -> None:
        self.received: List[UserMessage] = []
        Sanic.test_mode = True  # several apps in one process (Sanic rewrites shared code per app otherwise)
        self.app = Sanic(f"channels_{uuid.uuid4().hex[:8]}")
        # No agent: the desk passes messages straight on, and no encoder is loaded.
        self.app.ctx.handoff_desk = HandoffDesk(self.app, queue=HandoffQueue(engine))
        self.app.ctx.handoff_desk_prepared = True
        self.app.ctx.input_channels = channels

        async def reaches_assistant(message: UserMessage) -> None:
            self.received.append(message)

        for channel in channels:
            self.app.blueprint(channel.blueprint(reaches_assistant), url_prefix=f"/webhooks/{channel.url_prefix()}")
        self._started = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def start(self) -> "ServedChannels":
        threading.Thread(target=self._run, daemon=True).start()
        assert self._started.wait(20), "the channel server did not start"
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            server = await self.app.create_server(host="127.0.0.1", port=free_port(), return_asyncio_server=True)
            await server.startup()
            await server.before_start()
            await server.after_start()
            self.port = server.server.sockets[0].getsockname()[1]
            self._server = server
            self._started.set()
            await server.serve_forever()

        try:
            self._loop.run_until_complete(serve())
        except asyncio.CancelledError:
            pass

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(self._loop)])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str, body: bytes, headers: Dict[str, str]):
        """(status, text) of a POST."""
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=20) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, path: str):
        try:
            with urllib.request.urlopen(self.url + path, timeout=20) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_for_messages(self, count: int, timeout: float = 10) -> List[UserMessage]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)


@pytest.fixture(scope="module")
def slack_api():
    with SlackWebAPI() as api:
        yield api


@pytest.fixture(scope="module")
def telegram_api():
    with TelegramBotAPI() as api:
        yield api


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = db.connect(f"sqlite:///{tmp_path_factory.mktemp('db') / 'assistant.db'}")
    with pytest.MonkeyPatch.context() as patch:  # the channels record identities in this test database
        patch.setattr(identity, "_engine", lambda given=None: given if given is not None else engine)
        identity.clear_cache()
        yield engine
    identity.clear_cache()


@pytest.fixture(scope="module")
def server(slack_api, telegram_api, engine):
    rest = RestInput()
    rest.callers = CallerRegistry({"REST_CALLER_TOKENS": f"backend={REST_TOKEN}"}, engine)
    channels = [
        WebChatInput(),
        rest,
        SlackInput("xoxb-test", slack_signing_secret=SIGNING_SECRET, api_base_url=slack_api.base_url),
        TelegramInput(TELEGRAM_TOKEN, "northwind_test_bot", secret_token=TELEGRAM_SECRET, api_base_url=telegram_api.base_url),
    ]
    served = ServedChannels(channels, engine).start()
    yield served
    served.stop()


@pytest.fixture
def received(server):
    server.received.clear()
    return server.received


# ------------------------------------------------------------------ Slack
def slack_headers(body: bytes, secret: str = SIGNING_SECRET, age_s: float = 0, content_type="application/json"):
    timestamp = str(int(time.time() - age_s))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


def slack_event(text="where is my card?", user="U123", channel="D42") -> bytes:
    event = {"type": "message", "channel_type": "im", "channel": channel, "user": user, "text": text, "ts": "1700000000.1"}
    return json.dumps({"type": "event_callback", "event": event, "authorizations": [{"user_id": "UBOT"}]}).encode()


def test_a_signed_slack_message_reaches_the_assistant_with_its_channel(server, received):
    body = slack_event("where is my card?")
    assert server.post("/webhooks/slack/webhook", body, slack_headers(body)) == (200, "")
    [message] = server.wait_for_messages(1)
    assert (message.text, message.sender_id, message.input_channel) == ("where is my card?", "slack:U123", "slack")
    assert message.metadata["out_channel"] == "D42" and message.metadata["customer_id"] == "slack:U123"
    assert identity.customer_of("slack:U123") == "slack:U123"


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},  # no signature at all
        "forged",
        "stale",
    ],
    ids=["missing", "forged", "stale"],
)
def test_an_unsigned_forged_or_stale_slack_request_is_refused_with_401(server, received, headers):
    body = slack_event("transfer all my money")
    if headers == "forged":
        headers = slack_headers(body, secret="not-the-secret")
    elif headers == "stale":
        headers = slack_headers(body, age_s=6 * 60)
    status, _ = server.post("/webhooks/slack/webhook", body, headers)
    time.sleep(0.3)
    assert status == 401
    assert received == []


def test_a_slack_body_changed_after_signing_is_refused(server, received):
    headers = slack_headers(slack_event("hello"))
    assert server.post("/webhooks/slack/webhook", slack_event("send money to X"), headers)[0] == 401
    assert received == []


def test_slack_without_a_signing_secret_refuses_everything(engine):
    served = ServedChannels([SlackInput("xoxb-test", slack_signing_secret="")], engine).start()
    try:
        body = slack_event()
        assert served.post("/webhooks/slack/webhook", body, slack_headers(body, secret=""))[0] == 401
        assert served.received == []
    finally:
        served.stop()


def test_slack_url_verification_gets_its_challenge_back(server):
    body = json.dumps({"type": "url_verification", "challenge": "c-123"}).encode()
    status, text = server.post("/webhooks/slack/webhook", body, slack_headers(body))
    assert (status, json.loads(text)) == (200, {"challenge": "c-123"})


def test_a_slack_button_press_sends_its_payload(server, received):
    payload = {
        "type": "block_actions",
        "user": {"id": "U123"},
        "channel": {"id": "D42"},
        "message": {"ts": "1700000000.2"},
        "actions": [{"type": "button", "action_id": "rate_up", "value": '/rate_answer{"answer_id":"a1","rating":"up"}'}],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    headers = slack_headers(body, content_type="application/x-www-form-urlencoded")
    assert server.post("/webhooks/slack/webhook", body, headers)[0] == 200
    [message] = server.wait_for_messages(1)
    assert message.text == '/rate_answer{"answer_id":"a1","rating":"up"}' and message.sender_id == "slack:U123"


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"type": "event_callback", "event": "text"}', "application/json"),
        (b"payload=%7Bbroken", "application/x-www-form-urlencoded"),
        (b"nothing=here", "application/x-www-form-urlencoded"),
        (urllib.parse.urlencode({"payload": json.dumps({"user": {"id": "U1"}, "actions": [{"type": "weird"}]})}).encode(),
         "application/x-www-form-urlencoded"),
        (b"hello", "text/plain"),
    ],
    ids=["not-json", "json-list", "event-not-object", "broken-payload", "no-payload", "unsupported-action", "text"],
)
def test_malformed_signed_slack_requests_get_a_4xx(server, received, body, content_type):
    status, _ = server.post("/webhooks/slack/webhook", body, slack_headers(body, content_type=content_type))
    assert 400 <= status < 500
    assert received == []


# --------------------------------------------------------------- Telegram
def telegram_update(text="where is my card?", chat=555) -> bytes:
    message = {"message_id": 1, "date": 1700000000, "chat": {"id": chat, "type": "private"},
               "from": {"id": chat, "is_bot": False, "first_name": "Ada"}, "text": text}
    return json.dumps({"update_id": 1, "message": message}).encode()


def test_a_telegram_update_with_the_secret_token_reaches_the_assistant(server, received):
    headers = {"Content-Type": "application/json", SECRET_HEADER: TELEGRAM_SECRET}
    assert server.post("/webhooks/telegram/webhook", telegram_update("hi @northwind_test_bot"), headers)[0] == 200
    [message] = server.wait_for_messages(1)
    assert (message.text, message.sender_id, message.input_channel) == ("hi", "telegram:555", "telegram")
    assert identity.customer_of("telegram:555") == "telegram:555"


@pytest.mark.parametrize("token", [None, "wrong-secret", ""], ids=["missing", "wrong", "empty"])
def test_a_telegram_update_without_the_secret_token_is_refused_with_401(server, received, token):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers[SECRET_HEADER] = token
    assert server.post("/webhooks/telegram/webhook", telegram_update(), headers)[0] == 401
    time.sleep(0.3)
    assert received == []


@pytest.mark.parametrize(
    "body",
    [b"{oops", b"[]", b'"text"', b'{"update_id": "x", "message": "hello"}',
     b'{"update_id": 3, "callback_query": {"id": "q", "data": "p:x"}}'],
    ids=["not-json", "list", "string", "message-not-object", "callback-without-chat"],
)
def test_malformed_telegram_updates_get_a_4xx(server, received, body):
    headers = {"Content-Type": "application/json", SECRET_HEADER: TELEGRAM_SECRET}
    status, _ = server.post("/webhooks/telegram/webhook", body, headers)
    assert 400 <= status < 500
    assert received == []


def test_a_press_on_an_unknown_telegram_button_is_answered_and_goes_nowhere(server, received, telegram_api):
    update = {"update_id": 9, "callback_query": {
        "id": "cbq-unknown", "from": {"id": 555, "is_bot": False, "first_name": "Ada"}, "chat_instance": "1",
        "data": callback_data("/never_offered"),
        "message": {"message_id": 3, "date": 1700000000, "chat": {"id": 555, "type": "private"}, "text": "…"}}}
    headers = {"Content-Type": "application/json", SECRET_HEADER: TELEGRAM_SECRET}
    assert server.post("/webhooks/telegram/webhook", json.dumps(update).encode(), headers)[0] == 200
    answered = telegram_api.wait_for("answerCallbackQuery", where=lambda p: p.get("callback_query_id") == "cbq-unknown")
    assert answered and received == []


# ------------------------------------------------------------------- REST
@pytest.mark.parametrize(
    "body",
    [b"", b"{bad", b"[]", b'{"message": "hi"}', b'{"sender": "u1"}', b'{"sender": "u1", "message": 5}',
     b'{"sender": "u1", "message": "hi", "metadata": "x"}', b'{"sender": true, "message": "hi"}'],
)
def test_malformed_rest_bodies_get_400(server, received, body):
    assert server.post("/webhooks/rest/webhook", body, REST_AUTH)[0] == 400
    assert received == []


@pytest.mark.parametrize("sender", ["slack:U123", "telegram:555", "web:anon-" + "0" * 32, "a b", "x" * 129])
def test_a_rest_caller_cannot_vouch_for_another_channel_s_customer(server, received, sender):
    body = json.dumps({"sender": sender, "message": "hi"}).encode()
    status, text = server.post("/webhooks/rest/webhook", body, REST_AUTH)
    assert status == 400 and "customer id" in json.loads(text)["error"]
    assert received == []


def test_a_rest_message_reaches_the_assistant_as_the_vouched_customer(server, received):
    metadata = {"customer_id": "c_9999", "channel": "slack", "locale": "en-GB"}
    body = json.dumps({"sender": "c_0001", "message": "hello", "metadata": metadata}).encode()
    status, text = server.post("/webhooks/rest/webhook", body, REST_AUTH)
    assert (status, json.loads(text)) == (200, [])
    assert received[0].sender_id == "rest:backend:c_0001"
    # The client's customer_id and channel are dropped; the rest of its metadata is kept.
    assert received[0].metadata == {"locale": "en-GB", "channel": "rest", "customer_id": "c_0001", "rest_caller": "backend"}
    assert identity.customer_of("rest:backend:c_0001") == "c_0001"


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing credential"),
    ({"Authorization": "Bearer not-the-token"}, "unknown credential"),
    ({"Authorization": f"Basic {REST_TOKEN}"}, "Bearer"),
])
def test_rest_without_a_caller_credential_is_refused_with_401(server, received, headers, reason):
    body = json.dumps({"sender": "c_0001", "message": "hello"}).encode()
    status, text = server.post("/webhooks/rest/webhook", body, {"Content-Type": "application/json", **headers})
    assert status == 401 and reason in json.loads(text)["error"]
    assert received == []


# -------------------------------------------------------------------- web
def test_the_demo_page_embeds_the_widget_with_one_script_tag_and_ignores_customer_outside_demo_mode(server):
    status, page = server.get("/webhooks/web/?customer=c_0042")
    assert status == 200
    assert '<script src="/webhooks/web/widget.js" data-title=' in page
    assert "data-customer" not in page and "Signed in as: Guest" in page


def test_the_demo_page_signs_the_customer_in_demo_mode(engine, monkeypatch):
    monkeypatch.setenv("ASSISTANT_ENV", "demo")
    get_settings.cache_clear()
    try:
        channel = WebChatInput()
        served = ServedChannels([channel], engine).start()
        try:
            page = served.get("/webhooks/web/?customer=c_0042")[1]
            token = page.split('data-customer-token="')[1].split('"')[0]
            assert channel.session_for({"customer_token": token})["conversation_id"] == "web:c_0042"
            # A self-declared id is never read: the visitor gets an anonymous conversation.
            assert channel.session_for({"customer_id": "c_0042"})["conversation_id"].startswith("web:anon-")
        finally:
            served.stop()
    finally:
        monkeypatch.delenv("ASSISTANT_ENV")
        get_settings.cache_clear()


def test_the_widget_bundle_is_served_or_its_absence_explained(server):
    status, text = server.get("/webhooks/web/widget.js")
    assert status == 200 and "session_request" in text or status == 404 and "scripts/setup-web" in text


class WidgetSocket:
    """A socket.io client speaking the widget's events (long-polling: no websocket package needed)."""

    def __init__(self, url: str) -> None:
        import queue

        import socketio

        self.events: "queue.Queue" = queue.Queue()
        self.client = socketio.Client(reconnection=False)
        for name in ("session_confirm", "session_refused", "history"):
            self.client.on(name, lambda data=None, name=name: self.events.put((name, data)))
        self.client.connect(url, socketio_path="/socket.io", transports=["polling"], wait_timeout=10)

    def ask(self, event: str, data: dict, timeout: float = 10):
        """Emit `event` and return the next (event name, data) the server sends."""
        self.client.emit(event, data)
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        """Say goodbye to the server without waiting for the pending long-poll to return (up to 25 s)."""
        import socketio

        for namespace in self.client.namespaces:
            self.client._send_packet(self.client.packet_class(socketio.packet.DISCONNECT, namespace=namespace))
        self.client.eio.disconnect(abort=True)


def test_an_anonymous_visitor_gets_a_server_issued_id_that_only_its_own_browser_can_present_back(server, received):
    first = WidgetSocket(server.url)
    try:
        name, conversation = first.ask("session_request", {})
        assert name == "session_confirm" and identity.ANONYMOUS_CONVERSATION.match(conversation)
        first.client.emit("user_uttered", {"message": "hello"})
        message = server.wait_for_messages(1)[0]
        assert (message.sender_id, message.metadata["customer_id"]) == (conversation, conversation)
    finally:
        first.close()
    again = WidgetSocket(server.url)
    try:  # the returning browser presents the id it was given, and gets the same conversation
        assert again.ask("session_request", {"session_id": conversation}) == ("session_confirm", conversation)
    finally:
        again.close()
    silent = WidgetSocket(server.url)
    try:  # an id issued to a visitor who never wrote is not taken back (nothing to return to)
        unused = silent.ask("session_request", {})[1]
        assert silent.ask("session_request", {"session_id": unused})[1] not in (unused, conversation)
    finally:
        silent.close()
    stranger = WidgetSocket(server.url)
    try:  # ids the server did not issue, and self-declared customers, get a fresh anonymous conversation
        for claim in ({"session_id": "web:anon-" + "0" * 32}, {"session_id": "web:c_0042"},
                      {"customer_id": "c_0042"}, {"session_id": "slack:U123"}, {"session_id": "telegram:555"}):
            name, given = stranger.ask("session_request", claim)
            assert name == "session_confirm" and identity.ANONYMOUS_CONVERSATION.match(given)
            assert given not in (conversation, "web:anon-" + "0" * 32)
    finally:
        stranger.close()


def test_a_widget_token_not_signed_by_the_website_gets_no_session(engine, received):
    import jwt

    from bot.security.tokens import TokenVerifier

    secret = "test-website-secret-0123456789abcdef-long"
    verifier = TokenVerifier([(secret, "HS256", "northwind-website")], "northwind-assistant", 900, 30)
    served = ServedChannels([WebChatInput(verifier=verifier)], engine).start()
    socket = WidgetSocket(served.url)
    try:
        now = int(time.time())
        claims = {"sub": "c_0042", "iss": "northwind-website", "aud": "northwind-assistant", "iat": now, "exp": now + 300}
        forged = jwt.encode(claims, "an-attacker-s-guess-0123456789abcdefghij", "HS256")
        name, refusal = socket.ask("session_request", {"customer_token": forged})
        assert name == "session_refused" and "signature" in refusal["reason"]
        socket.client.emit("user_uttered", {"message": "I am c_0042"})
        assert served.wait_for_messages(1, timeout=2) == []  # no session: nothing reaches the assistant
        assert socket.ask("session_request", {"customer_token": jwt.encode(claims, secret, "HS256")}) == (
            "session_confirm", "web:c_0042")
        socket.client.emit("user_uttered", {"message": "hello"})
        message = served.wait_for_messages(1)[0]
        assert (message.sender_id, message.metadata["customer_id"]) == ("web:c_0042", "c_0042")
        assert identity.customer_of("web:c_0042") == "c_0042"
    finally:
        socket.close()
        served.stop()


# ---------------------------------------------------------------- outbound
def test_slack_answers_go_to_the_configured_api_as_block_kit(slack_api):
    from bot.channels.slack import SlackOutput

    slack_api.clear()
    answer = {"text": "Cards arrive in 3 to 5 days.", "buttons": [
        {"title": "👍", "payload": '/rate_answer{"answer_id":"a1","rating":"up"}'},
        {"title": "👎", "payload": '/rate_answer{"answer_id":"a1","rating":"down"}'},
        {"title": "Virtual card", "payload": '/select_suggestion{"item_id":"virtual-card"}'}]}
    asyncio.run(SlackOutput("xoxb-test", slack_api.base_url).send_response("D42", answer))
    [call] = slack_api.calls
    assert call["method"] == "chat.postMessage" and call["headers"]["Authorization"] == "Bearer xoxb-test"
    blocks = call["params"]["blocks"]
    assert call["params"]["channel"] == "D42"
    assert [e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]] == [
        '/select_suggestion{"item_id":"virtual-card"}',
        '/rate_answer{"answer_id":"a1","rating":"up"}',
        '/rate_answer{"answer_id":"a1","rating":"down"}',
    ]


def test_telegram_answers_go_to_the_configured_api_with_an_inline_keyboard(telegram_api):
    from bot.channels.telegram import TelegramOutput

    telegram_api.clear()
    answer = {"text": "Cards arrive in 3 to 5 days.", "buttons": [
        {"title": "👍", "payload": '/rate_answer{"answer_id":"a1","rating":"up"}'},
        {"title": "👎", "payload": '/rate_answer{"answer_id":"a1","rating":"down"}'},
        {"title": "Virtual card", "payload": '/select_suggestion{"item_id":"virtual-card"}'}]}

    async def send() -> None:
        bot = TelegramOutput(TELEGRAM_TOKEN, telegram_api.base_url)
        try:
            await bot.send_response("555", answer)
        finally:
            await bot.session.close()

    asyncio.run(send())
    [sent] = telegram_api.calls_to("sendMessage")
    assert sent["chat_id"] == "555" and sent["text"] == "Cards arrive in 3 to 5 days."
    keyboard = sent["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in keyboard] == [["Virtual card"], ["👍", "👎"]]
    assert keyboard[0][0]["callback_data"] == callback_data('/select_suggestion{"item_id":"virtual-card"}')


def test_every_rest_answer_says_how_long_its_handler_took(server, received):
    """W3C Server-Timing on /webhooks/rest/webhook: the load benchmark splits a message's latency
    into the server's handler and the wait before it (bot.bench_load.client_shares)."""
    from bot.bench_load import server_timing

    for body, expected in ((json.dumps({"sender": "c_0002", "message": "hello"}).encode(), 200), (b"{", 400)):
        request = urllib.request.Request(server.url + "/webhooks/rest/webhook", data=body, headers=REST_AUTH, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=20) as answer:
                status, header = answer.status, answer.headers.get("Server-Timing", "")
        except urllib.error.HTTPError as error:
            status, header = error.code, error.headers.get("Server-Timing", "")
        assert status == expected
        assert header.startswith("handler;dur=") and 0 <= server_timing(header) < 20_000
