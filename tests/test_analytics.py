"""Analytics on a generated conversation log whose figures are known in advance.

The log is written by Rasa's own SQLTrackerStore, so the table read is the
real ``events`` schema; the project data goes through `core.db`.
"""
import asyncio
import datetime as dt
import json

import pytest

from core import db
from bot.insight.experiments import Arm, Experiment
from bot.insight import analytics


def ts(day: int, hour: int = 10, minute: int = 0, month: int = 1) -> float:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.timezone.utc).timestamp()


def suggestion_buttons(*items):
    return [{"title": "👍", "payload": '/rate_answer{"answer_id":"intent:x","rating":"up"}'}] + [
        {"title": i, "payload": '/select_suggestion{"item_id":"%s"}' % i} for i in items]


def conversation(sender, day, turns, month=1):
    """Rasa events for `turns`: (text, intent, confidence, [actions], [(response, buttons)])."""
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered as UserMessage

    events, minute = [], 0
    for text, intent, confidence, actions, replies in turns:
        minute += 1
        events.append(UserMessage(text, intent={"name": intent, "confidence": confidence},
                                  parse_data={"intent": {"name": intent, "confidence": confidence}, "text": text},
                                  timestamp=ts(day, minute=minute, month=month)))
        for action in actions:
            events.append(ActionExecuted(action, timestamp=ts(day, minute=minute, month=month) + 1))
        for response, buttons in replies:
            events.append(BotUttered(f"({response})", data={"buttons": buttons}, metadata={"utter_action": response},
                                     timestamp=ts(day, minute=minute, month=month) + 2))
        events.append(ActionExecuted("action_listen", timestamp=ts(day, minute=minute, month=month) + 3))
    return sender, events


LOG = [
    conversation("c1", 5, [
        ("hi", "greet", 0.95, ["utter_greet"], [("utter_greet", None)]),
        ("where is my new card", "card_arrival", 0.9, ["action_answer_intent"],
         [("utter_card_arrival", suggestion_buttons("savings", "travel_card"))]),
        ('/select_suggestion{"item_id":"savings"}', "select_suggestion", 1.0, ["action_select_suggestion"], []),
    ]),
    conversation("c2", 6, [
        ("what is the weather today?", "nlu_fallback", 0.2, ["action_answer_from_history"],
         [("utter_please_rephrase", None), ("utter_offer_human", None)]),
        ("I want to talk to a person", "request_human", 0.9, ["action_handoff"], [("utter_handoff_ack", None)]),
    ]),
    conversation("c3", 20, [
        ("has my card been sent", "card_arrival", 0.8, ["action_answer_intent"],
         [("utter_card_arrival", suggestion_buttons("savings"))]),
        ("what's the weather like today", "nlu_fallback", 0.1, ["action_default_fallback"], [("utter_default", None)]),
        ("how do I close a joint account", "nlu_fallback", 0.3, ["action_answer_from_history"],
         [("utter_history_answer", None)]),
    ]),
    conversation("c4", 21, [
        ("can I buy bitcoin with my account", "out_of_scope", 0.8, ["action_answer_from_history"],
         [("utter_out_of_scope", None)]),
        ("how do I top up", "top_up_methods", 0.9, ["action_answer_intent"],
         [("utter_top_up_methods", suggestion_buttons("travel_card"))]),
        ('/select_suggestion{"item_id":"travel_card"}', "select_suggestion", 1.0, ["action_select_suggestion"], []),
    ]),
    # outside the period: never counted
    conversation("c5", 10, [("hello", "greet", 0.9, ["utter_greet"], [("utter_greet", None)]),
                            ("weather?", "nlu_fallback", 0.1, ["action_default_fallback"], [("utter_default", None)])],
                 month=2),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A tracker store written by Rasa and a project database with handoffs, ratings, purchases, customers."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    folder = tmp_path_factory.mktemp("analytics")
    store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(folder / "tracker.db"))
    for sender, events in LOG:
        asyncio.run(store.save(DialogueStateTracker.from_events(sender, events)))
    db_url = f"sqlite:///{folder / 'assistant.db'}"
    engine = db.connect(db_url)
    with engine.begin() as conn:
        conn.execute(db.handoffs.insert(), [
            {"conversation_id": "c2", "customer_id": "c2", "reason": "asked", "created_at": ts(6), "updated_at": ts(6)},
            {"conversation_id": "c3", "customer_id": "c3", "reason": "frustration", "created_at": ts(20), "updated_at": ts(20)},
            {"conversation_id": "c5", "customer_id": "c5", "reason": "asked", "created_at": ts(10, month=2), "updated_at": ts(10, month=2)},
        ])
        conn.execute(db.answer_ratings.insert(), [
            {"answer_id": "intent:card_arrival", "query": "q", "rating": 1, "ts": ts(5)},
            {"answer_id": "intent:card_arrival", "query": "q", "rating": 1, "ts": ts(20)},
            {"answer_id": "history:joint-01", "query": "q", "rating": -1, "ts": ts(21)},
            {"answer_id": "history:joint-01", "query": "q", "rating": 1, "ts": ts(10, month=2)},
        ])
        conn.execute(db.interactions.insert(), [
            {"customer_id": "c1", "item_id": "savings", "kind": "purchase", "ts": ts(8)},  # follows c1's click
            {"customer_id": "c4", "item_id": "savings", "kind": "purchase", "ts": ts(22)},  # not the clicked item
            {"customer_id": "c1", "item_id": "savings", "kind": "view", "ts": ts(4)},
        ])
        conn.execute(db.customers.insert(), [
            {"id": "c1", "segment": "student", "age_band": "18-24"},
            {"id": "c2", "segment": "student", "age_band": "18-24"},
            {"id": "c3", "segment": "premium", "age_band": "45-54"},
            {"id": "c9", "segment": "premium", "age_band": "65+"},
        ])
        # each customer's arm as logged at their first exposure; c1 saw suggestions twice
        conn.execute(db.experiment_exposures.insert(), [
            {"experiment": "suggestions-test", "arm": arm, "customer_id": c, "conversation_id": c, "ts": ts(day)}
            for c, arm, day in (("c1", "blend", 5), ("c1", "blend", 6), ("c3", "blend", 20), ("c4", "popularity", 21))])
        conn.execute(db.interactions.insert(), [
            {"customer_id": "c1", "item_id": "savings", "kind": "click", "ts": ts(5, 11)},
            {"customer_id": "c4", "item_id": "travel_card", "kind": "click", "ts": ts(21, 11)},
        ])
    return folder, db_url


@pytest.fixture(scope="module")
def figures(stores):
    folder, db_url = stores
    return analytics.analyse(ts(1, 0), ts(1, 0, month=2), tracker=str(folder / "tracker.db"), db_url=db_url,
                             experiments=[EXPERIMENT])


EXPERIMENT = Experiment(name="suggestions-test", surface="suggestions", arms=(Arm("blend", 1.0), Arm("popularity", 1.0)),
                        metric="click_through", guardrails=("handoff",), min_exposures=2, max_days=28)


def test_counts_and_rates_are_exact(figures):
    assert figures["conversations"] == 4
    assert (figures["customer_messages"], figures["typed_messages"], figures["bot_messages"]) == (11, 9, 10)
    assert figures["fallbacks"] == 3 and figures["fallback_rate"] == pytest.approx(3 / 9)
    assert figures["unanswered"] == 3
    assert figures["handoffs"] == 2 and figures["handoff_reasons"] == {"asked": 1, "frustration": 1}
    assert figures["handoff_rate"] == 0.5 and figures["containment"] == 0.5
    assert figures["ratings"]["up"] == 2 and figures["ratings"]["down"] == 1
    assert figures["ratings"]["most_downvoted"] == [("history:joint-01", 1)]


def test_suggestion_click_through_and_follow_up_purchases(figures):
    assert figures["suggestions"] == {"impressions": 3, "clicks": 2, "click_through": pytest.approx(2 / 3),
                                      "follow_up_purchases": 1, "follow_up_rate": 0.5, "follow_up_days": 14}


def test_top_intents_and_their_trend_over_the_period(figures):
    assert figures["top_intents"][:2] == [("nlu_fallback", 3), ("card_arrival", 2)]
    assert sum(n for _, n in figures["top_intents"]) == 9
    card = next(t for t in figures["intent_trends"] if t["intent"] == "card_arrival")
    assert (card["first_half"], card["second_half"]) == (1, 1)
    assert figures["daily"]["2026-01-20"] == {"card_arrival": 1, "nlu_fallback": 2}


def test_unanswered_questions_are_grouped_by_meaning(figures):
    groups = figures["unanswered_groups"]
    assert [g["size"] for g in groups] == [2, 1]
    assert sorted(groups[0]["examples"]) == ["what is the weather today?", "what's the weather like today"]
    assert groups[1]["examples"] == ["can I buy bitcoin with my account"]


def test_segments_come_from_the_customer_profiles(figures):
    by_name = {s["segment"]: s for s in figures["segments"]}
    assert (by_name["student"]["customers"], by_name["student"]["in_period"], by_name["student"]["purchases"]) == (2, 2, 1)
    assert (by_name["premium"]["customers"], by_name["premium"]["in_period"]) == (2, 1)


def test_experiments_are_reported_per_arm_from_the_logged_exposures(figures):
    (exp,) = figures["experiments"]
    blend, popularity = exp["arms"]
    assert (blend["arm"], blend["customers"], blend["exposures"]) == ("blend", 2, 3)
    assert (popularity["arm"], popularity["customers"], popularity["exposures"]) == ("popularity", 1, 1)
    ctr = blend["metrics"]["click_through"]
    assert (ctr["successes"], ctr["trials"], ctr["rate"]) == (1, 2, 0.5) and ctr["ci"][0] < 0.5 < ctr["ci"][1]
    assert blend["metrics"]["handoff"]["successes"] == 1  # c3 was handed to a person after exposure
    assert popularity["metrics"]["click_through"]["lift"] == pytest.approx(1.0)
    # popularity has 1 customer of the 2 required, and 28 days have not passed by the end of January
    assert exp["verdict"] == "keep running" and exp["days_run"] < 28


def test_the_command_writes_plots_and_a_report(stores, tmp_path, capsys):
    folder, db_url = stores
    code = analytics.main(["--since", "2026-01-01", "--until", "2026-01-31", "--tracker", str(folder / "tracker.db"),
                           "--db", db_url, "--out", str(tmp_path / "report"), "--json"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "conversations        4" in printed and "containment          50.0%" in printed
    assert (tmp_path / "report" / "containment.png").read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "report" / "report.html").read_text()
    assert "what is the weather today?" in report and 'src="top_intents.png"' in report
    # the declared experiments (bot/experiments.yml), none exposed in this log: no verdict yet
    assert "suggestions-2026-12" in report and "Verdict: keep running" in report
    assert "experiment           suggestions-2026-12: keep running" in printed
    assert json.loads((tmp_path / "report" / "figures.json").read_text())["conversations"] == 4


def test_a_missing_tracker_store_is_explained(tmp_path, capsys):
    assert analytics.main(["--tracker", str(tmp_path / "nope.db"), "--db", f"sqlite:///{tmp_path / 'a.db'}",
                           "--out", str(tmp_path / "out")]) == 2
    assert "no tracker store" in capsys.readouterr().err


def test_the_inbox_page_embeds_the_charts(stores):
    from bot.insight.analytics_page import render_analytics_html

    folder, db_url = stores
    page = render_analytics_html("2026-01-01", "2026-01-31", tracker=str(folder / "tracker.db"), db_url=db_url)
    assert "data:image/png;base64," in page and "conversations        4" in page
    missing = render_analytics_html("2026-01-01", "2026-01-31", tracker=str(folder / "none.db"), db_url=db_url)
    assert "no tracker store" in missing


def test_the_experiment_section_shows_verdict_rates_and_sample_sizes(figures):
    charts = analytics.plots(figures)
    page = analytics.render_html(figures, charts)
    assert 'src="experiment-0.png"' in page and charts["experiment-0.png"][:4] == b"\x89PNG"
    assert "Verdict: keep running" in page and "click_through (decides)" in page and "handoff (guardrail)" in page
    assert "1 / 2" in page and "50.0%" in page and "Customers per arm" in page


def test_the_arms_option_is_gone(capsys):
    with pytest.raises(SystemExit):
        analytics.main(["--arms", "blend:1,off:1"])
    assert "unrecognized arguments: --arms" in capsys.readouterr().err


def test_a_broken_experiments_file_is_named(stores, tmp_path, monkeypatch, capsys):
    from core.settings import get_settings

    folder, db_url = stores
    broken = tmp_path / "experiments.yml"
    broken.write_text("experiments:\n  - name: x\n    surface: suggestions\n    arms: [blend]\n    metric: clicks\n")
    monkeypatch.setenv("ASSISTANT_EXPERIMENTS_FILE", str(broken))
    get_settings.cache_clear()
    try:
        code = analytics.main(["--since", "2026-01-01", "--until", "2026-01-31", "--tracker", str(folder / "tracker.db"),
                               "--db", db_url, "--out", str(tmp_path / "report")])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert code == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "unknown metric 'clicks'" in err
