"""The project's own database (core/db.py) on a real PostgreSQL 15.

Starts a throwaway PostgreSQL cluster (tests/e2e/services.py; skipped only
when PostgreSQL is not installed), runs the numbered migrations on it, writes
and reads back a row of every table with the awkward values (JSON, booleans,
floats, unicode, long text), and drives the modules that write those tables
(recommender store, handoff queue, ratings, review queue) against it. Several
processes migrating one fresh database at once, as the action server and two
Rasa replicas do when they start together, must all succeed.
"""
from __future__ import annotations

import multiprocessing
import time
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from core import db
from tests.e2e.services import postgres  # noqa: F401  (a fixture)


@pytest.fixture
def database(postgres):  # noqa: F811
    """A fresh, empty database on the module's PostgreSQL; its URL."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


def test_the_migrations_create_every_table_on_postgresql(database):
    engine = db.connect(database)

    assert engine.dialect.name == "postgresql"
    assert db.migrate(engine) == len(db.MIGRATIONS)  # a second run changes nothing
    inspector = sa.inspect(engine)
    for table in db.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    with engine.connect() as conn:
        versions = conn.execute(sa.select(db.schema_version.c.version).order_by(db.schema_version.c.version)).scalars().all()
    assert versions == list(range(1, len(db.MIGRATIONS) + 1))


def test_every_table_round_trips_on_postgresql(database):
    engine = db.connect(database)
    now = time.time()
    long_text = "Bonjour 👋 — ünïcödé, 'quotes' and \"double quotes\"; " * 200
    rows = {
        db.customers: {"id": "c-1", "segment": "student", "age_band": "18-24",
                       "attributes": {"city": "Zürich", "tags": ["a", "b"], "n": 3},
                       "suggestions_opt_out": True, "synthetic": False, "created_at": now},
        db.items: {"id": "card-travel", "kind": "product", "title": "Travel card ✈", "description": long_text,
                   "tags": ["abroad", "fx"], "url": "https://example.com/travel", "active": True, "created_at": now},
        db.interactions: {"customer_id": "c-1", "item_id": "card-travel", "kind": "click", "topic": None,
                          "weight": 2.5, "conversation_id": "c-1", "ts": now},
        db.answer_ratings: {"answer_id": "intent:card_arrival", "query": long_text, "rating": -1,
                            "customer_id": "c-1", "conversation_id": "c-1", "source": "intent", "ts": now},
        db.handoffs: {"conversation_id": "c-1", "customer_id": "c-1", "channel": "rest", "reason": "asked",
                      "status": "waiting", "agent": None, "summary": long_text, "created_at": now, "updated_at": now},
        db.review_queue: {"conversation_id": "c-1", "text": long_text, "reason": "fallback",
                          "predicted_intent": "nlu_fallback", "confidence": 0.123456789, "status": "open",
                          "assigned_intent": None, "answer": None, "created_at": now},
    }
    ids = {}
    with engine.begin() as conn:
        for table, values in rows.items():
            result = conn.execute(table.insert().values(**values))
            ids[table.name] = result.inserted_primary_key[0]
    assert isinstance(ids["interactions"], int) and ids["interactions"] >= 1  # SERIAL ids come back

    with engine.connect() as conn:
        for table, values in rows.items():
            key = list(table.primary_key.columns)[0]
            stored = dict(conn.execute(sa.select(table).where(key == ids[table.name])).mappings().one())
            if "id" not in values:  # autoincrement id, checked above
                stored.pop("id")
            assert stored == values, table.name


def test_the_project_modules_work_on_postgresql(database):
    from bot.channels.queue import HandoffQueue
    from core import review
    from recommender import store
    from retrieval.feedback import record_rating

    engine = db.connect(database)
    store.save_items(engine, pd.DataFrame([
        {"item_id": "fx-card", "kind": "product", "title": "FX card", "description": "spend abroad", "tags": ["abroad"], "url": None},
    ]))
    store.record_interaction(engine, "pg-customer", "fx-card", "click", topic="abroad", conversation_id="pg-customer")
    store.set_suggestions_opt_out(engine, "pg-customer", True)
    assert store.suggestions_opted_out(engine, "pg-customer") is True
    assert list(store.read_interactions(engine, "pg-customer")["item_id"]) == ["fx-card"]

    rating_id = record_rating("intent:card_arrival", "down", "where is my card", "pg-customer", "pg-customer", database_url=database)
    assert rating_id >= 1

    queue = HandoffQueue(engine)
    first = queue.open("pg-conv-1", "asked", "pg-customer", "rest")
    queue.open("pg-conv-2", "frustration", "other", "web")
    assert queue.open("pg-conv-1", "asked").id == first.id  # keeps its place
    assert (queue.position("pg-conv-1"), queue.position("pg-conv-2")) == (1, 2)
    queue.take("pg-conv-1", "agent-ann")
    assert queue.position("pg-conv-2") == 1

    item = review.enqueue("pg-conv-1", "my card number is 4111 1111 1111 1111", "fallback", "nlu_fallback", 0.3, db_url=database)
    assert review.enqueue("pg-conv-1", "my card number is 4111 1111 1111 1111", "fallback", db_url=database) == item
    [listed] = review.list_items(db_url=database)
    assert "4111 1111 1111 1111" not in listed["text"]  # redacted before it was stored

    erased = store.erase_customer(engine, "pg-customer")
    assert erased and store.read_interactions(engine, "pg-customer").empty


def _connect_after(url: str, barrier, results) -> None:
    from core import db as process_db

    barrier.wait()
    try:
        process_db.connect(url)
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}"[:300])


def test_processes_starting_together_migrate_one_fresh_database(database):
    """The action server and two Rasa replicas start at once against an empty database."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [context.Process(target=_connect_after, args=(database, barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    outcomes = [results.get(timeout=5) for _ in processes]
    assert outcomes == ["ok"] * 4
    with db.connect(database).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.schema_version)).scalar() == len(db.MIGRATIONS)
