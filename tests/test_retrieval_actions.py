"""The dialogue side of retrieval: answering from past answers, and ratings.

The real custom actions run against trackers shaped like the ones the Rasa
server sends, with a real temporary database.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Optional

import pytest
import sqlalchemy as sa
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import history
from bot.actions.history import ActionAnswerFromHistory, ActionRateAnswer
from bot.insight import experiments
from core import db
from core.settings import get_settings
from tests.experiment_files import use_experiments

HIT = {"id": "joint-accounts-01", "question": "Can I open a joint account with my partner?",
       "answer": "Yes. A Current Account can be held jointly by two people.", "score": 0.82,
       "source": "faq-desk", "tags": ["joint-accounts"]}


@pytest.fixture()
def database(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'assistant.db'}"
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", url)
    monkeypatch.setattr(history, "UNSAVED_RATINGS", tmp_path / "unsaved_ratings.jsonl")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def tracker(intent: str, text: str, retrieval: Optional[Dict] = None, entities: Optional[List[Dict]] = None,
            earlier: Optional[List[Dict]] = None) -> Tracker:
    latest = {"intent": {"name": intent, "confidence": 0.4}, "entities": entities or [], "text": text}
    if retrieval is not None:
        latest["retrieval"] = retrieval
    events = (earlier or []) + [{"event": "user", "text": text, "parse_data": latest}]
    return Tracker("customer-7", {}, latest, events, False, None, {}, "action_listen")


def run(action, tracker_: Tracker) -> List[Dict[str, Any]]:
    dispatcher = CollectingDispatcher()
    assert asyncio.run(action.run(dispatcher, tracker_, {})) == []
    return dispatcher.messages


def ratings(url: str) -> List[Dict[str, Any]]:
    with db.connect(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(db.answer_ratings).order_by(db.answer_ratings.c.id))]


def test_a_good_past_answer_is_given_with_its_source_and_rating_buttons(database):
    messages = run(ActionAnswerFromHistory(), tracker("nlu_fallback", "can my girlfriend and I share an account",
                                                      {"hits": [HIT], "best_score": 0.82}))

    [message] = messages
    assert message["response"] == "utter_history_answer"
    assert message["answer"] == HIT["answer"]
    payloads = [b["payload"] for b in message["buttons"]]
    assert payloads[:2] == ['/rate_answer{"answer_id":"history:joint-accounts-01","rating":"up"}',
                            '/rate_answer{"answer_id":"history:joint-accounts-01","rating":"down"}']


def test_no_answer_above_the_threshold_asks_to_rephrase_and_offers_a_person(database):
    weak = {**HIT, "score": get_settings().retrieval_threshold - 0.01}

    messages = run(ActionAnswerFromHistory(), tracker("ask_question", "I have a question", {"hits": [weak], "best_score": weak["score"]}))

    assert [m["response"] for m in messages] == ["utter_please_rephrase", "utter_offer_human"]
    assert messages[1]["buttons"] == [{"title": "Talk to a person", "payload": "/request_human"}]


def test_out_of_scope_without_a_past_answer_says_what_the_assistant_covers(database):
    messages = run(ActionAnswerFromHistory(), tracker("out_of_scope", "what's the weather like", {"hits": [], "best_score": 0.0}))

    assert [m["response"] for m in messages] == ["utter_out_of_scope"]


def test_a_rating_is_stored_with_the_question_it_rates_and_the_customer_is_thanked(database):
    earlier = [
        {"event": "user", "text": "can my girlfriend and I share an account, my email is jo@example.com"},
        {"event": "bot", "text": "Here's how we've answered...", "data": {"buttons": []}},
    ]
    payload = tracker("rate_answer", '/rate_answer{"answer_id":"history:joint-accounts-01","rating":"down"}',
                      entities=[{"entity": "answer_id", "value": "history:joint-accounts-01"},
                                {"entity": "rating", "value": "down"}], earlier=earlier)

    messages = run(ActionRateAnswer(), payload)

    assert [m["response"] for m in messages] == ["utter_rating_thanks_down"]
    [row] = ratings(database)
    assert (row["answer_id"], row["rating"], row["source"], row["customer_id"]) == ("history:joint-accounts-01", -1, "history", "customer-7")
    assert row["query"] == "can my girlfriend and I share an account, my email is [EMAIL]"


def test_intent_answers_are_rated_too(database):
    payload = tracker("rate_answer", "/rate_answer", entities=[{"entity": "answer_id", "value": "intent:card_arrival"},
                                                               {"entity": "rating", "value": "up"}],
                      earlier=[{"event": "user", "text": "where is my new card"}])

    assert [m["response"] for m in run(ActionRateAnswer(), payload)] == ["utter_rating_thanks_up"]
    assert [(r["answer_id"], r["rating"], r["query"]) for r in ratings(database)] == [("intent:card_arrival", 1, "where is my new card")]


def test_a_typed_request_to_rate_offers_the_buttons_for_the_last_answer(database):
    buttons = [{"title": "👍", "payload": '/rate_answer{"answer_id":"history:closing-01","rating":"up"}'}]
    earlier = [{"event": "user", "text": "how do I close my account"}, {"event": "bot", "text": "...", "data": {"buttons": buttons}}]

    messages = run(ActionRateAnswer(), tracker("rate_answer", "I want to rate that answer", earlier=earlier))

    assert messages[0]["response"] == "utter_ask_rating"
    assert '"answer_id":"history:closing-01"' in messages[0]["buttons"][0]["payload"]
    assert ratings(database) == []


def test_no_rating_is_lost_while_the_database_is_down(database, tmp_path, monkeypatch):
    rating = tracker("rate_answer", "/rate_answer", entities=[{"entity": "answer_id", "value": "history:disputes-02"},
                                                              {"entity": "rating", "value": "down"}],
                     earlier=[{"event": "user", "text": "I never got what I paid for"}])
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", "sqlite:////proc/no-such-dir/assistant.db")
    get_settings.cache_clear()

    assert [m["response"] for m in run(ActionRateAnswer(), rating)] == ["utter_rating_thanks_down"]
    spooled = [json.loads(line) for line in history.UNSAVED_RATINGS.read_text().splitlines()]
    assert [(r["answer_id"], r["rating"]) for r in spooled] == [("history:disputes-02", "down")]

    monkeypatch.setenv("ASSISTANT_DATABASE_URL", database)
    get_settings.cache_clear()
    run(ActionRateAnswer(), rating)

    assert [(r["answer_id"], r["query"]) for r in ratings(database)] == [("history:disputes-02", "I never got what I paid for")] * 2
    assert not history.UNSAVED_RATINGS.exists()


# ------------------------------------------------------------------ an answers experiment

# The same search before and after ratings: customers voted the first answer down.
DOWNVOTED = {**HIT, "id": "joint-accounts-02", "answer": "Ask in a branch.", "score": 0.84}
RERANKED = {"hits": [{**HIT, "base_score": 0.82}, {**DOWNVOTED, "score": 0.70, "base_score": 0.84}],
            "best_score": 0.82, "raw_hits": [DOWNVOTED, HIT]}


@pytest.fixture
def answers_arm(database, tmp_path, monkeypatch):
    """`answers_arm(**params)`: everyone not yet exposed gets one arm with these parameters."""
    db.connect.cache_clear()

    def run_with(**params) -> None:
        use_experiments(monkeypatch, tmp_path, [{
            "name": "answers-test", "surface": "answers", "metric": "thumbs_up",
            "arms": [{"name": "control", "weight": 0}, {"name": "treated", "weight": 1, **params}]}])
    yield run_with
    experiments.reset_experiments()
    db.connect.cache_clear()


def exposures(url: str) -> List[tuple]:
    with db.connect(url).connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(db.experiment_exposures.c.experiment, db.experiment_exposures.c.arm,
                                                         db.experiment_exposures.c.customer_id,
                                                         db.experiment_exposures.c.conversation_id))]


def test_without_an_experiment_answers_are_reranked_by_ratings_and_nothing_is_logged(answers_arm, database):
    [message] = run(ActionAnswerFromHistory(), tracker("nlu_fallback", "can we share an account", RERANKED))
    assert message["answer"] == HIT["answer"]
    assert exposures(database) == []


def test_the_raw_order_arm_answers_from_the_hits_before_ratings_and_is_logged(answers_arm, database):
    answers_arm(rerank=False)
    [message] = run(ActionAnswerFromHistory(), tracker("nlu_fallback", "can we share an account", RERANKED))
    assert message["answer"] == DOWNVOTED["answer"]
    assert exposures(database) == [("answers-test", "treated", "customer-7", "customer-7")]


def test_the_reranked_arm_answers_as_without_an_experiment(answers_arm, database):
    answers_arm(rerank=True)
    [message] = run(ActionAnswerFromHistory(), tracker("nlu_fallback", "can we share an account", RERANKED))
    assert message["answer"] == HIT["answer"]
    assert exposures(database) == [("answers-test", "treated", "customer-7", "customer-7")]


def test_the_arms_threshold_decides_whether_a_past_answer_is_given(answers_arm, database):
    answers_arm(threshold=0.9)  # stricter than the 0.82 of the best hit
    messages = run(ActionAnswerFromHistory(), tracker("nlu_fallback", "can we share an account", RERANKED))
    assert [m["response"] for m in messages] == ["utter_please_rephrase", "utter_offer_human"]
    answers_arm(threshold=0.5)  # the same arm declared with a lower threshold
    [message] = run(ActionAnswerFromHistory(), tracker("nlu_fallback", "can we share an account", RERANKED))
    assert message["response"] == "utter_history_answer"
    assert [arm for _, arm, _, _ in exposures(database)] == ["treated", "treated"]  # each decision logged
