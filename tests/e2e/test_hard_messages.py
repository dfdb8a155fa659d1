"""Messages a customer should never be able to break the assistant with."""
from __future__ import annotations

import pytest

HARD = {
    "empty": "",
    "whitespace": " \t\n  ",
    "very long": "my card " * 1250,  # 10,000 characters
    "emoji": "💳😡🔥🙏",
    "control characters": "\x00\x01\x07\x1b[31mhello\x7f",
    "mixed scripts": "Где моя карта? 我的卡在哪里？",
}


@pytest.mark.e2e
@pytest.mark.parametrize("text", list(HARD.values()), ids=list(HARD))
def test_every_message_gets_a_reply_never_a_server_error(assistant, text):
    replies = assistant.send(f"hard-{abs(hash(text))}", text)
    assert replies, "the customer must always get an answer"
    assert all(r.get("text") or r.get("buttons") or r.get("custom") for r in replies)


@pytest.mark.e2e
def test_the_conversation_goes_on_after_hard_messages(assistant):
    sender = "hard-then-normal"
    for text in HARD.values():
        assistant.send(sender, text)
    tracker_before = len(assistant.tracker(sender)["events"])
    replies = assistant.send(sender, "hello")
    assert replies and replies[0].get("text"), "a greeting after the hard messages is answered"
    assert len(assistant.tracker(sender)["events"]) > tracker_before, "the turn was stored"
