"""The project's own database (core/db.py) on a real PostgreSQL 15.

Starts a throwaway PostgreSQL cluster (tests/e2e/services.py; skipped only
when PostgreSQL is not installed), runs the Alembic revisions on it, writes
and reads back a row of every table with the awkward values (JSON, booleans,
floats, unicode, long text), and drives the modules that write those tables
(recommender store, handoff queue, ratings, review queue) against it. Several
processes migrating one fresh database at once, as the action server and two
Rasa replicas do when they start together, must all succeed. A database the
runner before Alembic left at v5 is stamped and upgraded with its rows.
"""
from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core import db
from tests.concurrent_start import open_together
from tests.e2e.services import postgres  # noqa: F401  (a fixture)


@pytest.fixture
def database(postgres):  # noqa: F811
    """A fresh, empty database on the module's PostgreSQL; its URL."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


def test_the_migrations_create_every_table_on_postgresql(database):
    engine = db.connect(database)

    assert engine.dialect.name == "postgresql"
    assert db.migrate(engine) == int(db.head_revision())  # a second run changes nothing
    inspector = sa.inspect(engine)
    for table in db.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
    assert versions == [db.head_revision()]
    assert not inspector.has_table("schema_version")


# What the runner before Alembic did for v1..v5: create these tables from the declared
# metadata, the audit log's triggers, and a schema_version row per version.
_LEGACY_V5_TABLES = ("customers", "items", "interactions", "answer_ratings", "handoffs", "review_queue",
                     "identities", "api_callers", "staff_accounts", "staff_sessions", "signin_throttle", "audit_log",
                     "erasure_requests", "data_exports", "message_sentiment")
_LEGACY_AUDIT_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE PROCEDURE audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE PROCEDURE audit_log_append_only()",
)


def test_a_database_the_old_runner_left_at_v5_is_stamped_and_upgraded_on_postgresql(database):
    legacy = sa.create_engine(database, future=True)
    with legacy.begin() as conn:
        conn.execute(sa.text("CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at FLOAT NOT NULL)"))
        for name in _LEGACY_V5_TABLES:
            db.metadata.tables[name].create(conn)
        conn.execute(sa.text("DROP INDEX IF EXISTS uq_handoffs_open_conversation"))  # revision 0009's, not v5's
        conn.execute(sa.text("ALTER TABLE handoffs DROP COLUMN taken_at"))  # 0009's too
        for statement in _LEGACY_AUDIT_TRIGGERS:
            conn.execute(sa.text(statement))
        for number in range(1, 6):
            conn.execute(sa.text("INSERT INTO schema_version VALUES (:v, :t)"), {"v": number, "t": time.time()})
        conn.execute(db.customers.insert().values(id="c-old", attributes={"city": "Zürich"}, created_at=1.0))
        conn.execute(db.audit_log.insert().values(ts=1.0, actor="admin", action="signin"))
        conn.execute(db.message_sentiment.insert().values(conversation_id="conv", message_id="m", label="negative",
                                                          confidence=0.9, negative=0.9, ts=1.0))
    legacy.dispose()

    engine = db.connect(database)

    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [db.head_revision()]
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        assert conn.execute(sa.select(db.customers.c.id, db.customers.c.attributes)).all() == [("c-old", {"city": "Zürich"})]
        assert conn.execute(sa.select(db.audit_log.c.actor)).scalars().all() == ["admin"]
        assert conn.execute(sa.select(sa.func.count()).select_from(db.message_sentiment)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(db.assist_replies)).scalar() == 0  # v8 made
    assert not sa.inspect(engine).has_table("schema_version")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(db.audit_log.delete())


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
                      "status": "waiting", "agent": None, "summary": long_text, "created_at": now, "updated_at": now,
                      "taken_at": None},
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
    from bot.handoff.queue import HandoffQueue
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
    with pytest.raises(sa.exc.IntegrityError):  # the partial unique index: one open handoff per conversation
        with engine.begin() as conn:
            conn.execute(db.handoffs.insert().values(conversation_id="pg-conv-2", reason="asked", status="waiting",
                                                     created_at=1.0, updated_at=1.0))

    item = review.enqueue("pg-conv-1", "my card number is 4111 1111 1111 1111", "fallback", "nlu_fallback", 0.3, db_url=database)
    assert review.enqueue("pg-conv-1", "my card number is 4111 1111 1111 1111", "fallback", db_url=database) == item
    [listed] = review.list_items(db_url=database)
    assert "4111 1111 1111 1111" not in listed["text"]  # redacted before it was stored

    erased = store.erase_customer(engine, "pg-customer")
    assert erased and store.read_interactions(engine, "pg-customer").empty


def test_processes_starting_together_migrate_one_fresh_database(database):
    """The action server and two Rasa replicas start at once against an empty database."""
    assert open_together(database, 4) == ["ok"] * 4
    with db.connect(database).connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [db.head_revision()]


def test_replicas_meeting_a_new_customer_at_once_agree_on_one_arm_on_postgresql(database):
    """Two processes whose declarations split differently (weights changed between their starts) store one arm."""
    import threading

    from bot.insight import experiments

    def declared(weights):
        return experiments.experiment_from_dict({
            "name": "pg-exp", "surface": "suggestions", "metric": "click_through",
            "arms": [{"name": "blend", "weight": weights[0]}, {"name": "off", "weight": weights[1]}]})

    engines = [db.connect(database), db.connect(database)]
    declarations = [declared((1, 0)), declared((0, 1))]  # one process would put everyone in blend, the other in off
    start = threading.Barrier(2)
    got = {}

    def serve(replica: int, customer: str) -> None:
        start.wait()
        with engines[replica].begin() as conn:
            got[replica, customer] = experiments._stored_arm(conn, declarations[replica], customer, time.time())

    for n in range(5):
        customer = f"pg-customer-{n}"
        start.reset()
        threads = [threading.Thread(target=serve, args=(replica, customer)) for replica in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert got[0, customer] == got[1, customer] in ("blend", "off"), customer
    experiments.reset_experiments()
    stored = got[0, "pg-customer-0"]
    arm = experiments.assign_and_log(engines[0], declarations[1], "pg-customer-0", "conv-0")
    assert arm.name == stored  # the stored arm, whatever today's weights say
    with engines[0].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.experiment_assignments)).scalar() == 5
        assert conn.execute(sa.select(db.experiment_exposures.c.arm)).scalars().all() == [stored]
