"""Customer pages, segments and the analytics range (issue 18): the data, the pages over real HTTP.

The inbox runs in a real Sanic server on loopback with a real SQLite database
(as tests/test_inbox.py); customers and interactions are written here.
"""
from __future__ import annotations

import time

import pandas as pd
import pytest

from bot.insight.analytics_page import analytics_page
from bot.channels.inbox import AgentInbox
from bot.insight import pages, profile
from bot.security import audit, identity, staff
from core import db
from recommender import Recommender, load_items, store
from tests.test_channels_webhooks import ServedChannels
from tests.test_inbox import PASSWORD, signed_in
from training import segments

DAY = 86400.0
NOW = 1_780_000_000.0


def _customers(engine, groups: int = 3, per_group: int = 6):
    """Customers in `groups` clear behaviour groups: each asks about its own topics, at its own pace."""
    topics = [["exchange_rate", "card_payment_fee"], ["direct_debit", "statement_request"], ["top_up_methods", "virtual_card"]]
    frame, events = [], []
    for g in range(groups):
        for n in range(per_group):
            cid = f"t-{g}-{n}"
            frame.append({"customer_id": cid, "segment": f"label{g}", "age_band": "25-34"})
            for i in range(3 + g * 6):
                events.append({"customer_id": cid, "item_id": None, "kind": "topic", "topic": topics[g][i % 2],
                               "timestamp": NOW - (i * 3 + g * 40) * DAY, "weight": 1.0})
            events.append({"customer_id": cid, "item_id": "current-account", "kind": "click", "topic": None,
                           "timestamp": NOW - 2 * DAY, "weight": 1.0})
    store.save_customers(engine, pd.DataFrame(frame), synthetic=True)
    store.add_interactions(engine, pd.DataFrame(events))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = db.connect(f"sqlite:///{tmp_path_factory.mktemp('insight') / 'assistant.db'}")
    store.save_items(engine, _items())
    _customers(engine)
    store.set_suggestions_opt_out(engine, "t-0-0", True)
    store.record_interaction(engine, "t-1-0", "travel-credit-card", "dismiss")  # first tag exchange_rate: not an interest
    identity.link("web:t-1-0", "t-1-0", "web", "token", engine=engine)
    identity.link("slack:U1", "t-1-0", "slack", "slack", engine=engine)
    for name, role in (("alex", "agent"), ("sam", "supervisor")):
        staff.add_account(engine, name, PASSWORD, role=role, display_name=name.title())
    return engine


def _items():
    from bot.actions.suggestions import CATALOGUE

    return load_items(CATALOGUE)


@pytest.fixture(scope="module")
def recommender(engine):
    model = Recommender.fit(store.read_interactions(engine), _items(), sequence_weight=0.0,
                            collaborative_weight=0.0, content_weight=0.0)
    model.use_history(store.history_source(engine), drop_saved=True)
    profile.use_recommender(model)
    yield model
    profile.use_recommender(None)


@pytest.fixture(scope="module")
def served(engine, recommender):
    server = ServedChannels([AgentInbox(engine)], engine).start()
    yield server
    server.stop()


# ------------------------------------------------------------------ segments


def test_segments_are_found_named_and_stored_without_opted_out_customers(engine):
    result = segments.compute(engine, max_k=5)
    assert result["k"] >= 2 and -1 <= result["silhouette"] <= 1
    assert result["customers"] == 17  # 18 customers, one opted out
    members = [c for s in result["segments"] for c in s["members"]]
    assert "t-0-0" not in members and len(members) == len(set(members)) == 17
    rows = profile.stored_segments(engine)
    assert [r["size"] for r in rows] == sorted((r["size"] for r in rows), reverse=True)
    for row in rows:
        assert row["name"] and len(row["trend"]) == segments.TREND_WEEKS and row["top_topics"]
    assert profile.segment_of(engine, "t-2-1")["name"]
    assert profile.segment_of(engine, "t-0-0") is None


def test_the_three_behaviour_groups_end_in_different_segments(engine):
    segments.compute(engine, max_k=5)
    cluster = {f"t-{g}-{n}": profile.segment_of(engine, f"t-{g}-{n}")["cluster"] for g in range(3) for n in range(1, 6)}
    for g in range(3):
        assert len({cluster[f"t-{g}-{n}"] for n in range(1, 6)}) == 1
    assert len({cluster[f"t-{g}-1"] for g in range(3)}) == 3


def test_too_few_customers_are_refused_clearly(tmp_path):
    empty = db.connect(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(segments.SegmentsError, match="at least"):
        segments.compute(empty)
    assert segments.main(["--db", f"sqlite:///{tmp_path / 'empty.db'}"]) == 1


# ------------------------------------------------------------------ page data


def test_the_customer_view_has_identity_interests_clicks_and_reasoned_suggestions(engine, recommender):
    view = profile.customer_view(engine, "t-1-0")
    assert [(i["conversation_id"], i["channel"]) for i in view["identity"]] == [("web:t-1-0", "web"), ("slack:U1", "slack")]
    assert view["consent"] == {"suggestions_opt_out": False, "synthetic": True}
    assert set(view["interests"]["series"]) == {"direct_debit", "statement_request", "account_details"}
    assert view["clicks"][0]["title"] == "Current Account"
    assert view["suggestions"] and all(s["reason"] for s in view["suggestions"])
    assert view["sentiment"] == []  # the sentiment table (v5) holds nothing for this customer


def test_an_opted_out_customer_gets_no_interests_segment_or_suggestions(engine, recommender):
    view = profile.customer_view(engine, "t-0-0")
    assert view["consent"]["suggestions_opt_out"] is True
    assert view["interests"] is None and view["suggestions"] is None and view["segment"] is None


def test_an_unknown_customer_is_none(engine):
    assert profile.customer_view(engine, "nobody-at-all") is None


def test_charts_are_inline_svg_and_escape_labels():
    svg = pages.line_chart(["2026-01", "2026-02"], {"<b>x</b>": [1, 3]}, "t")
    assert svg.startswith("<svg") and "<b>" not in svg and "&lt;b&gt;" in svg
    assert "no data" in pages.bar_chart([], "empty")


# ------------------------------------------------------------------ over HTTP


def test_a_supervisor_opens_a_customer_page_and_each_opening_is_audited(served, engine):
    sam = signed_in(served, "sam")
    status, headers, page = sam.call("GET", "/customers/t-1-0")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'src="http' not in page and "<script" not in page and "//" not in page.split("<main>")[0].replace("http://www.w3.org", "")
    assert "slack:U1" in page and "<svg" in page and "SYNTHETIC" in page and "would suggest now" in page
    sam.call("GET", "/customers/t-1-0")
    opened = audit.recent(engine, action="customer.open", target="t-1-0")
    assert len(opened) == 2 and opened[0]["actor"] == "sam"


def test_the_customer_page_shows_each_conversations_satisfaction(served, engine):
    from core import satisfaction

    identity.link("telegram:77", "t-2-0", "telegram", "telegram", engine=engine)
    identity.link("web:t-2-0", "t-2-0", "web", "token", engine=engine)
    satisfaction.record("telegram:77", 4, customer_id="t-2-0", handled="person", db_url=str(engine.url))
    view = profile.customer_view(engine, "t-2-0", with_suggestions=False)
    assert view["satisfaction"] == {"telegram:77": {"score": 4, "handled_by": "person", "ts": pytest.approx(time.time(), abs=60)}}
    status, _, page = signed_in(served, "sam").call("GET", "/customers/t-2-0")
    timeline = page.split('<section id="timeline">')[1].split("</section>")[0]
    assert status == 200 and "<th>satisfaction</th>" in timeline
    rows = {row.split("</code>")[0]: row for row in timeline.split("<tr><td><code>")[1:]}
    assert "4/5</span> (served by a person)" in rows["telegram:77"] and "—" in rows["web:t-2-0"]


def test_an_opted_out_customer_page_says_so(served):
    status, _, page = signed_in(served, "sam").call("GET", "/customers/t-0-0")
    assert status == 200 and 'id="opted-out"' in page and "Not computed" in page and "<table><tr><th>item" not in page


def test_an_unknown_customer_is_a_not_found_page(served, engine):
    status, headers, page = signed_in(served, "sam").call("GET", "/customers/no-such-customer")
    assert status == 404 and headers["Content-Type"].startswith("text/html") and "Customer not found" in page
    assert audit.recent(engine, action="customer.open", target="no-such-customer")[0]["detail"] == {"found": False}


def test_agents_and_strangers_cannot_open_customer_or_segment_pages(served):
    alex = signed_in(served, "alex")
    assert alex.call("GET", "/customers/t-1-0")[0] == 403 and alex.call("GET", "/segments")[0] == 403
    from tests.test_inbox import Client

    assert Client(served).call("GET", "/customers/t-1-0")[0] == 401


def test_the_segment_page_shows_sizes_trends_and_topics(served, engine):
    segments.compute(engine, max_k=5)
    status, _, page = signed_in(served, "sam").call("GET", "/segments")
    assert status == 200 and 'id="segment-rows"' in page and page.count("<svg") == 2
    assert "Customers per segment" in page and "Interactions per week" in page and "exchange_rate" in page


def test_the_segment_page_before_any_run_says_how_to_make_them():
    assert 'id="no-segments"' in pages.segments_page([]) and "python -m training.segments" in pages.segments_page([])


# ------------------------------------------------------------------ analytics range


def test_a_reversed_or_malformed_range_is_a_clear_400(served):
    sam = signed_in(served, "sam")
    status, _, page = sam.call("GET", "/analytics?since=2026-02-01&until=2026-01-01")
    assert status == 400 and "The range is reversed" in page and 'id="range"' in page
    status, _, page = sam.call("GET", "/analytics?since=yesterday")
    assert status == 400 and "YYYY-MM-DD" in page


def test_an_empty_range_says_so_above_the_report(engine, tmp_path):
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain

    SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tmp_path / "tracker.db"))  # an empty store
    status, page = analytics_page("2001-01-01", "2001-01-07", tracker=str(tmp_path / "tracker.db"), db_url=str(engine.url))
    assert status == 200 and "the range is empty" in page and 'value="2001-01-01"' in page


def test_erasure_removes_the_customer_from_the_segments(engine):
    from bot.privacy.erase import erase_project_rows

    segments.compute(engine, max_k=5)
    assert profile.segment_of(engine, "t-2-5") is not None
    assert erase_project_rows(engine, "t-2-5", [])["segment_members"] == 1
    assert profile.segment_of(engine, "t-2-5") is None


def test_the_default_range_is_the_last_30_days(engine, tmp_path):
    import datetime as dt

    today = dt.datetime.now(dt.timezone.utc).date()
    status, page = analytics_page(None, None, tracker=str(tmp_path / "missing.db"), db_url=str(engine.url))
    assert f'value="{(today - dt.timedelta(days=30)).isoformat()}"' in page and f'value="{today.isoformat()}"' in page


def test_the_demo_customers_split_as_docs_analytics_md_says(tmp_path):
    from bot.actions.suggestions import CATALOGUE
    from training.generate_demo_customers import generate, load_catalogue

    engine = db.connect(f"sqlite:///{tmp_path / 'demo.db'}")
    items = load_catalogue(CATALOGUE)
    customers, interactions = generate(items, customers=300, seed=7)
    store.save_items(engine, items)
    store.save_customers(engine, customers, synthetic=True)
    store.add_interactions(engine, interactions)
    result = segments.compute(engine)
    assert (result["k"], round(result["silhouette"], 3)) == (2, 0.177)
    assert [(s["size"], s["name"]) for s in result["segments"]] == [
        (157, "inactive lately · asks about transfer_fees"), (143, "many interactions · frequent")]


def test_a_fresh_make_run_finds_segments_after_making_the_demo_customers(tmp_path, monkeypatch):
    from bot import serve

    steps = []

    class Stop(Exception):
        pass

    def step(args, env, what):
        steps.append(args[2])
        if args[2] == "training.train_recommender":
            raise Stop

    monkeypatch.setattr(serve, "run_step", step)
    env = {"ASSISTANT_INDEX_DIR": str(tmp_path / "index"), "ASSISTANT_RECOMMENDER_DIR": str(tmp_path / "rec")}
    (tmp_path / "index").mkdir()
    with pytest.raises(Stop):
        serve.prepare(env, tmp_path / "config.yml", tmp_path / "models")
    assert steps == ["training.generate_demo_customers", "training.segments", "training.train_recommender"]
