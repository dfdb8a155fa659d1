"""Suggestions in the dialogue: the buttons the answer actions add, and the select / opt-out / erase actions.

The real actions run with the real recommender (trained briefly on synthetic
demo customers) and a real temporary database.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Optional

import pytest
import sqlalchemy as sa
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import suggestions
from bot.handoff.queue import HandoffQueue
from bot.actions.suggestions import (
    ActionForgetMe,
    ActionNoSuggestions,
    ActionSelectSuggestion,
    suggestion_buttons,
    suggestion_context,
)
from bot.insight import experiments
from bot.insight.experiments import active_experiment
from core import db
from core.settings import PROJECT_ROOT, get_settings
from recommender import Recommender, load_items
from recommender import store
from tests.experiment_files import use_experiments
from training.generate_demo_customers import generate

CATALOGUE = PROJECT_ROOT / "bot" / "catalogue" / "items.jsonl"


@pytest.fixture(scope="module")
def demo():
    items = load_items(CATALOGUE)
    customers, interactions = generate(items, customers=80, seed=5)
    model = Recommender.fit(interactions, items, customers=customers, sequence_epochs=4, sequence_dim=16)
    return items, customers, interactions, model


@pytest.fixture
def engine(tmp_path, monkeypatch, demo):
    """A fresh database for the actions (settings and engines re-read), with the demo data in it."""
    url = f"sqlite:///{tmp_path / 'assistant.db'}"
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", url)
    get_settings.cache_clear()
    db.connect.cache_clear()
    items, customers, interactions, model = demo
    engine = db.connect()
    store.save_items(engine, items)
    store.save_customers(engine, customers, synthetic=True)
    store.add_interactions(engine, interactions)
    monkeypatch.setenv("ASSISTANT_RECOMMENDER_DIR", str(tmp_path / "recommender"))
    monkeypatch.setenv("ASSISTANT_TRACKER_DB", str(tmp_path / "tracker.db"))
    get_settings.cache_clear()
    experiments.reset_experiments()
    fresh = Recommender.load(model.save(tmp_path / "recommender"))
    fresh.use_history(store.history_source(engine), drop_saved=True)  # as the action server does
    suggestions.use_recommender(fresh)
    yield engine
    suggestions.use_recommender(None)
    get_settings.cache_clear()
    db.connect.cache_clear()


def tracker(intent: str, sender: str = "cust-42", text: str = "", earlier: Optional[List[str]] = None,
            slots: Optional[Dict[str, Any]] = None, active_loop: Optional[str] = None,
            entities: Optional[List[Dict[str, Any]]] = None, bot_buttons: Optional[List[Dict[str, str]]] = None,
            retrieved_tags: Optional[List[str]] = None) -> Tracker:
    events = [{"event": "user", "text": "", "parse_data": {"intent": {"name": name}}} for name in earlier or []]
    if bot_buttons:
        events.append({"event": "bot", "text": "answer", "data": {"buttons": bot_buttons}})
    latest = {"intent": {"name": intent, "confidence": 0.9}, "entities": entities or [], "text": text}
    if retrieved_tags is not None:
        latest["retrieval"] = {"hits": [{"id": "qa-1", "answer": "...", "score": 0.7, "tags": retrieved_tags}], "best_score": 0.7}
    events.append({"event": "user", "text": text, "parse_data": latest})
    return Tracker(sender, dict(slots or {}), latest, events, False, None, {"name": active_loop} if active_loop else {}, "action_listen")


def run(action, tracker_: Tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker_, {}))
    return dispatcher.messages, events


def offered(buttons: List[Dict[str, str]]) -> List[str]:
    return [json.loads(b["payload"][len("/select_suggestion"):])["item_id"] for b in buttons]


def test_an_answer_about_paying_abroad_carries_up_to_three_explained_suggestions(engine):
    buttons = suggestion_buttons(tracker("exchange_rate"), topic="exchange_rate")
    assert 1 <= len(buttons) <= get_settings().max_suggestions
    assert all(b["payload"].startswith('/select_suggestion{"item_id":"') for b in buttons)
    assert "because you asked about paying abroad" in buttons[0]["title"]
    first = suggestions.get_recommender().item(offered(buttons)[0])
    assert "exchange_rate" in first["tags"] and buttons[0]["title"].startswith(first["title"])


@pytest.mark.parametrize("topic", ["nlu_fallback", "complaint", "request_human", "lost_or_stolen_card", "freeze_card"])
def test_no_suggestions_on_sensitive_topics(engine, topic):
    assert suggestion_buttons(tracker(topic), topic=topic) == []


@pytest.mark.parametrize("topic", ["bereavement-poa", "fraud"])
def test_no_suggestions_after_an_answer_about_a_bereavement_or_a_fraud(engine, topic):
    assert suggestion_buttons(tracker("ask_question"), topic=topic) == []


def test_an_answer_from_history_is_followed_by_suggestions_on_its_topic(engine):
    buttons = suggestion_buttons(tracker("ask_question", retrieved_tags=["cards-abroad"]), topic="cards-abroad")
    assert buttons and "because you asked about using your card abroad" in buttons[0]["title"]
    assert suggestion_buttons(tracker("ask_question", retrieved_tags=["joint-accounts", "bereavement-poa"]), topic="joint-accounts") == []


def test_after_a_confident_intent_unrelated_retrieved_answers_do_not_matter(engine):
    buttons = suggestion_buttons(tracker("exchange_rate", retrieved_tags=["complaints-misc"]), topic="exchange_rate")
    assert buttons and "because you asked about paying abroad" in buttons[0]["title"]


def test_no_suggestions_shortly_after_a_lost_card(engine):
    assert suggestion_buttons(tracker("card_arrival", earlier=["lost_or_stolen_card"]), topic="card_arrival") == []
    assert suggestion_buttons(tracker("exchange_rate", earlier=["lost_or_stolen_card", "thanks", "greet", "thanks"]),
                              topic="exchange_rate") != []


def test_no_suggestions_during_a_form_or_a_handoff(engine):
    assert suggestion_buttons(tracker("exchange_rate", active_loop="freeze_card_form"), topic="exchange_rate") == []
    HandoffQueue().open("cust-handed", "asked", "cust-handed", "rest")
    assert suggestion_buttons(tracker("exchange_rate", sender="cust-handed"), topic="exchange_rate") == []


def test_nothing_is_suggested_when_nothing_clears_the_threshold(engine, monkeypatch):
    monkeypatch.setenv("ASSISTANT_SUGGESTION_THRESHOLD", "0.99")
    get_settings.cache_clear()
    assert suggestion_buttons(tracker("exchange_rate", sender="new-visitor"), topic="greet") == []


def test_a_click_is_stored_and_changes_the_next_suggestions_at_once(engine):
    before = offered(suggestion_buttons(tracker("exchange_rate"), topic="exchange_rate"))
    clicked = before[0]
    messages, _ = run(ActionSelectSuggestion(), tracker("select_suggestion", entities=[{"entity": "item_id", "value": clicked}]))
    assert messages[0]["response"] == "utter_suggestion_details"
    assert messages[0]["title"] == suggestions.get_recommender().item(clicked)["title"]
    with engine.connect() as conn:
        kinds = conn.execute(sa.select(db.interactions.c.kind).where(db.interactions.c.customer_id == "cust-42")
                             .where(db.interactions.c.item_id == clicked)).scalars().all()
    assert kinds == ["click"]
    after = offered(suggestion_buttons(tracker("exchange_rate"), topic="exchange_rate"))
    assert clicked not in after and after != before


def test_typing_tell_me_more_opens_the_latest_suggestion(engine):
    buttons = suggestion_buttons(tracker("exchange_rate", sender="typist"), topic="exchange_rate")
    messages, _ = run(ActionSelectSuggestion(), tracker("select_suggestion", sender="typist", bot_buttons=buttons))
    assert messages[0]["title"] == suggestions.get_recommender().item(offered(buttons)[0])["title"]
    messages, _ = run(ActionSelectSuggestion(), tracker("select_suggestion", sender="typist"))
    assert messages[0]["response"] == "utter_suggestion_unknown"


def test_no_suggestions_is_honoured_at_once_and_remembered(engine):
    assert suggestion_buttons(tracker("exchange_rate", sender="demo-0001"), topic="exchange_rate")
    messages, events = run(ActionNoSuggestions(), tracker("no_suggestions", sender="demo-0001"))
    assert messages[0]["response"] == "utter_suggestions_off"
    assert events == [{"event": "slot", "timestamp": None, "name": "suggestions_opt_out", "value": True}]
    assert store.suggestions_opted_out(engine, "demo-0001")
    # remembered in a later conversation, where the slot is not set
    assert suggestion_buttons(tracker("exchange_rate", sender="demo-0001"), topic="exchange_rate") == []


def test_forget_me_records_a_request_that_the_worker_carries_out(engine, tmp_path):
    from bot.privacy import requests
    from bot.privacy.worker import Worker

    customer = "demo-0002"
    with engine.begin() as conn:
        conn.execute(db.answer_ratings.insert().values(answer_id="intent:exchange_rate", query="fees abroad?", rating=1,
                                                       customer_id=customer, conversation_id=customer, ts=1.0))
    run(ActionSelectSuggestion(), tracker("select_suggestion", sender=customer, entities=[{"entity": "item_id", "value": "easy-saver"}]))
    model = suggestions.get_recommender()
    assert customer in model.profiles

    messages, _ = run(ActionForgetMe(), tracker("affirm", sender=customer))
    assert messages[0]["response"] == "utter_forget_me_recorded"
    assert requests.open_request_of(engine, customer)["requested_via"] == customer
    messages, _ = run(ActionForgetMe(), tracker("affirm", sender=customer))  # asked twice: still one request
    assert len(requests.requests_of(engine, customer)) == 1

    [result] = Worker(name="test").run_once(now=__import__("time").time() + 3600)  # the turn was never saved: erased anyway
    assert result["status"] == "done"
    with engine.connect() as conn:
        for table, column in ((db.customers, db.customers.c.id), (db.interactions, db.interactions.c.customer_id),
                              (db.answer_ratings, db.answer_ratings.c.customer_id)):
            assert conn.execute(sa.select(sa.func.count()).select_from(table).where(column == customer)).scalar() == 0, table.name
        assert conn.execute(sa.select(sa.func.count()).select_from(db.customers)).scalar() == 79  # the others stay
    assert customer not in model.profiles
    assert customer not in (tmp_path / "recommender" / "profiles.jsonl").read_text()  # the trained artifact too
    suggestion_buttons(tracker("exchange_rate", sender=customer), topic="exchange_rate")
    assert not [p for p in model.profiles[customer].items]  # read again from the database: nothing of before


def test_a_served_profile_comes_from_the_database_not_from_the_saved_model(engine):
    model = suggestions.get_recommender()
    assert model.profiles == {} and model.folder is None  # nothing taken from artifacts/recommender
    suggestion_buttons(tracker("exchange_rate", sender="demo-0003"), topic="exchange_rate")
    assert model.profiles["demo-0003"].items  # its history, read from the database on first sight


def test_without_a_trained_model_suggestions_come_from_the_catalogue(engine, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ASSISTANT_RECOMMENDER_DIR", str(tmp_path / "never-trained"))
    get_settings.cache_clear()
    suggestions.use_recommender(None)
    buttons = suggestion_buttons(tracker("exchange_rate", sender="new-visitor"), topic="exchange_rate")
    assert buttons and "no recommender in" in caplog.text
    assert "exchange_rate" in suggestions.get_recommender().item(offered(buttons)[0])["tags"]


# ------------------------------------------------------------------ a suggestions experiment


def exposures(engine) -> List[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(db.experiment_exposures.c.experiment, db.experiment_exposures.c.arm,
                                                         db.experiment_exposures.c.customer_id,
                                                         db.experiment_exposures.c.conversation_id))]


@pytest.fixture
def experiment(engine, tmp_path, monkeypatch):
    """Puts everyone not yet exposed into the one arm with a weight: `experiment(strategy)`."""
    def run_with(strategy: str) -> None:
        use_experiments(monkeypatch, tmp_path, [{
            "name": "suggestions-test", "surface": "suggestions", "metric": "click_through",
            "arms": [{"name": "control", "strategy": "blend", "weight": 0}, {"name": "treated", "strategy": strategy, "weight": 1}]}])
    yield run_with
    experiments.reset_experiments()


def test_without_an_experiment_the_blend_ranks_and_nothing_is_logged(engine):
    assert active_experiment("suggestions") is None  # the shipped declaration runs nothing
    customer = tracker("exchange_rate", sender="demo-0004")
    model = suggestions.get_recommender()
    blend = model.recommend("demo-0004", k=get_settings().max_suggestions, context=suggestion_context(customer, "exchange_rate"))
    assert offered(suggestion_buttons(customer, topic="exchange_rate")) == [
        s.item_id for s in blend if s.score >= get_settings().suggestion_threshold]
    assert exposures(engine) == []


@pytest.mark.parametrize("strategy", ["popularity", "content", "item_item", "sequence", "blend"])
def test_the_customers_arm_decides_the_ranking_and_the_exposure_is_logged(engine, experiment, strategy):
    experiment(strategy)
    customer = tracker("exchange_rate", sender="demo-0005")
    settings = get_settings()
    expected = [s.item_id for s in suggestions.get_recommender().recommend(
        "demo-0005", k=settings.max_suggestions, context=suggestion_context(customer, "exchange_rate"), strategy=strategy)
        if s.score >= settings.suggestion_threshold]
    assert expected, strategy  # a customer with history: every strategy has something to say

    assert offered(suggestion_buttons(customer, topic="exchange_rate")) == expected
    assert exposures(engine) == [("suggestions-test", "treated", "demo-0005", "demo-0005")]


def test_popularity_arm_ignores_the_topic_the_blend_follows(engine, experiment):
    blend = suggestion_buttons(tracker("exchange_rate", sender="walk-in-1"), topic="exchange_rate")
    assert "because you asked about paying abroad" in blend[0]["title"]
    experiment("popularity")
    popular = suggestion_buttons(tracker("exchange_rate", sender="walk-in-2"), topic="exchange_rate")
    assert popular and all("popular with other customers" in b["title"] for b in popular)


def test_the_off_arm_shows_nothing_but_logs_the_exposure_and_keeps_the_topic(engine, experiment):
    experiment("off")
    assert suggestion_buttons(tracker("exchange_rate", sender="demo-0006"), topic="exchange_rate") == []
    assert exposures(engine) == [("suggestions-test", "treated", "demo-0006", "demo-0006")]
    with engine.connect() as conn:
        topics = conn.execute(sa.select(db.interactions.c.topic).where(db.interactions.c.conversation_id == "demo-0006",
                                                                       db.interactions.c.kind == "topic")).scalars().all()
    assert topics == ["exchange_rate"]


def test_no_exposure_where_suggestions_do_not_belong(engine, experiment):
    experiment("popularity")
    assert suggestion_buttons(tracker("complaint", sender="demo-0007"), topic="complaint") == []
    store.set_suggestions_opt_out(engine, "demo-0008", True)
    assert suggestion_buttons(tracker("exchange_rate", sender="demo-0008"), topic="exchange_rate") == []
    assert exposures(engine) == []


def test_warm_up_loads_the_encoder_and_embeds_the_domains_topics_before_any_request(engine):
    from core.domain import domain_intents

    content = suggestions.loaded_recommender().content
    topics = domain_intents()
    unknown = [t for t in topics if t not in content.term_vectors]
    assert "exchange_rate" in topics and unknown  # intents no catalogue item carries as a tag
    assert suggestions.warm_up(topics) == len(topics)
    assert all(t in content.term_vectors for t in topics)  # answered later from memory, no encoder on the request path


def test_warm_up_without_a_recommender_logs_and_leaves_the_loading_to_first_use(monkeypatch, caplog):
    def broken():
        raise RuntimeError("no database")

    monkeypatch.setattr(suggestions, "_load_recommender", broken)
    suggestions.use_recommender(None)
    assert suggestions.warm_up(["exchange_rate"]) == 0
    assert "could not be loaded ahead of the first request" in caplog.text
    assert suggestions.loaded_recommender() is None


def test_the_action_server_warms_up_before_it_listens(monkeypatch):
    import rasa_sdk.endpoint

    from bot import action_server

    order: List[str] = []

    class App:
        def __init__(self):
            self.config = type("Config", (), {})()  # Sanic's config: the keep-alive is set on it

        def register_middleware(self, *args, **kwargs):
            pass

        def register_listener(self, *args, **kwargs):
            pass

        def run(self, host, port, **kwargs):
            assert self.config.KEEP_ALIVE_TIMEOUT == action_server.KEEP_ALIVE_TIMEOUT_S  # set before it listens
            order.append(f"listen {host}:{port}")

    monkeypatch.setattr(suggestions, "warm_up", lambda topics: order.append(f"warm {len(list(topics))} topics") or 0)
    monkeypatch.setattr(rasa_sdk.endpoint, "create_app", lambda *args, **kwargs: order.append("create the SDK's app") or App())
    monkeypatch.setenv("ACTION_SERVER_SECRET", "s" * 40)
    assert action_server.main(["--actions", "bot.actions", "--port", "5999"]) == 0
    # The SDK's app first: bot.actions starts its privacy worker on import only where that app exists.
    assert len(order) == 3 and order[0] == "create the SDK's app"
    assert order[1].startswith("warm ") and order[1] != "warm 0 topics"
    assert order[2].startswith("listen ") and order[2].endswith(":5999")
