"""`bot.channels.api_guard`: which Rasa HTTP API bodies are malformed (answered 400 instead of Rasa's 500)."""
from __future__ import annotations

import json

import pytest

from bot.channels.api_guard import problem_with


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/model/parse", {"text": "hello"}),
    ("POST", "/model/parse", {"text": "hello", "message_id": "m1"}),
    ("POST", "/conversations/c1/messages", {"text": "hi", "sender": "user"}),
    ("POST", "/conversations/c1/messages", {"text": "hi", "sender": "user", "parse_data": {"intent": {"name": "greet"}, "entities": []}}),
    ("POST", "/conversations/c%2F1/tracker/events", [{"event": "slot", "name": "x", "value": 1}]),
    ("POST", "/conversations/c1/tracker/events", {"event": "restart"}),
    ("PUT", "/conversations/c1/tracker/events", [{"event": "action", "name": "action_listen"}]),
    ("POST", "/conversations/c1/execute", {"name": "utter_greet"}),
    ("POST", "/conversations/c1/trigger_intent", {"name": "greet", "entities": {"a": 1}}),
    ("PUT", "/model", {"model_file": "models/x.tar.gz"}),
])
def test_well_formed_requests_pass(method, path, body):
    assert problem_with(method, path, json.dumps(body).encode()) is None


@pytest.mark.parametrize("method, path, body, why", [
    ("POST", "/model/parse", b"not json", "must be JSON"),
    ("POST", "/model/parse", b"[" * 10_000 + b"]" * 10_000, "must be JSON"),
    ("POST", "/model/parse", b"[1, 2]", "JSON object"),
    ("POST", "/model/parse", b'{"text": 5}', "'text'"),
    ("POST", "/model/parse", b"", "needs a JSON body"),
    ("POST", "/conversations/c1/messages", b"[1, 2]", "JSON object"),
    ("POST", "/conversations/c1/messages", b'{"text": "hi", "sender": "user", "parse_data": {"entities": "x"}}', "entities"),
    ("POST", "/conversations/c1/messages", b'{"text": "hi", "sender": "user", "parse_data": {"intent": 3}}', "intent"),
    ("POST", "/conversations/c1/tracker/events", b"[]", "at least one event"),
    ("POST", "/conversations/c1/tracker/events", b"[1]", "'event' name"),
    ("POST", "/conversations/c1/execute", b'{"name": ["x"]}', "'name'"),
])
def test_malformed_requests_are_explained(method, path, body, why):
    assert why in (problem_with(method, path, body) or "")


def test_other_routes_are_left_alone():
    assert problem_with("GET", "/conversations/c1/tracker", b"garbage") is None
    assert problem_with("POST", "/webhooks/rest/webhook", b"garbage") is None
    assert problem_with("POST", "/model/train", b"garbage") is None


@pytest.mark.parametrize("body, read, expected_keep_alive", [
    (None, 0, True),                 # no body
    (True, 2_000_000, False),        # a length over the limit, not read: Sanic will close after answering
    (True, 500, True),               # a small unread body: Sanic reads it off and keeps the connection
    ("chunked", 0, False),           # an unread chunked body of unknown size
    (False, 2_000_000, True),        # read to its end (request_body cleared): nothing left to refuse
])
def test_an_answer_before_an_unread_oversized_body_says_close(body, read, expected_keep_alive):
    import asyncio
    from types import SimpleNamespace

    from bot.channels.api_guard import _close_after_unread_body

    stream = SimpleNamespace(request_body=body, request_bytes=read, keep_alive=True)
    request = SimpleNamespace(stream=stream, app=SimpleNamespace(config=SimpleNamespace(REQUEST_MAX_SIZE=1_000_000)))
    assert asyncio.run(_close_after_unread_body(request, None)) is None  # never replaces the answer
    assert stream.keep_alive is expected_keep_alive
