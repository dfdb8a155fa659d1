"""The assistant's domain, training data and core dialogue actions.

The data checks are what ``rasa data validate`` does, through Rasa's own
`Validator`, plus the project's rules: every service intent has enough
examples and a written answer, no example is labelled with two intents, and
every response is sent by something. The action checks run the real custom
actions with a real domain and a real (temporary) database.
"""
from __future__ import annotations

import asyncio
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import sqlalchemy as sa
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.answers import ActionAnswerIntent, rating_buttons
from bot.actions.dialogue import ActionFreezeCard, ActionHandoff, ValidateFreezeCardForm
from bot.actions.slot_values import parse_card_last_four
from bot.handoff.queue import HandoffQueue
from core import db
from core.settings import PROJECT_ROOT

MIN_EXAMPLES_PER_SERVICE_INTENT = 15
MIN_SERVICE_INTENTS = 22
# Responses Rasa's own default actions send (action_default_fallback, ...).
RASA_DEFAULT_RESPONSES = {"utter_default", "utter_ask_rephrase", "utter_ask_affirmation"}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def importer():
    from rasa.shared.importers.importer import TrainingDataImporter

    config = PROJECT_ROOT / "config.yml"
    if not config.exists():
        pytest.fail(f"{config} is missing: the assistant's config.yml belongs at the repository root")
    return TrainingDataImporter.load_from_config(
        config_path=str(config),
        domain_path=str(PROJECT_ROOT / "bot" / "domain"),
        training_data_paths=[str(PROJECT_ROOT / "bot" / "data")],
    )


@pytest.fixture(scope="module")
def validator(importer):
    from rasa.validator import Validator

    return Validator.from_importer(importer)


@pytest.fixture(scope="module")
def domain(importer):
    return importer.get_domain()


@pytest.fixture(scope="module")
def domain_dict(domain) -> Dict[str, Any]:
    """The domain as the action server receives it."""
    return domain.as_dict()


@pytest.fixture(scope="module")
def examples_by_intent(importer) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = defaultdict(list)
    for message in importer.get_nlu_data().intent_examples:
        found[message.get("intent")].append(message.get("text"))
    return found


@pytest.fixture(scope="module")
def story_steps(importer):
    return importer.get_stories().story_steps


@pytest.fixture(scope="module")
def service_intents(story_steps) -> List[str]:
    """Intents answered by action_answer_intent, read from the rules and stories."""
    from rasa.shared.core.events import ActionExecuted, UserUttered

    answered = set()
    for step in story_steps:
        for before, after in zip(step.events, step.events[1:]):
            if (
                isinstance(before, UserUttered)
                and isinstance(after, ActionExecuted)
                and after.action_name == "action_answer_intent"
            ):
                answered.add(before.intent_name)
    return sorted(answered)


def _warnings_from(check, *args, **kwargs) -> List[str]:
    """Run a Validator check and return the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(*args, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


# ------------------------------------------------------------------ training data


# Intents the classifier never predicts, so without examples on purpose: set by an NLU
# component (nlu.FrustrationReader) or sent only by buttons (the handoff notices).
SET_BY_COMPONENTS = {"frustrated", "cancel_handoff", "leave_message"}


def test_every_domain_intent_has_examples_and_every_example_intent_is_in_the_domain(validator):
    found = _warnings_from(validator.verify_intents, ignore_warnings=False)
    assert [w for w in found if not any(f"'{intent}'" in w for intent in SET_BY_COMPONENTS)] == []
    assert len(found) == len(SET_BY_COMPONENTS), found


def test_no_example_is_labelled_with_two_intents(validator, examples_by_intent):
    assert _warnings_from(validator.verify_example_repetition_in_intents, ignore_warnings=False) == []
    # Rasa compares exact text; case and punctuation must not hide a duplicate either.
    intents_by_text = defaultdict(set)
    for intent, texts in examples_by_intent.items():
        for text in texts:
            intents_by_text[re.sub(r"[^a-z0-9£ ]", "", text.lower()).strip()].add(intent)
    assert {t: sorted(i) for t, i in intents_by_text.items() if len(i) > 1} == {}


def test_every_service_intent_has_enough_examples_and_a_written_answer(service_intents, examples_by_intent, domain):
    assert len(service_intents) >= MIN_SERVICE_INTENTS, service_intents
    for intent in service_intents:
        assert len(examples_by_intent[intent]) >= MIN_EXAMPLES_PER_SERVICE_INTENT, intent
        variations = domain.responses.get(f"utter_{intent}")
        assert variations and all(v.get("text", "").strip() for v in variations), f"utter_{intent} has no text"


def test_every_intent_is_used_by_a_rule_or_story(validator):
    found = _warnings_from(validator.verify_intents_in_stories, ignore_warnings=False)
    # Rasa's check reads NLU examples too: an intent with none is reported although a rule uses it.
    assert [w for w in found if not any(f"'{intent}'" in w for intent in SET_BY_COMPONENTS)] == []


def test_rules_and_stories_use_only_actions_forms_and_slots_of_the_domain(validator):
    assert validator.verify_actions_in_stories_rules()
    assert validator.verify_forms_in_stories_rules()
    assert validator.verify_form_slots()
    assert validator.verify_slot_mappings()


def test_stories_do_not_contradict_each_other(validator):
    assert validator.verify_story_structure(ignore_warnings=False, max_history=5)


def test_every_response_is_sent_by_a_rule_story_form_or_action(domain, story_steps, service_intents):
    # Rasa's validator cannot see responses sent by custom actions and forms, so
    # it reports them as unused; this check knows where each one comes from.
    from rasa.shared.core.events import ActionExecuted

    used = {e.action_name for step in story_steps for e in step.events if isinstance(e, ActionExecuted)}
    used |= {f"utter_{intent}" for intent in service_intents}
    for form in domain.form_names:  # Rasa asks with utter_ask_<form>_<slot>, else utter_ask_<slot>
        used |= {f"utter_ask_{form}_{slot}" for slot in domain.required_slots_for_form(form)}
        used |= {f"utter_ask_{slot}" for slot in domain.required_slots_for_form(form)}
    code = "\n".join(p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "bot").rglob("*.py"))
    used |= set(re.findall(r"\butter_[a-z0-9_]+\b", code))
    unused = sorted(set(domain.responses) - used - RASA_DEFAULT_RESPONSES)
    assert unused == []


def test_conversation_tests_use_only_the_domain(domain):
    from rasa.shared.core.events import ActionExecuted, UserUttered
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader

    path = PROJECT_ROOT / "bot" / "tests" / "test_conversations.yml"
    assert YAMLStoryReader.is_test_stories_file(path)
    steps = YAMLStoryReader(domain).read_from_file(path)
    events = [e for step in steps for e in step.events]
    user_turns = [e for e in events if isinstance(e, UserUttered)]
    assert user_turns and all(e.text and e.intent_name in domain.intents for e in user_turns)
    actions = {e.action_name for e in events if isinstance(e, ActionExecuted)}
    assert actions <= set(domain.action_names_or_texts), actions - set(domain.action_names_or_texts)


# ------------------------------------------------------------------ actions


def _tracker(
    intent: str,
    text: str = "",
    slots: Optional[Dict[str, Any]] = None,
    sender_id: str = "customer-1",
    channel: Optional[str] = "rest",
) -> Tracker:
    latest = {"intent": {"name": intent, "confidence": 0.9}, "entities": [], "text": text}
    user_event = {"event": "user", "text": text, "parse_data": latest, "input_channel": channel}
    return Tracker(sender_id, dict(slots or {}), latest, [user_event], False, None, {}, "action_listen")


def _run(action, tracker: Tracker, domain_dict: Dict[str, Any]):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, domain_dict))
    return dispatcher.messages, events


def test_rating_buttons_carry_the_answer_id_and_rating():
    assert rating_buttons("intent:card_arrival") == [
        {"title": "👍", "payload": '/rate_answer{"answer_id":"intent:card_arrival","rating":"up"}'},
        {"title": "👎", "payload": '/rate_answer{"answer_id":"intent:card_arrival","rating":"down"}'},
    ]


def test_service_intent_is_answered_with_its_response_and_rating_buttons(domain_dict):
    messages, events = _run(ActionAnswerIntent(), _tracker("card_arrival", "where's my new card?"), domain_dict)

    assert events == []
    [message] = messages
    assert message["response"] == "utter_card_arrival"
    assert message["buttons"][:2] == rating_buttons("intent:card_arrival")


def test_intent_without_a_written_answer_gets_the_default_reply(domain_dict):
    messages, _ = _run(ActionAnswerIntent(), _tracker("nlu_fallback", "blorp"), domain_dict)

    assert [m["response"] for m in messages] == ["utter_default"]
    assert not messages[0]["buttons"]


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("1234", "1234"),
        ("0097", "0097"),
        (" 1 9 7 3 ", "1973"),
        ("it ends in 4821", "4821"),
        ("last 4 digits: 3019", "3019"),
        ("12", None),
        ("12345", None),
        ("4000 1234 5678 9010", None),
        ("either 1234 or 5678", None),
        ("four three two one", None),
        ("", None),
        (None, None),
    ],
)
def test_card_last_four_is_exactly_one_group_of_four_digits(typed, expected):
    assert parse_card_last_four(typed) == expected


def test_invalid_last_four_is_refused_with_an_explanation(domain_dict):
    form = ValidateFreezeCardForm()
    tracker = _tracker("inform_card_digits", "12")

    dispatcher = CollectingDispatcher()
    assert form.validate_card_last_four("12", dispatcher, tracker, domain_dict) == {"card_last_four": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_card_last_four_invalid"]

    dispatcher = CollectingDispatcher()
    full_number = "4000 1234 5678 9010"
    assert form.validate_card_last_four(full_number, dispatcher, tracker, domain_dict) == {"card_last_four": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_full_card_number_warning"]

    dispatcher = CollectingDispatcher()
    assert form.validate_card_last_four("it ends in 4821", dispatcher, tracker, domain_dict) == {
        "card_last_four": "4821"
    }
    assert dispatcher.messages == []


def test_freeze_confirmation_accepts_only_yes_or_no(domain_dict):
    form = ValidateFreezeCardForm()
    tracker = _tracker("affirm", "yes")
    dispatcher = CollectingDispatcher()

    assert form.validate_freeze_confirmed(True, dispatcher, tracker, domain_dict) == {"freeze_confirmed": True}
    assert form.validate_freeze_confirmed(False, dispatcher, tracker, domain_dict) == {"freeze_confirmed": False}
    assert dispatcher.messages == []
    assert form.validate_freeze_confirmed("maybe later", dispatcher, tracker, domain_dict) == {"freeze_confirmed": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_answer_yes_or_no"]


@pytest.mark.parametrize(
    "confirmed, response", [(True, "utter_card_frozen"), (False, "utter_card_not_frozen")]
)
def test_freeze_outcome_is_confirmed_and_the_form_slots_cleared(domain_dict, confirmed, response):
    slots = {"card_last_four": "4821", "freeze_confirmed": confirmed}
    messages, events = _run(ActionFreezeCard(), _tracker("affirm", "yes", slots=slots), domain_dict)

    assert (messages[0]["response"], messages[0]["card_last_four"]) == (response, "4821")
    # A completed freeze may be followed by the satisfaction rating (tests/test_satisfaction.py).
    assert [m["response"] for m in messages[1:]] in ([], ["utter_ask_satisfaction"])
    assert {("card_last_four", None), ("freeze_confirmed", None)} <= {(e["name"], e["value"]) for e in events}
    template = domain_dict["responses"][response][0]["text"]
    assert "{card_last_four}" in template


@pytest.fixture()
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'assistant.db'}"


def _handoff_rows(db_url: str) -> List[Dict[str, Any]]:
    with db.connect(db_url).connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(db.handoffs).order_by(db.handoffs.c.id)).mappings()]


def test_asking_for_a_person_queues_the_conversation_once_and_pauses_it(domain_dict, db_url):
    action = ActionHandoff(db_url=db_url)
    tracker = _tracker("request_human", "can I talk to a person", sender_id="customer-7", channel="rest")

    first, paused = _run(action, tracker, domain_dict)
    again, _ = _run(action, tracker, domain_dict)

    # Nobody has signed in to the inbox here: the customer is told so, with the opening hours.
    assert [m["response"] for m in first] == ["utter_handoff_ack", "utter_handoff_queued", "utter_handoff_nobody_online"]
    assert first[1]["position"] == 1 and [m["response"] for m in again] == [m["response"] for m in first]
    assert [e["event"] for e in paused] == ["slot", "pause"]  # the dialogue pauses itself: the desk only holds delivery
    [row] = _handoff_rows(db_url)
    assert (row["conversation_id"], row["customer_id"], row["channel"], row["reason"], row["status"]) == (
        "customer-7",
        "customer-7",
        "rest",
        "asked",
        "waiting",
    )
    queue = HandoffQueue(db.connect(db_url))
    assert queue.current("customer-7").id == row["id"]
    assert queue.current("someone-else") is None


def test_a_complaint_is_queued_with_its_reason(domain_dict, db_url):
    _run(ActionHandoff(db_url=db_url), _tracker("complaint", "this is a disgrace", sender_id="c-9"), domain_dict)

    assert [(r["conversation_id"], r["reason"]) for r in _handoff_rows(db_url)] == [("c-9", "complaint")]


def test_the_dialogue_s_reason_words_the_notice_and_is_stored_with_a_summary_for_the_agent(domain_dict, db_url):
    frustrated = _tracker("frustrated", "this is useless!!", sender_id="c-f")
    frustrated.latest_message["frustration"] = {"frustrated": True, "evidence": ["useless", "!!"],
                                                "sentiment": {"label": "negative", "confidence": 0.93}}
    said, _ = _run(ActionHandoff(db_url=db_url), frustrated, domain_dict)
    again = _tracker("nlu_fallback", "zorp wibble", slots={"handoff_reason": "fallbacks"}, sender_id="c-b")
    said_after_fallbacks, events = _run(ActionHandoff(db_url=db_url), again, domain_dict)

    assert [(m["response"], m.get("position")) for m in said] == [("utter_handoff_frustrated", 1),
                                                                   ("utter_handoff_nobody_online", None)]
    assert [m["response"] for m in said_after_fallbacks][0] == "utter_handoff_after_fallbacks"
    assert events[0] == {"event": "slot", "timestamp": None, "name": "handoff_reason", "value": None}
    rows = {r["conversation_id"]: r for r in _handoff_rows(db_url)}
    assert (rows["c-f"]["reason"], rows["c-f"]["summary"]) == ("frustration", "frustration: useless; !! (reads negative, 0.93)")
    assert (rows["c-b"]["reason"], rows["c-b"]["summary"]) == ("fallbacks", "two fallbacks in a row")


def test_with_someone_online_the_customer_hears_the_expected_wait_and_with_nobody_the_hours(domain_dict, db_url,
                                                                                          monkeypatch):
    from bot.security import staff

    engine = db.connect(db_url)
    monkeypatch.setenv("ASSISTANT_SUPPORT_HOURS", "always")
    from core.settings import get_settings

    get_settings.cache_clear()
    try:
        queue = HandoffQueue(engine)
        for n, minutes in enumerate((4, 6, 20)):  # history: three customers waited 4, 6 and 20 minutes
            queue.open(f"old-{n}", "asked")
            with engine.begin() as conn:
                conn.execute(db.handoffs.update().where(db.handoffs.c.conversation_id == f"old-{n}")
                             .values(created_at=1000.0, taken_at=None))
            queue.take(f"old-{n}", "alex")
            with engine.begin() as conn:
                conn.execute(db.handoffs.update().where(db.handoffs.c.conversation_id == f"old-{n}").values(
                    created_at=db.handoffs.c.taken_at - minutes * 60))
        said, _ = _run(ActionHandoff(db_url=db_url), _tracker("request_human", "a person please", sender_id="new"), domain_dict)
        assert [m["response"] for m in said] == ["utter_handoff_ack", "utter_handoff_queued", "utter_handoff_nobody_online"]
        assert said[2]["hours"] == "every day, all day"

        staff.add_account(engine, "alex", "a-long-enough-passphrase-1", role="agent")
        staff.open_session(engine, "alex", "password", "127.0.0.1")  # alex has the inbox open
        said, _ = _run(ActionHandoff(db_url=db_url), _tracker("request_human", "a person please", sender_id="newer"), domain_dict)
        assert [m["response"] for m in said] == ["utter_handoff_ack", "utter_handoff_queued", "utter_handoff_wait"]
        assert said[1]["position"] == 2 and said[2]["minutes"] == 6  # the median wait

        monkeypatch.setenv("ASSISTANT_SUPPORT_HOURS", "Mon-Sun 00:00-00:01")  # closed now (almost always)
        get_settings.cache_clear()
        said, _ = _run(ActionHandoff(db_url=db_url), _tracker("request_human", "a person please", sender_id="late"), domain_dict)
        assert said[-1]["response"] == "utter_handoff_nobody_online" and "Mon-Sun 00:00-00:01" in said[-1]["hours"]
    finally:
        get_settings.cache_clear()


def test_a_closed_handoff_does_not_stop_a_new_one(db_url):
    queue = HandoffQueue(db.connect(db_url))
    first = queue.open("c-1", "asked", "c-1", "rest")
    queue.close("c-1")

    second = queue.open("c-1", "asked", "c-1", "rest")

    assert second.id != first.id
    assert [r["status"] for r in _handoff_rows(db_url)] == ["closed", "waiting"]


def test_handoff_with_the_database_down_tells_the_customer_honestly(domain_dict, tmp_path):
    # A directory where the database file should be: SQLite cannot open it.
    unreachable = f"sqlite:///{tmp_path}"
    messages, events = _run(ActionHandoff(db_url=unreachable), _tracker("request_human", "human please"), domain_dict)

    assert [m["response"] for m in messages] == ["utter_handoff_unavailable"]
    assert [e["event"] for e in events] == ["slot"]  # not paused: the assistant goes on
    text = domain_dict["responses"]["utter_handoff_unavailable"][0]["text"]
    assert "couldn't reach" in text and "call us" in text
