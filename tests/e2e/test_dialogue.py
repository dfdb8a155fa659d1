"""The core dialogue, end to end through the REST channel.

A greeting, a service question answered with its written answer and rating
buttons, the card freeze form with a wrong and then a right last four digits,
and a handoff that puts the conversation in the agents' queue.
"""
from __future__ import annotations

import uuid
from typing import Any, Dict, List

import pytest
import sqlalchemy as sa
import yaml

from bot.actions.answers import rating_buttons
from core import db
from core.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

RESPONSES = {
    name: texts
    for part in ("core.yml", "satisfaction.yml")
    for name, texts in yaml.safe_load((PROJECT_ROOT / "bot" / "domain" / part).read_text(encoding="utf-8"))["responses"].items()
}


def response_text(name: str, **slots: str) -> str:
    """The text of a domain response, with its {slot} placeholders filled."""
    return RESPONSES[name][0]["text"].format(**slots)


def texts(messages: List[Dict[str, Any]]) -> List[str]:
    return [m.get("text", "") for m in messages]


def new_customer(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:8]}"


def test_greeting(assistant):
    replies = assistant.send(new_customer("greet"), "hello there")

    assert texts(replies) == [response_text("utter_greet")]


def test_service_question_gets_its_answer_and_rating_buttons(assistant):
    replies = assistant.send(new_customer("answer"), "my new card still hasn't arrived, when will it come?")

    answer = replies[0]  # suggestions, where the recommender offers any, may follow
    assert answer["text"] == response_text("utter_card_arrival")
    assert answer["buttons"][:2] == rating_buttons("intent:card_arrival")


def test_freeze_form_asks_again_after_an_invalid_last_four(assistant):
    customer = new_customer("freeze")

    assert texts(assistant.send(customer, "please freeze my card")) == [response_text("utter_ask_card_last_four")]
    assert texts(assistant.send(customer, "12")) == [
        response_text("utter_card_last_four_invalid"),
        response_text("utter_ask_card_last_four"),
    ]
    [confirm] = assistant.send(customer, "it ends in 4821")
    assert confirm["text"] == response_text("utter_ask_freeze_confirmed", card_last_four="4821")
    assert [b["payload"] for b in confirm["buttons"]] == ["/affirm", "/deny"]

    # The customer taps "Yes, freeze it", as the web widget would send it.
    frozen = assistant.send(customer, "/affirm")
    # A resolved form ends with the satisfaction rating, once (core/satisfaction.py).
    assert texts(frozen) == [response_text("utter_card_frozen", card_last_four="4821"), response_text("utter_ask_satisfaction")]
    assert [b["payload"] for b in frozen[1]["buttons"]] == ['/rate_service{"score": %d}' % n for n in range(1, 6)]
    # The form's slots are cleared, so a second freeze asks for the card again.
    # (Worded differently: the handoff desk reads a word-for-word repeat as frustration.)
    assert texts(assistant.send(customer, "I need to freeze a different card too")) == [response_text("utter_ask_card_last_four")]


def test_asking_for_a_person_queues_the_conversation(assistant):
    customer = new_customer("handoff")

    replies = assistant.send(customer, "I want to speak to a real person")

    # The acknowledgement, the place in the queue, then how long people wait now or, with
    # nobody signed in to the inbox (or outside the opening hours), that nobody is online.
    # (Someone is online when another test signed in to the inbox a moment ago; with fewer than
    # three taken handoffs in the history there is no wait to tell.)
    assert texts(replies)[0] == response_text("utter_handoff_ack")
    assert len(replies) in (2, 3) and "in the queue" in texts(replies)[1]
    assert [r.get("notice") for r in replies[2:]] in ([], ["utter_handoff_nobody_online"], ["utter_handoff_wait"]), replies
    with db.connect(assistant.db_url).connect() as conn:
        rows = conn.execute(sa.select(db.handoffs).where(db.handoffs.c.conversation_id == assistant.conversation_of(customer))).mappings().all()
    assert [(r["customer_id"], r["channel"], r["reason"], r["status"]) for r in rows] == [
        (customer, "rest", "asked", "waiting")
    ]
