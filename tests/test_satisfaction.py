"""The end-of-conversation satisfaction rating: when it is offered, the store, the CSAT figures.

The actions run for real against a temporary SQLite database; the figures are
checked on ratings whose CSAT is known in advance.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Dict, List, Optional

import pytest
import sqlalchemy as sa
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.dialogue import ActionFreezeCard
from bot.actions.satisfaction import ActionAskSatisfaction, ActionRateService
from core import db, satisfaction
from core.settings import get_settings
from bot.insight import analytics


@pytest.fixture()
def db_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'assistant.db'}"
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def user(intent: str, text: str = "", entities: Optional[List[Dict[str, Any]]] = None, ts: float = 100.0) -> Dict[str, Any]:
    parse = {"intent": {"name": intent, "confidence": 0.9}, "entities": entities or [], "text": text}
    return {"event": "user", "text": text, "parse_data": parse, "input_channel": "rest", "timestamp": ts}


def tracker(turns: List[Dict[str, Any]], slots: Optional[Dict[str, Any]] = None, sender: str = "web:c1") -> Tracker:
    return Tracker(sender, dict(slots or {}), turns[-1]["parse_data"], turns, False, None, {}, "action_listen")


def run(action, t: Tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, {}))
    return dispatcher.messages, events


def rate(score: Any) -> Dict[str, Any]:
    return user("rate_service", '/rate_service{"score": %s}' % score, [{"entity": "score", "value": score}])


# ------------------------------------------------------------------ offering


def test_a_goodbye_gets_five_one_tap_buttons_once(db_url):
    messages, events = run(ActionAskSatisfaction(), tracker([user("card_arrival", "where is my card"), user("goodbye", "bye")]))
    [message] = messages
    assert message["response"] == "utter_ask_satisfaction"
    assert [b["payload"] for b in message["buttons"]] == ['/rate_service{"score": %d}' % n for n in range(1, 6)]
    assert [b["title"] for b in message["buttons"]] == ["1", "2", "3", "4", "5"]
    assert events == [{"event": "slot", "timestamp": None, "name": "satisfaction_asked", "value": True}]

    # The slot says it was asked: a second goodbye gets nothing.
    again, _ = run(ActionAskSatisfaction(), tracker([user("goodbye", "bye")], {"satisfaction_asked": True}))
    assert again == []


def test_a_conversation_already_rated_is_not_asked_again(db_url):
    satisfaction.record("web:c1", 5, customer_id="cust-1", db_url=db_url)
    messages, _ = run(ActionAskSatisfaction(), tracker([user("goodbye", "bye")]))
    assert messages == []


@pytest.mark.parametrize("turns", [
    [user("complaint", "this service is terrible"), user("goodbye", "bye")],  # during a complaint
    [user("card_arrival", "where is my card"), user("deny", "no"), user("goodbye", "bye")],  # "anything else?" "no"
    [user("goodbye", "no more questions, bye")],
    [user("goodbye", "that's all")],
    [user("no_suggestions", "no more suggestions please")],
])
def test_never_after_no_more_questions_nor_during_a_complaint(db_url, turns):
    messages, events = run(ActionAskSatisfaction(), tracker(turns))
    assert (messages, events) == ([], [])


def test_a_complaint_in_an_earlier_session_does_not_count():
    events = [user("complaint", "awful"), {"event": "session_started", "timestamp": 50.0}, user("goodbye", "bye")]
    assert satisfaction.reason_not_to_ask(events, asked=False) is None
    assert satisfaction.reason_not_to_ask(events[:1] + events[2:], asked=False) == "complaint"


def test_a_frustration_handoff_in_this_session_means_no_offer(db_url):
    with db.connect(db_url).begin() as conn:
        conn.execute(db.handoffs.insert().values(conversation_id="web:c1", reason="frustration", status="closed",
                                                 agent="robin", created_at=150.0))
    messages, _ = run(ActionAskSatisfaction(), tracker([user("goodbye", "bye", ts=200.0)]))
    assert messages == []


def test_a_completed_freeze_offers_the_rating(db_url):
    slots = {"card_last_four": "4821", "freeze_confirmed": True}
    messages, events = run(ActionFreezeCard(), tracker([user("affirm", "yes")], slots))
    assert [m["response"] for m in messages] == ["utter_card_frozen", "utter_ask_satisfaction"]
    assert {"event": "slot", "timestamp": None, "name": "satisfaction_asked", "value": True} in events
    declined, _ = run(ActionFreezeCard(), tracker([user("deny", "no")], {"card_last_four": "4821", "freeze_confirmed": False}))
    assert [m["response"] for m in declined] == ["utter_card_not_frozen"]


# ------------------------------------------------------------------ storing


def test_a_rating_is_stored_with_intent_customer_segment_and_handled_by(db_url):
    with db.connect(db_url).begin() as conn:
        conn.execute(db.customers.insert().values(id="cust-9", segment="savers"))
        conn.execute(db.handoffs.insert().values(conversation_id="web:c9", reason="asked", status="closed",
                                                 agent="robin", created_at=10.0))
    turns = [user("card_declined", "my card was declined"), user("goodbye", "bye"), rate(4)]
    turns[-1]["metadata"] = {"customer_id": "cust-9"}
    messages, events = run(ActionRateService(), tracker(turns, sender="web:c9"))

    assert [m["response"] for m in messages] == ["utter_satisfaction_thanks"]
    assert events == [{"event": "slot", "timestamp": None, "name": "satisfaction_asked", "value": True}]
    row = satisfaction.of_conversation("web:c9", db_url)
    assert {k: row[k] for k in ("conversation_id", "customer_id", "score", "intent", "handled_by", "segment")} == {
        "conversation_id": "web:c9", "customer_id": "cust-9", "score": 4, "intent": "card_declined",
        "handled_by": "person", "segment": "savers"}


def test_a_second_answer_replaces_the_first_and_bad_scores_store_nothing(db_url):
    run(ActionRateService(), tracker([user("transfer_fees", "fees?"), rate(2)]))
    run(ActionRateService(), tracker([user("transfer_fees", "fees?"), rate("5")]))
    with db.connect(db_url).connect() as conn:
        rows = conn.execute(sa.select(db.satisfaction.c.score, db.satisfaction.c.handled_by)).all()
    assert [tuple(r) for r in rows] == [(5, "assistant")]

    for bad in (0, 6, "lots", 3.5):
        messages, _ = run(ActionRateService(), tracker([rate(bad)], sender="web:bad"))
        assert [m["response"] for m in messages] == ["utter_ask_satisfaction"]  # the buttons again
    assert satisfaction.of_conversation("web:bad", db_url) is None
    with pytest.raises(ValueError):
        satisfaction.record("web:x", 7, db_url=db_url)
    with pytest.raises(ValueError):
        satisfaction.record("web:x", 3, handled="robot", db_url=db_url)


# ------------------------------------------------------------------ figures


ROWS = [  # CSAT known in advance
    {"score": 5, "intent": "card_arrival", "segment": "savers", "handled_by": "assistant"},
    {"score": 4, "intent": "card_arrival", "segment": "savers", "handled_by": "assistant"},
    {"score": 2, "intent": "card_arrival", "segment": None, "handled_by": "assistant"},
    {"score": 1, "intent": "failed_transfer", "segment": "travellers", "handled_by": "person"},
    {"score": 5, "intent": "failed_transfer", "segment": "travellers", "handled_by": "person"},
]


def test_csat_is_the_share_of_four_and_five_with_mean_and_count():
    figures = satisfaction.summary_of(ROWS)
    assert figures["overall"] == {"count": 5, "satisfied": 3, "csat": 0.6, "mean": 3.4,
                                  "scores": {"1": 1, "2": 1, "3": 0, "4": 1, "5": 2}}
    by_intent = {g["intent"]: (g["count"], g["csat"], g["mean"]) for g in figures["by_intent"]}
    assert by_intent == {"card_arrival": (3, 2 / 3, 11 / 3), "failed_transfer": (2, 0.5, 3.0)}
    by_segment = {g["segment"]: (g["count"], g["csat"]) for g in figures["by_segment"]}
    assert by_segment == {"savers": (2, 1.0), "travellers": (2, 0.5), "unknown": (1, 0.0)}
    by_handler = {g["handled_by"]: (g["count"], g["csat"], g["mean"]) for g in figures["by_handled_by"]}
    assert by_handler == {"assistant": (3, 2 / 3, 11 / 3), "person": (2, 0.5, 3.0)}
    assert satisfaction.csat([]) == {"count": 0, "satisfied": 0, "csat": None, "mean": None,
                                     "scores": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}}


def test_the_analytics_report_has_csat_in_its_figures_html_and_printout(db_url, tmp_path, capsys):
    day = dt.datetime(2026, 1, 5, 10, tzinfo=dt.timezone.utc).timestamp()
    for i, row in enumerate(ROWS):
        satisfaction.record(f"web:r{i}", row["score"], customer_id=f"cust-{i}", intent=row["intent"],
                            handled=row["handled_by"], segment=row["segment"], ts=day + i, db_url=db_url)
    satisfaction.record("web:late", 1, ts=day + 40 * 86400, db_url=db_url)  # outside the period

    figures = analytics.compute([], db.connect(db_url), day - 86400, day + 86400, cluster=False)
    assert figures["satisfaction"]["overall"]["count"] == 5 and figures["satisfaction"]["overall"]["csat"] == 0.6
    html = analytics.render_html(figures, {})
    assert "Satisfaction (CSAT)" in html and "60.0%" in html and "travellers" in html
    assert any(line.startswith("satisfaction         CSAT 60.0%  mean 3.40  n=5") for line in analytics.headline(figures))

    tracker_db = tmp_path / "tracker.db"
    sa.create_engine(f"sqlite:///{tracker_db}").dispose()
    analytics.tracker_events.metadata.create_all(sa.create_engine(f"sqlite:///{tracker_db}"))
    out = tmp_path / "report"
    assert analytics.main(["--since", "2026-01-05", "--until", "2026-01-05", "--tracker", str(tracker_db),
                           "--db", db_url, "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    assert "satisfaction         CSAT 60.0%  mean 3.40  n=5" in printed
    assert "by handled by person" in printed.replace("  ", " ").replace("  ", " ")
    import json
    assert json.loads((out / "figures.json").read_text())["satisfaction"]["by_intent"][0]["intent"] == "card_arrival"


def test_a_customer_s_ratings_are_in_their_data_export_and_erased_with_them(db_url):
    from bot.privacy.erase import erase_project_rows
    from bot.privacy.export import build_export

    engine = db.connect(db_url)
    satisfaction.record("web:mine", 4, customer_id="cust-1", db_url=db_url)
    satisfaction.record("web:other", 2, customer_id="cust-2", db_url=db_url)
    exported = build_export(engine, "cust-1", ["web:mine"])
    assert [(r["conversation_id"], r["score"]) for r in exported["satisfaction"]] == [("web:mine", 4)]

    removed = erase_project_rows(engine, "cust-1", ["web:mine"])
    assert removed["satisfaction"] == 1
    assert satisfaction.of_conversation("web:mine", db_url) is None
    assert satisfaction.of_conversation("web:other", db_url)["score"] == 2
