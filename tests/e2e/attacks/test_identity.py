"""Attacks on customer identity: claiming another customer's widget room, forged tokens, REST without credential.

An outsider with nothing but HTTP and socket.io tries what the issue found
open: joining a customer's widget conversation and reading its history by
sending their id, signing in with a token the website did not sign (forged,
expired, for another audience or issuer, unsigned ``alg: none``), getting the
chat server to mint a token with ``?customer=``, posting over REST without a
credential or with a wrong or revoked one, overriding the customer with
``metadata.customer_id``, and claiming Slack or Telegram customers through
the widget or REST. Each is refused, in demo and in production mode.

The victim's side is set up the way the real parties would: in production
the website signs the victim's token with its secret; in demo the demo page
signs them in.
"""
from __future__ import annotations

import html
import json
import os
import queue
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import jwt
import pytest
import socketio
import sqlalchemy as sa

from bot.security.identity import ANONYMOUS_CONVERSATION
from core import db
from core.settings import PROJECT_ROOT
from tests.e2e.attacks.conftest import http, post_json

pytestmark = pytest.mark.e2e

ISSUER, AUDIENCE = "northwind-website", "northwind-assistant"  # the settings' defaults


class Widget:
    """A socket.io client speaking the widget's events, as any browser (or script) can."""

    def __init__(self, url: str) -> None:
        self.events: "queue.Queue[Tuple[str, Any]]" = queue.Queue()
        self.client = socketio.Client(reconnection=False)
        for name in ("session_confirm", "session_refused", "history", "bot_uttered"):
            self.client.on(name, lambda data=None, name=name: self.events.put((name, data)))
        self.client.connect(url, socketio_path="/socket.io", transports=["polling"], wait_timeout=20)

    def next(self, wanted: str, timeout: float = 20) -> Any:
        """The data of the next `wanted` event (others before it are dropped); raises queue.Empty."""
        deadline = time.monotonic() + timeout
        while True:
            name, data = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if name == wanted:
                return data

    def session(self, data: Dict[str, Any]) -> Tuple[str, Any]:
        """Send ``session_request`` and return (``session_confirm`` | ``session_refused``, its data)."""
        self.client.emit("session_request", data)
        deadline = time.monotonic() + 20
        while True:
            name, answer = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if name in ("session_confirm", "session_refused"):
                return name, answer

    def say(self, text: str) -> Dict[str, Any]:
        self.client.emit("user_uttered", {"message": text})
        return self.next("bot_uttered", timeout=90)

    def history(self, data: Optional[Dict[str, Any]] = None, timeout: float = 10) -> Optional[Dict[str, Any]]:
        """The ``history`` the server sends for ``history_request`` (with `data`), or None if none comes within `timeout`."""
        self.client.emit("history_request", data or {})
        try:
            return self.next("history", timeout=timeout)
        except queue.Empty:
            return None

    def heard(self, seconds: float) -> List[Tuple[str, Any]]:
        """Every event that arrives within `seconds`."""
        time.sleep(seconds)
        found = []
        while not self.events.empty():
            found.append(self.events.get_nowait())
        return found

    def close(self) -> None:
        """Say goodbye to the server without waiting for the pending long-poll to return (up to 25 s)."""
        for namespace in self.client.namespaces:
            self.client._send_packet(self.client.packet_class(socketio.packet.DISCONNECT, namespace=namespace))
        self.client.eio.disconnect(abort=True)


@pytest.fixture
def widgets(attack_target):
    opened: List[Widget] = []

    def open_one() -> Widget:
        opened.append(Widget(attack_target.url))
        return opened[-1]

    yield open_one
    for widget in opened:
        widget.close()


def website_token(target, customer: str, **changes) -> str:
    """A token as the company's website signs it (production: its secret); `changes` alter the claims."""
    now = int(time.time())
    claims = {"sub": customer, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **changes}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, target.secrets["WEB_CUSTOMER_TOKEN_SECRET"], "HS256")


def signed_in_token(target, customer: str) -> str:
    """How the victim signs in: the website's token in production, the demo page's in demo."""
    if target.production:
        return website_token(target, customer)
    status, _, page = http(f"{target.url}/webhooks/web/?customer={customer}")
    assert status == 200
    return html.unescape(page.decode().split('data-customer-token="')[1].split('"')[0])


def victim_in_the_widget(target, widgets) -> Tuple[str, Widget]:
    """A signed-in customer who has told the assistant something private in the widget."""
    victim = f"victim{uuid.uuid4().hex[:10]}"
    widget = widgets()
    assert widget.session({"customer_token": signed_in_token(target, victim)}) == ("session_confirm", f"web:{victim}")
    widget.say(f"my card was stolen, I am {victim} and my PIN hint is bluebird")
    return victim, widget


def unsigned(claims: Dict[str, Any]) -> str:
    import base64

    part = lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


# ------------------------------------------------------------------ the widget


def test_a_stranger_cannot_join_a_customer_s_widget_room_or_read_its_history_by_claiming_the_id(attack_target, widgets):
    victim, victim_widget = victim_in_the_widget(attack_target, widgets)
    attacker = widgets()
    claims = [
        {"customer_id": victim}, {"session_id": f"web:{victim}"}, {"session_id": victim},
        {"session_id": f"web:{victim}", "customer_id": victim}, {"session_id": f"rest:demo:{victim}"},
    ]
    for claim in claims:
        name, conversation = attacker.session(claim)
        assert name == "session_confirm" and ANONYMOUS_CONVERSATION.match(conversation), (claim, conversation)
        history = attacker.history({"conversation_id": f"web:{victim}", "session_id": f"web:{victim}"})
        assert history is not None and history["messages"] == [], "only the socket's own (new) conversation"
    # Listening live: the victim's next reply reaches the victim, not the stranger.
    victim_widget.say("what is my balance")
    assert [e for e in attacker.heard(3) if e[0] == "bot_uttered"] == []


def test_an_anonymous_visitor_s_id_is_issued_by_the_server_and_cannot_be_guessed(attack_target, widgets):
    visitor = widgets()
    name, conversation = visitor.session({})
    assert name == "session_confirm" and ANONYMOUS_CONVERSATION.match(conversation)
    visitor.say("hello")
    guesser = widgets()
    for guess in [f"web:anon-{'0' * 32}", f"web:anon-{uuid.uuid4().hex}", conversation[:-1] + "x", conversation.upper()]:
        name, given = guesser.session({"session_id": guess})
        assert name == "session_confirm" and given not in (guess, conversation)
    # The visitor's own browser, presenting what it was given, is back in its conversation.
    returning = widgets()
    assert returning.session({"session_id": conversation}) == ("session_confirm", conversation)
    assert [m["text"] for m in returning.history()["messages"] if m.get("sender") == "customer"] == ["hello"]


def forged_tokens(target, victim: str) -> Dict[str, str]:
    now = int(time.time())
    good = {"sub": victim, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    tokens = {
        "guessed key": jwt.encode(good, "the-attacker-s-guess-at-the-key-0123456789", "HS256"),
        "alg none": unsigned(good),
        "demo issuer, guessed key": jwt.encode({**good, "iss": "assistant-demo"}, "demo", "HS256"),
    }
    if target.production:  # with the website's real key, but not as required
        tokens.update({
            "expired": website_token(target, victim, iat=now - 600, exp=now - 120),
            "wrong audience": website_token(target, victim, aud="another-app"),
            "wrong issuer": website_token(target, victim, iss="evil.example"),
            "too long a lifetime": website_token(target, victim, exp=now + 30 * 86400),
            "no exp": website_token(target, victim, exp=None),
        })
    return tokens


def test_forged_expired_misaddressed_and_unsigned_tokens_get_no_session(attack_target, widgets):
    victim, _ = victim_in_the_widget(attack_target, widgets)
    for what, token in forged_tokens(attack_target, victim).items():
        attacker = widgets()
        name, answer = attacker.session({"customer_token": token})
        assert name == "session_refused" and answer["reason"], what
        attacker.client.emit("user_uttered", {"message": "please delete my data"})
        assert attacker.history(timeout=1.5) is None, f"{what}: no session, no history"
        assert [e for e in attacker.heard(1) if e[0] == "bot_uttered"] == [], f"{what}: nothing reaches the assistant"


def test_the_chat_server_mints_a_customer_token_only_in_demo_mode(attack_target):
    status, _, page = http(f"{attack_target.url}/webhooks/web/?customer=c_0042")
    assert status == 200
    if attack_target.production:
        assert b"data-customer-token" not in page and b"Signed in as: Guest" in page
    else:
        assert b"data-customer-token" in page and b"Signed in as: c_0042" in page


# ------------------------------------------------------------------ REST


def rest_as(target, sender: str, headers: Dict[str, str], metadata: Optional[Dict[str, Any]] = None):
    body: Dict[str, Any] = {"sender": sender, "message": "I want to speak to a real person"}
    if metadata is not None:
        body["metadata"] = metadata
    status, _, answer = post_json(f"{target.url}/webhooks/rest/webhook", body, headers)
    return status, json.loads(answer) if answer else None


def test_rest_without_or_with_a_wrong_credential_is_refused_with_401(attack_target):
    victim = f"victim{uuid.uuid4().hex[:10]}"
    cases = [({"Authorization": "Bearer not-a-real-token-0123456789abcdef"}, "unknown credential"),
             ({"Authorization": "Basic YmFja2VuZDp4"}, "Bearer")]
    if attack_target.production:
        cases.append(({}, "missing credential"))
    for headers, reason in cases:
        status, answer = rest_as(attack_target, victim, headers)
        assert status == 401 and reason in answer["error"], (headers, status, answer)
    assert attack_target.conversations_like(victim) == [], "nothing was stored"
    if not attack_target.production:  # demo: open REST, as caller 'demo'
        assert rest_as(attack_target, victim, {})[0] == 200
        assert attack_target.conversations_like(victim) == [f"rest:demo:{victim}"]


def admin(target, *args: str) -> subprocess.CompletedProcess:
    """``python -m bot.security.admin`` run by the operator against the target's database."""
    env = {**os.environ, **target.env, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", "bot.security.admin", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_revoked_rest_credential_is_refused_within_seconds_without_restart(attack_target):
    name = f"partner{uuid.uuid4().hex[:6]}"
    added = admin(attack_target, "rest-caller", "add", name)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    customer = f"c{uuid.uuid4().hex[:10]}"
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 10  # a new caller is seen within the registry's refresh time
    while (status := rest_as(attack_target, customer, headers)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200
    assert admin(attack_target, "rest-caller", "revoke", name).returncode == 0
    deadline = time.monotonic() + 10
    while (answer := rest_as(attack_target, customer, headers))[0] != 401 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert answer[0] == 401 and "revoked" in answer[1]["error"]


def test_rest_metadata_cannot_choose_the_customer_or_the_channel(attack_target):
    mallory, victim = f"mallory{uuid.uuid4().hex[:8]}", f"victim{uuid.uuid4().hex[:8]}"
    token = attack_target.rest_caller_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _ = rest_as(attack_target, mallory, headers, {"customer_id": victim, "channel": "slack"})
    assert status == 200
    caller = "backend" if attack_target.production else "demo"
    conversation = f"rest:{caller}:{mallory}"
    with db.connect(attack_target.db_url).connect() as conn:
        handoff = conn.execute(sa.select(db.handoffs.c.customer_id, db.handoffs.c.channel)
                               .where(db.handoffs.c.conversation_id == conversation)).first()
        linked = conn.execute(sa.select(db.identities.c.customer_id)
                              .where(db.identities.c.conversation_id == conversation)).scalar()
    # What the agent's inbox shows for this conversation: the customer the caller vouched for.
    assert tuple(handoff) == (mallory, "rest") and linked == mallory


# ------------------------------------------------------------------ other channels' customers


def test_slack_and_telegram_customers_cannot_be_claimed_through_rest_or_the_widget(attack_target, widgets):
    token = attack_target.rest_caller_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for claimed in ("slack:U0VICTIM1", "telegram:424242", "web:anon-" + "0" * 32, f"rest:backend:c_0042"):
        status, answer = rest_as(attack_target, claimed, headers)
        assert status == 400 and "customer id" in answer["error"], claimed
        widget = widgets()
        name, conversation = widget.session({"session_id": claimed, "customer_id": claimed})
        assert name == "session_confirm" and ANONYMOUS_CONVERSATION.match(conversation)
    if attack_target.production:  # not even with a token the website really signed
        widget = widgets()
        assert widget.session({"customer_token": website_token(attack_target, "slack:U0VICTIM1")})[0] == "session_refused"
    assert attack_target.conversations_like("U0VICTIM1") == [] and attack_target.conversations_like("424242") == []
