"""Long-tail questions answered from past answers, end to end through the REST channel.

The trained demo assistant (intent classifier, AnswerRetriever, fallback)
gets a question no intent covers, answers it from the history in
bot/history/ with rating buttons, and after thumbs-down ratings from
customers stops giving that answer to questions like it.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Dict, List

import pytest
import sqlalchemy as sa
import yaml

from core import db
from core.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

RESPONSES = yaml.safe_load((PROJECT_ROOT / "bot" / "domain" / "history.yml").read_text(encoding="utf-8"))["responses"]
PREFIX = RESPONSES["utter_history_answer"][0]["text"].split("{answer}")[0]
QUESTION = "I have a question about joint accounts: what happens to our joint account if my partner and I separate?"
SEPARATION_ANSWER = "Either of you can ask us to restrict the account"


def new_customer(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:8]}"


def rating_payload(message: Dict[str, Any], rating: str) -> str:
    return next(b["payload"] for b in message.get("buttons") or [] if f'"rating":"{rating}"' in b["payload"])


def answer_id_of(message: Dict[str, Any]) -> str:
    payload = rating_payload(message, "up")
    return json.loads(payload[len("/rate_answer"):])["answer_id"]


def ask(assistant, customer: str, text: str) -> List[Dict[str, Any]]:
    replies = assistant.send(customer, text)
    assert replies, f"no reply to {text!r}"
    return replies


def test_the_pipeline_names_the_retriever():
    config = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text(encoding="utf-8"))
    names = [part["name"] for part in config["pipeline"]]
    assert "retrieval.AnswerRetriever" in names, "config.yml must list retrieval.AnswerRetriever after the intent classifier"
    assert names.index("retrieval.AnswerRetriever") < names.index("FallbackClassifier")


def test_a_long_tail_question_is_answered_from_past_answers(assistant):
    customer = new_customer("history")

    [answer, *_] = ask(assistant, customer, QUESTION)

    assert answer["text"].startswith(PREFIX)
    assert SEPARATION_ANSWER in answer["text"]
    assert answer_id_of(answer).startswith("history:")
    retrieval = assistant.tracker(customer)["latest_message"]["retrieval"]
    assert retrieval["hits"] and retrieval["best_score"] == retrieval["hits"][0]["score"]


def test_thumbs_down_ratings_change_the_next_answer(assistant):
    first = ask(assistant, new_customer("rate-a"), QUESTION)[0]
    rated_id = answer_id_of(first)

    # Two customers (the default downvote_limit) press thumbs down on that answer.
    down = rating_payload(first, "down")
    for label in ("rate-b", "rate-c"):
        customer = new_customer(label)
        ask(assistant, customer, QUESTION)
        thanks = ask(assistant, customer, down)
        assert thanks[0]["text"] == RESPONSES["utter_rating_thanks_down"][0]["text"]

    with db.connect(assistant.db_url).connect() as conn:
        stored = conn.execute(
            sa.select(db.answer_ratings.c.query, db.answer_ratings.c.rating).where(db.answer_ratings.c.answer_id == rated_id)
        ).fetchall()
    assert [(r.query, r.rating) for r in stored] == [(QUESTION, -1), (QUESTION, -1)]

    # No restart, no rebuild: the very next similar question gets something else.
    later = ask(assistant, new_customer("rate-d"), QUESTION)[0]
    assert SEPARATION_ANSWER not in later.get("text", "")
    if later.get("buttons") and any("/rate_answer" in b["payload"] for b in later["buttons"]):
        assert answer_id_of(later) != rated_id
