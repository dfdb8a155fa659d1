"""The recommender's interface, read as examples: fit, recommend, record, save, load, forget.

A tiny bank: travellers look at the travel card then travel insurance,
savers open an Easy Saver then a Cash ISA. Every model here is the real one,
trained for a few epochs.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recommender import ConfigError, Recommender, Suggestion, UnknownItemError
from recommender.diversity import mmr

ITEMS = pd.DataFrame([
    {"item_id": "travel-card", "kind": "product", "title": "Travel Credit Card",
     "description": "No foreign-exchange fee on card payments abroad.", "tags": ["exchange_rate", "travel"]},
    {"item_id": "travel-insurance", "kind": "product", "title": "Travel Insurance",
     "description": "Cover for medical emergencies and lost luggage on trips abroad.", "tags": ["travel"]},
    {"item_id": "currency-pockets", "kind": "service", "title": "Currency Pockets",
     "description": "Hold euros and dollars in the app.", "tags": ["exchange_rate"]},
    {"item_id": "easy-saver", "kind": "product", "title": "Easy Saver",
     "description": "Savings account with instant access and monthly interest.", "tags": ["savings"]},
    {"item_id": "cash-isa", "kind": "product", "title": "Cash ISA",
     "description": "Tax-free savings account, up to £20,000 a year.", "tags": ["savings"]},
    {"item_id": "guide-pin", "kind": "article", "title": "Your PIN", "description": "How to change your PIN.", "tags": ["change_pin"]},
    {"item_id": "old-bond", "kind": "product", "title": "Old Bond", "description": "Closed savings bond.",
     "tags": ["savings"], "active": False},
])


def history() -> pd.DataFrame:
    rows = []
    for n in range(30):
        journey = ["travel-card", "travel-insurance"] if n % 2 else ["easy-saver", "cash-isa"]
        for step, item in enumerate(journey):
            rows.append({"customer_id": f"c{n}", "item_id": item, "timestamp": 1000.0 + 10 * n + step, "kind": "view"})
    rows.append({"customer_id": "c0", "item_id": "guide-pin", "timestamp": 5000.0, "kind": "view"})
    return pd.DataFrame(rows)


FAST = dict(sequence_epochs=8, sequence_dim=16, sequence_max_len=10, diversity=1.0)


@pytest.fixture(scope="module")
def model() -> Recommender:
    return Recommender.fit(history(), ITEMS, **FAST)


def ids(suggestions):
    return [s.item_id for s in suggestions]


def test_recommend_returns_scored_explained_suggestions(model):
    suggestions = model.recommend("c2", k=3)
    assert 1 <= len(suggestions) <= 3
    assert all(isinstance(s, Suggestion) and s.reason and 0.0 <= s.score <= 1.0 for s in suggestions)
    assert [s.score for s in suggestions] == sorted((s.score for s in suggestions), reverse=True)


def test_a_saver_is_offered_the_next_step_of_savers_not_what_they_hold(model):
    fresh = Recommender.fit(history()[lambda f: ~((f.customer_id == "c2") & (f.item_id == "cash-isa"))], ITEMS, **FAST)
    top = fresh.recommend("c2", k=1)[0]
    assert top.item_id == "cash-isa"
    assert top.reason == "Often chosen with Easy Saver"


def test_exclude_seen_leaves_out_what_the_customer_already_has(model):
    assert {"easy-saver", "cash-isa"}.isdisjoint(ids(model.recommend("c2", k=10)))
    assert "cash-isa" in ids(model.recommend("c2", k=10, exclude_seen=False))


def test_inactive_items_are_never_suggested(model):
    assert "old-bond" not in ids(model.recommend("c2", k=10, exclude_seen=False, context="savings"))


def test_a_new_customer_gets_popular_items(model):
    suggestions = model.recommend("someone-new", k=2)
    assert suggestions[0].reason == "Popular with other customers"
    assert suggestions[0].item_id in {"travel-card", "travel-insurance", "easy-saver", "cash-isa"}


def test_the_conversation_topic_leads_the_ranking_and_the_reason(model):
    suggestions = model.recommend("someone-new", k=2, context={"intent": "exchange_rate", "label": "paying abroad"})
    assert set(ids(suggestions)) == {"travel-card", "currency-pockets"}
    assert suggestions[0].reason == "Because you asked about paying abroad"
    assert suggestions[0].score > 0.8


def test_an_unrelated_topic_leaves_every_item_with_a_low_score(model):
    assert max(s.score for s in model.recommend("someone-new", k=5, context="greet")) < 0.2


def test_record_changes_the_next_suggestions_at_once(model):
    before = model.recommend("walk-in", k=3)
    model.record("walk-in", "travel-card", "click")
    after = model.recommend("walk-in", k=3)
    assert "travel-card" not in ids(after)
    assert after[0].item_id == "travel-insurance" and after != before


def test_a_dismissed_item_is_not_suggested_again(model):
    model.record("picky", "cash-isa", "dismiss")
    assert "cash-isa" not in ids(model.recommend("picky", k=10, exclude_seen=False))


def test_record_refuses_an_item_outside_the_catalogue(model):
    with pytest.raises(UnknownItemError, match="not in the recommender's catalogue"):
        model.record("c1", "no-such-item", "click")


def test_a_new_item_without_interactions_is_suggested_from_its_tags_and_text():
    model = Recommender.fit(history(), ITEMS, **FAST)
    model.add_items(pd.DataFrame([{"item_id": "kids-saver", "kind": "product", "title": "Kids Saver",
                                   "description": "A savings account for children, with instant access.", "tags": ["young-people"]}]))
    by_topic = model.recommend("someone-new", k=1, context="young-people")
    assert ids(by_topic) == ["kids-saver"]
    content_only = dict(model.config.as_dict(), collaborative_weight=0.0, sequence_weight=0.0, popularity_weight=0.0)
    model.config = type(model.config)(**content_only)
    model.record("new-saver", "easy-saver", "purchase")
    suggestions = model.recommend("new-saver", k=2)
    assert "kids-saver" in ids(suggestions)
    assert any(s.reason == "Similar to Easy Saver" for s in suggestions)


def test_the_sequence_model_alone_predicts_the_next_step():
    model = Recommender.fit(history(), ITEMS, **dict(FAST, sequence_epochs=30), collaborative_weight=0, content_weight=0,
                            popularity_weight=0, context_weight=0)
    model.record("traveller", "travel-card", "view")
    top = model.recommend("traveller", k=1)[0]
    assert top.item_id == "travel-insurance"
    assert top.reason == "A common next step after Travel Credit Card"


def test_save_and_load_give_the_same_suggestions(model, tmp_path):
    folder = model.save(tmp_path / "rec")
    loaded = Recommender.load(folder)
    for customer in ("c1", "c2", "someone-new"):
        assert loaded.recommend(customer, k=3, context="savings") == model.recommend(customer, k=3, context="savings")


def test_loading_a_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m training.train_recommender"):
        Recommender.load(tmp_path / "nothing-here")


def test_forget_erases_the_customer_in_memory_and_in_the_saved_folder(tmp_path):
    model = Recommender.fit(history(), ITEMS, **FAST)
    model.save(tmp_path / "rec")
    loaded = Recommender.load(tmp_path / "rec")
    assert loaded.forget("c3") is True
    assert "c3" not in loaded.profiles
    assert '"c3"' not in (tmp_path / "rec" / "profiles.jsonl").read_text()
    assert "c3" not in Recommender.load(tmp_path / "rec").profiles
    assert loaded.recommend("c3", k=1)[0].reason == "Popular with other customers"


def test_history_from_a_store_personalises_a_customer_the_model_never_saw(model):
    model.use_history(lambda cid: {"segment": None, "interactions": pd.DataFrame(
        [{"customer_id": cid, "item_id": "easy-saver", "timestamp": 9000.0, "kind": "purchase"}])} if cid == "db-only" else None)
    try:
        suggestions = model.recommend("db-only", k=1)
        assert suggestions[0].item_id == "cash-isa"
    finally:
        model.use_history(None)


def test_fit_can_be_called_on_an_instance_with_its_own_config():
    model = Recommender(sequence_weight=0, content_weight=0, context_weight=0).fit(history(), ITEMS)
    assert model.sequence is None and model.content is None and model.recommend("c2", k=1)


def test_an_unknown_setting_is_refused_by_name():
    with pytest.raises(ConfigError, match="unknown recommender setting.*sequence_epoch\\b"):
        Recommender.fit(history(), ITEMS, sequence_epoch=3)


def test_mmr_keeps_near_copies_apart():
    relevance = np.array([1.0, 0.99, 0.8])
    similarity = np.array([[1.0, 0.98, 0.1], [0.98, 1.0, 0.1], [0.1, 0.1, 1.0]])
    assert list(mmr(relevance, similarity, k=2, tradeoff=0.7)) == [0, 2]
    assert list(mmr(relevance, similarity, k=2, tradeoff=1.0)) == [0, 1]


def test_saved_folder_is_plain_files_without_pickles(model, tmp_path):
    folder = model.save(tmp_path / "rec")
    manifest = json.loads((folder / "recommender.json").read_text())
    assert manifest["parts"] == ["popularity", "collaborative", "sequence", "content"]
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.pt"))


# ------------------------------------------------------------------ ranking strategies (experiment arms)


def test_each_strategy_ranks_with_its_part_alone(model):
    model.record("strategist", "easy-saver", "view")
    part = {"popularity": "popularity", "content": "content", "item_item": "collaborative", "sequence": "sequence"}
    for strategy, source in part.items():
        suggestions = model.recommend("strategist", k=4, strategy=strategy)
        assert suggestions and {s.source for s in suggestions} == {source}, strategy
    assert model.recommend("strategist", k=4) == model.recommend("strategist", k=4, strategy="blend")


def test_popularity_and_content_rank_differently_from_the_blend(model):
    topic = {"intent": "exchange_rate"}
    blend = ids(model.recommend("someone-new", k=4, context=topic))
    popular = ids(model.recommend("someone-new", k=4, context=topic, strategy="popularity"))
    content = ids(model.recommend("someone-new", k=4, context=topic, strategy="content"))
    assert blend[:2] == ["travel-card", "currency-pockets"]  # the topic's tag decides the blend
    assert "currency-pockets" not in popular  # nobody chose it: popularity ignores the conversation
    assert content[0] == "currency-pockets"  # its text is closest to "exchange rate"
    assert len({tuple(blend), tuple(popular), tuple(content)}) == 3


def test_a_strategy_with_nothing_to_say_gives_no_suggestions_and_an_unknown_one_is_refused(model):
    assert model.recommend("someone-new", k=3, strategy="item_item") == []  # no history: nothing is similar
    with pytest.raises(ValueError, match="unknown ranking strategy 'pop'"):
        model.recommend("c1", k=3, strategy="pop")


# ------------------------------------------------------------------ integer ids (as MovieLens has them)


def test_integer_ids_are_the_same_customers_and_items_as_their_text():
    frame = history()
    frame["customer_id"] = frame["customer_id"].str[1:].astype(int)  # c2 -> 2
    numbered = ITEMS.assign(item_id=range(100, 100 + len(ITEMS)))  # travel-card -> 100, ...
    frame["item_id"] = frame["item_id"].map(dict(zip(ITEMS["item_id"], numbered["item_id"])))
    model = Recommender.fit(frame, numbered, **FAST)
    assert model.recommend(2, k=3) == model.recommend("2", k=3)
    assert model.recommend(2, k=3)[0].reason != "Popular with other customers"  # known, not a stranger
    assert model.item(103)["title"] == "Easy Saver" == model.item("103")["title"]
    model.record(4242, 100, "click")
    assert "100" not in ids(model.recommend("4242", k=5))
    assert model.forget(4242) is True and "4242" not in model.profiles
