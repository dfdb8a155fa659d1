"""The dialogue's handoff judgement across turns (bot/policies.py): asking again, two fallbacks in a row.

Single-message handoffs (asked, complaint, frustrated) are rules; the conversation
tests (bot/tests/test_conversations.yml) cover both through `rasa test`
(tests/e2e/test_conversation_tests.py).
"""
from __future__ import annotations

import time

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    ConversationPaused,
    ConversationResumed,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.policies import HandoffPolicy, is_fallback
from core.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(PROJECT_ROOT / "bot" / "domain"))


@pytest.fixture()
def policy(tmp_path) -> HandoffPolicy:
    return HandoffPolicy.create({}, LocalModelStorage(tmp_path), Resource("handoff"),
                                ExecutionContext(GraphSchema({}), "test"))


def said(text: str, intent: str, best: float = None, ts: float = None) -> UserUttered:
    parse = {"intent": {"name": intent, "confidence": 0.9}, "text": text}
    if best is not None:
        parse["retrieval"] = {"best_score": best, "hits": []}
    return UserUttered(text, parse["intent"], parse_data=parse, timestamp=ts or time.time())


def tracker_of(domain: Domain, *turns) -> DialogueStateTracker:
    tracker = DialogueStateTracker.from_events("web:t", [ActionExecuted(ACTION_LISTEN_NAME)], domain.slots)
    for turn in turns:
        if isinstance(turn, UserUttered):
            tracker.update(turn)
        else:
            tracker.update(turn)
            tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
    return tracker


def predicted(policy: HandoffPolicy, tracker: DialogueStateTracker, domain: Domain):
    prediction = policy.predict_action_probabilities(tracker, domain)
    best = max(range(len(prediction.probabilities)), key=prediction.probabilities.__getitem__)
    if prediction.probabilities[best] == 0:
        return None, []
    return domain.action_names_or_texts[best], prediction.optional_events


def test_asking_again_hands_over_for_frustration(policy, domain):
    tracker = tracker_of(domain, said("my card has not arrived yet", "card_arrival"), ActionExecuted("action_answer_intent"),
                         said("my card has still not arrived yet", "card_arrival"))
    action, events = predicted(policy, tracker, domain)
    assert action == "action_handoff" and events == [SlotSet("handoff_reason", "frustration")]
    assert policy.priority > 6  # above RulePolicy


def test_a_new_question_a_repeated_pleasantry_or_an_old_repeat_is_not_asking_again(policy, domain):
    answered = ActionExecuted("action_answer_intent")
    new_question = tracker_of(domain, said("my card has not arrived yet", "card_arrival"), answered,
                              said("what is the exchange rate today", "exchange_rate"))
    thanks = tracker_of(domain, said("thank you so much", "thanks"), ActionExecuted("utter_youre_welcome"),
                        said("thank you so much", "thanks"))
    hour_ago = time.time() - 3600
    old = tracker_of(domain, said("my card has not arrived yet", "card_arrival", ts=hour_ago), answered,
                     said("my card has not arrived yet", "card_arrival"))
    assert [predicted(policy, t, domain)[0] for t in (new_question, thanks, old)] == [None, None, None]


def test_two_unanswerable_messages_in_a_row_hand_over_but_one_or_an_answered_one_does_not(policy, domain):
    from_history = ActionExecuted("action_answer_from_history")
    two = tracker_of(domain, said("blorf the quux", "nlu_fallback", best=0.2), from_history,
                     said("zorp wibble", "nlu_fallback", best=0.1))
    one = tracker_of(domain, said("zorp wibble", "nlu_fallback", best=0.1))
    second_answered = tracker_of(domain, said("blorf the quux", "nlu_fallback", best=0.2), from_history,
                                 said("how do I do a wire transfer abroad", "nlu_fallback", best=0.9))
    assert predicted(policy, two, domain) == ("action_handoff", [SlotSet("handoff_reason", "fallbacks")])
    assert predicted(policy, one, domain)[0] is None and predicted(policy, second_answered, domain)[0] is None


def test_a_hand_back_starts_the_count_again_and_forms_rules_and_paused_dialogues_are_left_alone(policy, domain):
    fallback = said("blorf the quux", "nlu_fallback", best=0.2)
    handed_back = tracker_of(domain, fallback, ConversationPaused(), ConversationResumed(),
                             said("zorp wibble", "nlu_fallback", best=0.1))
    assert predicted(policy, handed_back, domain)[0] is None
    in_form = tracker_of(domain, said("my card has not arrived yet", "card_arrival"), ActiveLoop("freeze_card_form"),
                         said("my card has not arrived yet", "card_arrival"))
    assert predicted(policy, in_form, domain)[0] is None
    asked = tracker_of(domain, said("I want to talk to a person", "request_human"), ActionExecuted("utter_greet"),
                       said("I want to talk to a person please", "request_human"))
    assert predicted(policy, asked, domain)[0] is None  # the request_human rule hands over


def test_a_fallback_is_a_message_neither_nlu_nor_past_answers_could_answer():
    assert is_fallback({"intent": {"name": "nlu_fallback"}, "retrieval": {"best_score": 0.2}}, retrieval_threshold=0.55)
    assert not is_fallback({"intent": {"name": "nlu_fallback"}, "retrieval": {"best_score": 0.8}}, retrieval_threshold=0.55)
    assert is_fallback({"intent": {"name": "nlu_fallback"}}, retrieval_threshold=0.55)
    assert not is_fallback({"intent": {"name": "card_arrival"}}, retrieval_threshold=0.55)


def test_an_unsure_request_for_a_person_is_confirmed_first(policy, domain):
    def request(confidence: float) -> DialogueStateTracker:
        event = said("can I get a mortgage with you?", "request_human")
        event.intent["confidence"] = event.parse_data["intent"]["confidence"] = confidence
        return tracker_of(domain, event)

    assert predicted(policy, request(0.55), domain) == ("utter_confirm_handoff", [])
    assert predicted(policy, request(0.97), domain)[0] is None  # sure: the request_human rule hands over
    assert "utter_confirm_handoff" in domain.responses and {b["payload"] for b in domain.responses[
        "utter_confirm_handoff"][0]["buttons"]} == {"/affirm", "/deny"}


def test_after_a_handoff_that_could_not_pause_the_assistant_listens(policy, domain):
    tracker = tracker_of(domain, said("can I talk to a person please", "request_human"))
    tracker.update(ActionExecuted("action_handoff"))
    assert predicted(policy, tracker, domain) == ("action_listen", [])


def test_a_message_after_a_paused_handoff_is_not_answered_with_listening(policy, domain):
    """Served while waiting (the desk resumes for an urgent task): the policy has no opinion."""
    tracker = tracker_of(domain, said("I want a person", "request_human"))
    tracker.update(ActionExecuted("action_handoff"))
    tracker.update(ConversationPaused())
    tracker.update(ConversationResumed())
    tracker.update(said("my card was stolen", "lost_or_stolen_card"))
    assert predicted(policy, tracker, domain)[0] is None
