"""Recommender data: checked files, the SQL store, the catalogue, demo customers and the training command."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from core import db
from core.settings import PROJECT_ROOT
from recommender import DataFileError, Recommender, load_interactions, load_items
from recommender import store
from training import generate_demo_customers, train_recommender

CATALOGUE = PROJECT_ROOT / "bot" / "catalogue" / "items.jsonl"


@pytest.fixture
def engine(tmp_path):
    return db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")


# ------------------------------------------------------------------ files


def test_bad_interaction_rows_are_reported_with_their_line_numbers(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text(
        "customer_id,item_id,timestamp,kind,weight\n"
        "c1,easy-saver,1700000000,view,\n"           # line 2: fine
        ",easy-saver,1700000001,view,\n"             # line 3: no customer
        "c1,cash-isa,yesterday,view,\n"              # line 4: bad time
        "c2,cash-isa,2024-05-01T10:00:00,click,2\n"  # line 5: fine (ISO date)
        "c2,cash-isa,1700000002,view,heavy\n"        # line 6: bad weight
    )
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert [line for line, _ in caught.value.problems] == [3, 4, 6]
    assert "line 4: timestamp 'yesterday'" in str(caught.value)
    kept = load_interactions(path, errors="skip")
    assert list(kept["customer_id"]) == ["c1", "c2"] and len(kept.attrs["problems"]) == 3


def test_jsonl_lines_that_are_not_json_are_named(tmp_path):
    path = tmp_path / "interactions.jsonl"
    path.write_text('{"customer_id": "c1", "item_id": "x", "timestamp": 1}\n{not json\n'
                    '{"customer_id": "c1", "kind": "topic", "topic": "savings", "timestamp": 2}\n')
    with pytest.raises(DataFileError, match="line 2: not valid JSON"):
        load_interactions(path)


def test_items_need_a_known_kind_and_unique_ids(tmp_path):
    path = tmp_path / "items.jsonl"
    rows = [{"item_id": "a", "title": "A", "kind": "product"}, {"item_id": "a", "title": "A again"},
            {"item_id": "b", "title": "B", "kind": "gadget"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataFileError) as caught:
        load_items(path)
    assert caught.value.problems == [(2, "item_id 'a' appears more than once"),
                                     (3, "kind 'gadget' is not one of product, service, article")]


def test_a_missing_file_says_which(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        load_items(tmp_path / "nope.csv")


# ------------------------------------------------------------------ the catalogue


def test_the_catalogue_has_thirty_items_of_every_kind_tagged_with_the_banking_intents():
    import yaml

    items = load_items(CATALOGUE)
    assert len(items) >= 30 and set(items["kind"]) == {"product", "service", "article"}
    tags = {t for row in items["tags"] for t in row}
    domain = yaml.safe_load((PROJECT_ROOT / "bot" / "domain" / "core.yml").read_text())
    answered = {"card_payment_fee", "exchange_rate", "top_up_methods", "transfer_fees", "cash_withdrawal_fee",
                "virtual_card", "mobile_wallet", "direct_debit", "pending_payment", "refund_not_showing"}
    assert answered <= set(domain["intents"]) and answered <= tags
    assert all(row["description"] and row["url"] for _, row in items.iterrows())


# ------------------------------------------------------------------ the store


def test_store_round_trip_opt_out_and_erasure(engine):
    items = load_items(CATALOGUE)
    store.save_items(engine, items)
    assert len(store.read_items(engine)) == len(items)
    store.save_customers(engine, pd.DataFrame([{"customer_id": "c1", "segment": "traveller"}, {"customer_id": "c2"}]))
    store.record_interaction(engine, "c1", "travel-credit-card", "click", weight=1.5)
    store.record_interaction(engine, "c1", None, "topic", topic="exchange_rate")
    store.record_interaction(engine, "c2", "easy-saver", "view")
    history = store.history_source(engine)("c1")
    assert history["segment"] == "traveller"
    assert list(history["interactions"]["kind"]) == ["click", "topic"]

    store.set_suggestions_opt_out(engine, "c1")
    store.set_suggestions_opt_out(engine, "walk-in")  # unknown customers are remembered too
    assert store.suggestions_opted_out(engine, "c1") and store.suggestions_opted_out(engine, "walk-in")
    assert not store.suggestions_opted_out(engine, "c2")

    assert store.erase_customer(engine, "c1") == {"interactions": 2, "customers": 1}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.interactions).where(db.interactions.c.customer_id == "c1")).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(db.customers).where(db.customers.c.id == "c1")).scalar() == 0
    assert store.history_source(engine)("c1") is None
    assert len(store.read_interactions(engine, customer_id="c2")) == 1


# ------------------------------------------------------------------ demo data and training


def test_demo_customers_are_seeded_and_labelled_synthetic(tmp_path, engine, monkeypatch):
    items = load_items(CATALOGUE)
    first = generate_demo_customers.generate(items, customers=20, seed=3)
    again = generate_demo_customers.generate(items, customers=20, seed=3)
    other = generate_demo_customers.generate(items, customers=20, seed=4)
    pd.testing.assert_frame_equal(first[1], again[1])
    assert not first[1].equals(other[1])
    assert first[0]["customer_id"].str.startswith("demo-").all()

    monkeypatch.setattr(db, "connect", lambda url=None: engine)
    assert generate_demo_customers.main(["--customers", "20", "--seed", "3", "--out", str(tmp_path / "demo")]) == 0
    assert all(json.loads(line)["synthetic"] is True for line in (tmp_path / "demo" / "customers.jsonl").read_text().splitlines())
    assert generate_demo_customers.main(["--customers", "10", "--out", str(tmp_path / "demo")]) == 0  # replaces, not adds
    customers = store.read_customers(engine)
    assert len(customers) == 10 and customers["synthetic"].all()


def test_training_from_files_writes_a_folder_the_assistant_can_load(tmp_path):
    items = load_items(CATALOGUE)
    customers, interactions = generate_demo_customers.generate(items, customers=40, seed=1)
    interactions.to_csv(tmp_path / "interactions.csv", index=False)
    customers.to_csv(tmp_path / "customers.csv", index=False)
    out = tmp_path / "recommender"
    code = train_recommender.main([
        "--interactions", str(tmp_path / "interactions.csv"), "--customers", str(tmp_path / "customers.csv"),
        "--out", str(out), "--set", "sequence_epochs=2", "--set", "sequence_dim=16", "--quiet",
    ])
    assert code == 0
    model = Recommender.load(out)
    assert len(model.item_ids) == len(items) and len(model.profiles) == 40
    assert model.recommend("demo-0001", k=3, context="exchange_rate")


def test_training_reports_a_bad_file_and_a_bad_setting_clearly(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("customer_id,item_id,timestamp\nc1,easy-saver,never\n")
    assert train_recommender.main(["--interactions", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "line 2: timestamp 'never'" in capsys.readouterr().err
    (tmp_path / "good.csv").write_text("customer_id,item_id,timestamp\nc1,easy-saver,1\n")
    assert train_recommender.main(["--interactions", str(tmp_path / "good.csv"), "--out", str(tmp_path / "r"),
                                   "--set", "epochs=3", "--quiet"]) == 2
    assert "unknown recommender setting(s) epochs" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
