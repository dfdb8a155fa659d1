"""Security end to end: API token, inbox login, CORS, rate limits, size limits, redaction before storage.

Against the real servers (the `assistant` fixture, which starts Rasa with
``RASA_API_TOKEN`` and the default CORS origin, its own address).
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Dict, List, Optional, Tuple

import pytest

from bot.ratelimit import RATE_LIMITED_TEXT
from tests.e2e.conftest import TEST_REST_TOKEN

pytestmark = pytest.mark.e2e


def request(url: str, data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
            method: Optional[str] = None, timeout: float = 60) -> Tuple[int, Dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def rest(assistant, sender: str, text: str) -> Tuple[int, Dict[str, str], List[dict]]:
    status, headers, body = request(
        f"{assistant.url}/webhooks/rest/webhook", json.dumps({"sender": sender, "message": text}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {TEST_REST_TOKEN}"},
    )
    return status, headers, json.loads(body) if body else []


# ------------------------------------------------------------------ Rasa HTTP API token


def api_headers(assistant) -> Dict[str, str]:
    return {"Authorization": f"Bearer {assistant.env['RASA_API_TOKEN']}"}


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_the_http_api_refuses_a_missing_or_wrong_token(assistant, token):
    url = f"{assistant.url}/conversations/sec-{uuid.uuid4().hex[:6]}/tracker"
    status, _, _ = request(url, headers={"Authorization": f"Bearer {token}"} if token is not None else {})
    assert status in (401, 403)
    status, _, _ = request(f"{assistant.url}/model/parse", json.dumps({"text": "hello"}).encode(), {"Content-Type": "application/json"})
    assert status in (401, 403)


def test_the_http_api_answers_with_the_token_in_a_header_only(assistant):
    status, _, body = request(f"{assistant.url}/conversations/sec-ok/tracker", headers=api_headers(assistant))
    assert status == 200 and json.loads(body)["sender_id"] == "sec-ok"
    status, _, body = request(f"{assistant.url}/conversations/sec-ok/tracker?token={assistant.env['RASA_API_TOKEN']}")
    assert status == 401 and b"Authorization: Bearer" in body


# ------------------------------------------------------------------ agent inbox


def test_the_inbox_refuses_a_wrong_password_and_its_api_needs_a_session(assistant):
    username, password = assistant.inbox_account("agent")
    login = f"{assistant.url}/webhooks/inbox/login"
    headers = {"Content-Type": "application/json"}
    status, _, _ = request(login, json.dumps({"username": username, "password": "guess guess guess"}).encode(), headers)
    assert status == 401
    status, _, _ = request(login, json.dumps({"username": username}).encode(), headers)
    assert status == 400
    status, _, _ = request(login, f"username={username}&password={password}".encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400  # JSON only: a form on another site cannot sign anyone in
    status, _, _ = request(f"{assistant.url}/webhooks/inbox/api/conversations")
    assert status == 401
    status, headers, _ = request(login, json.dumps({"username": username, "password": password}).encode(), {"Content-Type": "application/json"})
    assert status == 200
    cookie = headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/webhooks/inbox" in cookie


# ------------------------------------------------------------------ CORS


def test_cors_allows_the_configured_origin_only(assistant):
    allowed = assistant.url  # the launcher's default: the server's own address
    for origin, expected in ((allowed, allowed), ("https://evil.example", None)):
        for method in ("GET", "OPTIONS"):
            headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            status, answer, _ = request(f"{assistant.url}/webhooks/rest/", headers=headers, method=method)
            assert status < 500
            assert answer.get("Access-Control-Allow-Origin") == expected, (origin, method, answer)


# ------------------------------------------------------------------ rate limits


def test_a_burst_from_one_sender_is_refused_politely_and_others_are_unaffected(assistant):
    flooder, bystander = f"sec-flood-{uuid.uuid4().hex[:8]}", f"sec-calm-{uuid.uuid4().hex[:8]}"
    results: List[Tuple[int, Dict[str, str], List[dict]]] = []
    lock = threading.Lock()

    def send() -> None:
        outcome = rest(assistant, flooder, "hello")
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=send) for _ in range(16)]  # burst of 10 allowed by default
    for thread in threads:
        thread.start()
    status, _, replies = rest(assistant, bystander, "hello")
    for thread in threads:
        thread.join(timeout=120)

    assert status == 200 and replies, "another customer is not slowed down"
    refused = [r for r in results if r[0] == 429]
    passed = [r for r in results if r[0] == 200]
    assert len(results) == 16 and refused and len(passed) >= 10, [r[0] for r in results]
    for _, headers, body in refused:
        assert int(headers["Retry-After"]) >= 1
        assert [m.get("text") for m in body] == [RATE_LIMITED_TEXT]  # said so: the message was not read
    # Refused messages never reached the conversation.
    tracker = json.loads(request(f"{assistant.url}/conversations/{assistant.conversation_of(flooder)}/tracker", headers=api_headers(assistant))[2])
    assert len([e for e in tracker["events"] if e["event"] == "user"]) == len(passed)


# ------------------------------------------------------------------ size limits


def test_an_oversized_body_is_refused_with_413(assistant):
    body = json.dumps({"sender": "sec-big", "message": "x" * 2_000_000}).encode()
    status, _, _ = request(f"{assistant.url}/webhooks/rest/webhook", body, {"Content-Type": "application/json"})
    assert status == 413


def test_an_overlong_message_is_cut_to_max_message_chars_and_answered(assistant):
    sender = f"sec-long-{uuid.uuid4().hex[:8]}"
    status, _, replies = rest(assistant, sender, "where is my card " * 1000)  # 17,000 characters
    assert status == 200 and replies
    tracker = json.loads(request(f"{assistant.url}/conversations/{assistant.conversation_of(sender)}/tracker", headers=api_headers(assistant))[2])
    texts = [e["text"] for e in tracker["events"] if e["event"] == "user"]
    assert texts and len(texts[-1]) <= 2000


# ------------------------------------------------------------------ personal data


def test_personal_data_is_redacted_before_rasa_stores_the_message(assistant):
    sender = f"sec-pii-{uuid.uuid4().hex[:8]}"
    status, _, replies = rest(assistant, sender, "my card 4539 1488 0343 6467 was stolen, call me on 07700 900123")
    assert status == 200 and replies
    tracker = json.loads(request(f"{assistant.url}/conversations/{assistant.conversation_of(sender)}/tracker", headers=api_headers(assistant))[2])
    stored = json.dumps(tracker)
    assert "4539 1488 0343 6467" not in stored and "07700 900123" not in stored
    texts = [e["text"] for e in tracker["events"] if e["event"] == "user"]
    assert texts == ["my card [CARD] was stolen, call me on [PHONE]"]
