"""Slack in front of the real assistant: signed events and button presses, forged ones refused.

The Rasa server is started (by the `assistant` fixture) with
SLACK_API_BASE_URL pointing at a loopback port; this module serves Slack's
Web API stand-in there and asserts on what the assistant posted.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.standins import SlackWebAPI

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slack_api(assistant):
    base = assistant.env.get("SLACK_API_BASE_URL")
    if not base:
        pytest.skip("the assistant fixture must start Rasa with SLACK_API_BASE_URL=http://127.0.0.1:<port>/api/")
    with SlackWebAPI(port=urllib.parse.urlparse(base).port) as api:
        yield api


def signed(assistant, body: bytes, content_type="application/json", secret=None, age_s=0.0):
    secret = assistant.env["SLACK_SIGNING_SECRET"] if secret is None else secret
    timestamp = str(int(time.time() - age_s))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


def post(assistant, body: bytes, headers):
    request = urllib.request.Request(f"{assistant.url}/webhooks/slack/webhook", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def direct_message(user: str, channel: str, text: str) -> bytes:
    event = {"type": "message", "channel_type": "im", "channel": channel, "user": user, "text": text, "ts": f"{time.time():.6f}"}
    return json.dumps({"type": "event_callback", "event": event, "authorizations": [{"user_id": "UBOT"}]}).encode()


def to_channel(channel):
    return lambda params: params.get("channel") == channel


def test_a_signed_message_is_answered_with_block_kit_and_a_button_press_is_understood(assistant, slack_api):
    user, channel = f"U{uuid.uuid4().hex[:8].upper()}", f"D{uuid.uuid4().hex[:8].upper()}"
    body = direct_message(user, channel, "my card has been stolen")
    assert post(assistant, body, signed(assistant, body)) == 200
    posts = slack_api.wait_for("chat.postMessage", count=2, timeout=60, where=to_channel(channel))
    values = [e["value"] for p in posts for b in p.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]
    assert any(v.startswith("/rate_answer") for v in values), posts  # the answer's thumbs
    assert "/deny" in values  # "No, thanks" on the offer to freeze the card

    press = {"type": "block_actions", "user": {"id": user}, "channel": {"id": channel}, "message": {"ts": "1.0"},
             "actions": [{"type": "button", "action_id": "choice_1", "value": "/deny"}]}
    body = urllib.parse.urlencode({"payload": json.dumps(press)}).encode()
    assert post(assistant, body, signed(assistant, body, "application/x-www-form-urlencoded")) == 200
    posts = slack_api.wait_for("chat.postMessage", count=3, timeout=60, where=to_channel(channel))
    assert "won't freeze" in posts[-1]["text"]


@pytest.mark.parametrize("forgery", ["missing", "forged", "stale"])
def test_unsigned_forged_and_stale_requests_get_401_and_never_reach_the_assistant(assistant, slack_api, forgery):
    user, channel = f"U{uuid.uuid4().hex[:8].upper()}", f"D{uuid.uuid4().hex[:8].upper()}"
    body = direct_message(user, channel, "send all my money to account 12345678")
    headers = {
        "missing": {"Content-Type": "application/json"},
        "forged": signed(assistant, body, secret="not-our-secret"),
        "stale": signed(assistant, body, age_s=10 * 60),
    }[forgery]
    assert post(assistant, body, headers) == 401
    time.sleep(2)
    assert [p for p in slack_api.calls_to("chat.postMessage") if p.get("channel") == channel] == []
    assert [e for e in assistant.tracker(f"slack:{user}")["events"] if e["event"] == "user"] == []


@pytest.mark.parametrize(
    "body, content_type",
    [(b"{oops", "application/json"), (b"[]", "application/json"), (b"payload=%7B", "application/x-www-form-urlencoded"),
     (b"hello", "text/plain")],
)
def test_malformed_signed_requests_get_a_4xx(assistant, slack_api, body, content_type):
    assert 400 <= post(assistant, body, signed(assistant, body, content_type)) < 500
