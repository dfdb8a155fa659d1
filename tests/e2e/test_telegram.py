"""Telegram in front of the real assistant: the secret token, inline keyboards, answered button presses.

The Rasa server is started (by the `assistant` fixture) with
TELEGRAM_API_BASE_URL pointing at a loopback port; this module serves the
Bot API stand-in there and asserts on what the assistant sent.
"""
from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.standins import TelegramBotAPI
from bot.channels.telegram import SECRET_HEADER

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def telegram_api(assistant):
    base = assistant.env.get("TELEGRAM_API_BASE_URL")
    if not base:
        pytest.skip("the assistant fixture must start Rasa with TELEGRAM_API_BASE_URL=http://127.0.0.1:<port>")
    with TelegramBotAPI(port=urllib.parse.urlparse(base).port) as api:
        yield api


def post(assistant, update, secret=None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not False:
        headers[SECRET_HEADER] = assistant.env["TELEGRAM_SECRET_TOKEN"] if secret is None else secret
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    request = urllib.request.Request(f"{assistant.url}/webhooks/telegram/webhook", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def text_update(chat: int, text: str):
    return {"update_id": random.randint(1, 10**9), "message": {
        "message_id": random.randint(1, 10**6), "date": int(time.time()), "chat": {"id": chat, "type": "private"},
        "from": {"id": chat, "is_bot": False, "first_name": "Ada"}, "text": text}}


def press(chat: int, data: str, query_id: str):
    return {"update_id": random.randint(1, 10**9), "callback_query": {
        "id": query_id, "from": {"id": chat, "is_bot": False, "first_name": "Ada"}, "chat_instance": "1", "data": data,
        "message": {"message_id": 1, "date": int(time.time()), "chat": {"id": chat, "type": "private"}, "text": "…"}}}


def to_chat(chat):
    return lambda params: str(params.get("chat_id")) == str(chat)


def test_an_answer_comes_with_an_inline_keyboard_and_a_thumb_press_is_answered_and_stored(assistant, telegram_api):
    chat = random.randint(10**6, 10**9)
    assert post(assistant, text_update(chat, "my card has been stolen")) == 200
    sent = telegram_api.wait_for("sendMessage", count=2, timeout=60, where=to_chat(chat))
    keyboards = [m["reply_markup"]["inline_keyboard"] for m in sent if m.get("reply_markup")]
    thumbs = [b for kb in keyboards for row in kb for b in row if b["text"] == "👍"]
    assert thumbs and all(len(b["callback_data"].encode()) <= 64 for kb in keyboards for row in kb for b in row)

    assert post(assistant, press(chat, thumbs[0]["callback_data"], f"q{chat}")) == 200
    answered = telegram_api.wait_for("answerCallbackQuery", where=lambda p: p.get("callback_query_id") == f"q{chat}")
    assert answered and answered[0]["text"] == "Thanks for your feedback!"
    telegram_api.wait_for("sendMessage", count=3, timeout=60, where=to_chat(chat))
    user_texts = [e["text"] for e in assistant.tracker(f"telegram:{chat}")["events"] if e["event"] == "user"]
    assert user_texts[-1].startswith("/rate_answer") and '"rating":"up"' in user_texts[-1].replace(" ", "")


@pytest.mark.parametrize("secret", [False, "wrong-secret"], ids=["missing", "wrong"])
def test_updates_without_the_secret_token_get_401_and_never_reach_the_assistant(assistant, telegram_api, secret):
    chat = random.randint(10**6, 10**9)
    assert post(assistant, text_update(chat, "hello"), secret=secret) == 401
    time.sleep(2)
    assert [p for p in telegram_api.calls_to("sendMessage") if to_chat(chat)(p)] == []
    assert [e for e in assistant.tracker(f"telegram:{chat}")["events"] if e["event"] == "user"] == []


@pytest.mark.parametrize("body", [b"{oops", b"[]", b'{"update_id": 1, "message": "text"}'])
def test_malformed_updates_get_a_4xx(assistant, telegram_api, body):
    assert 400 <= post(assistant, body) < 500
