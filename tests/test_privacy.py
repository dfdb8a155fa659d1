"""Erasure requests, the privacy worker, retention and data exports, on real temporary stores.

Each test gets its own project database, tracker store (a SQLite file with
Rasa's ``events`` table), answer index, saved recommender profiles, ratings
spool and review exports, all under tmp_path.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import sqlalchemy as sa

from bot.actions import history, suggestions
from bot.insight import experiments
from bot.privacy import erase, export, requests, worker
from bot.privacy.worker import Worker, purge_older_than, tell_customer
from bot.security import identity
from core import db, review
from core.settings import get_settings
from retrieval.index import AnswerIndex

CUSTOMER, OTHER = "cust-erased", "cust-kept"
WEB, SLACK = "web:visit-1", "slack:U123"  # two channels linked to CUSTOMER
EXPERIMENT = experiments.experiment_from_dict(
    {"name": "suggestions-test", "surface": "suggestions", "arms": ["blend", "popularity"], "metric": "click_through"})

EVENTS = sa.Table(  # the columns of Rasa's SQLTrackerStore table
    "events", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True), sa.Column("sender_id", sa.String(255), index=True),
    sa.Column("type_name", sa.String(255)), sa.Column("timestamp", sa.Float), sa.Column("intent_name", sa.String(255)),
    sa.Column("action_name", sa.String(255)), sa.Column("data", sa.Text),
)


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """Every store the worker reaches, under tmp_path, with data of CUSTOMER (two channels) and of OTHER."""
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", f"sqlite:///{tmp_path / 'assistant.db'}")
    monkeypatch.setenv("ASSISTANT_TRACKER_DB", str(tmp_path / "tracker.db"))
    monkeypatch.delenv("ASSISTANT_TRACKER_URL", raising=False)
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("ASSISTANT_RECOMMENDER_DIR", str(tmp_path / "recommender"))
    monkeypatch.setattr(history, "UNSAVED_RATINGS", tmp_path / "var" / "unsaved_ratings.jsonl")
    monkeypatch.setattr(review, "DEFAULT_NLU_EXPORT", tmp_path / "var" / "review" / "reviewed_nlu.yml")
    monkeypatch.setattr(review, "DEFAULT_HISTORY_EXPORT", tmp_path / "var" / "review" / "reviewed.jsonl")
    monkeypatch.setattr(export, "EXPORT_DIR", tmp_path / "var" / "exports")
    monkeypatch.setattr(worker, "SAVE_WAIT_SECONDS", 0.0)
    get_settings.cache_clear()
    db.connect.cache_clear()
    identity.clear_cache()
    experiments.reset_experiments()
    engine = db.connect()
    tracker = sa.create_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    EVENTS.create(tracker)
    now = time.time()
    for who in (CUSTOMER, OTHER):
        conversations = [WEB, SLACK] if who == CUSTOMER else ["web:other"]
        for conversation in conversations:
            channel = conversation.split(":")[0]
            identity.link(conversation, who, channel, "test", engine=engine)
            with tracker.begin() as conn:
                conn.execute(EVENTS.insert(), [
                    {"sender_id": conversation, "type_name": "user", "timestamp": now, "data": json.dumps({"event": "user", "text": f"hello from {who}", "timestamp": now})},
                    {"sender_id": conversation, "type_name": "action", "action_name": "action_listen", "timestamp": now,
                     "data": json.dumps({"event": "action", "name": "action_listen", "timestamp": now})},
                ])
        with engine.begin() as conn:
            conn.execute(db.customers.insert().values(id=who, attributes={}, suggestions_opt_out=False, synthetic=False, created_at=now))
            conn.execute(db.interactions.insert().values(customer_id=who, item_id="easy-saver", kind="click", weight=1.0,
                                                         conversation_id=conversations[0], ts=now))
            conn.execute(db.answer_ratings.insert().values(answer_id="intent:x", query=f"question of {who}", rating=1,
                                                           customer_id=who, conversation_id=conversations[0], ts=now))
            conn.execute(db.handoffs.insert().values(conversation_id=conversations[-1], customer_id=who, channel="web",
                                                     reason="asked", status="closed", created_at=now, updated_at=now))
            item = conn.execute(db.review_queue.insert().values(conversation_id=conversations[0], text=f"words of {who}",
                                                                 reason="fallback", status="done", answer=f"answer for {who}",
                                                                 created_at=now)).inserted_primary_key[0]
        experiments.assign_and_log(engine, EXPERIMENT, who, conversations[0])  # their arm, and one exposure
    # Review exports, written from the queue (as `training.review export` does).
    review.export(review.DEFAULT_NLU_EXPORT, review.DEFAULT_HISTORY_EXPORT)
    pairs = [json.loads(line) for line in review.DEFAULT_HISTORY_EXPORT.read_text().splitlines()]
    assert {p["source"] for p in pairs} == {f"review#{WEB}", "review#web:other"}
    # An answer index built from those pairs (vectors given: no encoder needed).
    records = [{"id": p["id"], "question": p["question"], "answer": p["answer"], "source": p["source"]} for p in pairs]
    records.append({"id": "qa-1", "question": "how do I order a card", "answer": "In the app.", "source": "bot/history/qa.jsonl"})
    AnswerIndex.build(records, encoder="bundled", vectors=np.eye(len(records), 8, dtype="float32")).save(tmp_path / "index")
    # A trained recommender's saved profiles, as artifacts/recommender/ holds them.
    (tmp_path / "recommender").mkdir()
    (tmp_path / "recommender" / "profiles.jsonl").write_text(
        "".join(json.dumps({"customer_id": c, "segment": None}) + "\n" for c in (CUSTOMER, OTHER)))
    # Ratings waiting in the spool while the database was down.
    history.UNSAVED_RATINGS.parent.mkdir(parents=True, exist_ok=True)
    history.UNSAVED_RATINGS.write_text("".join(json.dumps({"answer_id": "intent:x", "rating": "up", "query": "q", "customer_id": c,
                                                           "conversation_id": c}) + "\n" for c in (CUSTOMER, OTHER)))
    yield {"engine": engine, "tracker": tracker, "tmp": tmp_path, "review_item": item}
    tracker.dispose()
    for cached in erase._tracker_engines.values():
        cached.dispose()
    erase._tracker_engines.clear()
    get_settings.cache_clear()
    db.connect.cache_clear()
    identity.clear_cache()
    experiments.reset_experiments()


def rows_of(stores, who_ids):
    """How many things each store still holds for these ids."""
    engine, tracker, tmp = stores["engine"], stores["tracker"], stores["tmp"]
    ids = list(who_ids)
    held = {}
    with tracker.connect() as conn:
        held["tracker"] = conn.execute(sa.select(sa.func.count()).select_from(EVENTS).where(  # what the customer said
            EVENTS.c.sender_id.in_(ids), EVENTS.c.type_name == "user")).scalar()
    with engine.connect() as conn:
        held["customers"] = conn.execute(sa.select(sa.func.count()).select_from(db.customers).where(db.customers.c.id.in_(ids))).scalar()
        for table in (db.interactions, db.answer_ratings, db.handoffs):
            held[table.name] = conn.execute(sa.select(sa.func.count()).select_from(table).where(
                sa.or_(table.c.customer_id.in_(ids), table.c.conversation_id.in_(ids)))).scalar()
        held["review_queue"] = conn.execute(sa.select(sa.func.count()).select_from(db.review_queue).where(db.review_queue.c.conversation_id.in_(ids))).scalar()
        held["identities"] = conn.execute(sa.select(sa.func.count()).select_from(db.identities).where(
            sa.or_(db.identities.c.customer_id.in_(ids), db.identities.c.conversation_id.in_(ids)))).scalar()
        held["experiment_assignments"] = conn.execute(sa.select(sa.func.count()).select_from(db.experiment_assignments).where(
            db.experiment_assignments.c.customer_id.in_(ids))).scalar()
        held["experiment_exposures"] = conn.execute(sa.select(sa.func.count()).select_from(db.experiment_exposures).where(
            sa.or_(db.experiment_exposures.c.customer_id.in_(ids), db.experiment_exposures.c.conversation_id.in_(ids)))).scalar()
    text_of = lambda path: path.read_text() if path.exists() else ""  # noqa: E731
    held["spool"] = sum(text_of(history.UNSAVED_RATINGS).count(f'"{i}"') for i in ids)
    held["review_exports"] = sum(text_of(p).count(f"of {i}") + text_of(p).count(f"#{i}") for p in (review.DEFAULT_NLU_EXPORT, review.DEFAULT_HISTORY_EXPORT) for i in ids)
    held["index"] = sum(text_of(tmp / "index" / "records.jsonl").count(f"#{i}\"") for i in ids)
    held["saved_profiles"] = sum(text_of(tmp / "recommender" / "profiles.jsonl").count(f'"{i}"') for i in ids)
    return held


def test_a_request_is_recorded_once_while_open(stores):
    engine = stores["engine"]
    first, new = requests.record_request(engine, CUSTOMER, via=WEB)
    again, new_again = requests.record_request(engine, CUSTOMER, via=SLACK)
    assert (new, new_again, again) == (True, False, first)
    claimed = requests.claim_next(engine, "w1")
    assert requests.finish(engine, claimed["id"], {"customers": 1}, worker="w1")
    later, new_later = requests.record_request(engine, CUSTOMER)
    assert new_later and later != first  # a closed request does not block a new one


def test_two_workers_never_claim_the_same_request_and_a_dead_claim_is_taken_over(stores):
    engine = stores["engine"]
    request_id, _ = requests.record_request(engine, CUSTOMER)
    now = time.time()
    first = requests.claim_next(engine, "replica-a", now=now, lease=60)
    assert first["id"] == request_id and first["status"] == "running" and first["attempts"] == 1
    assert requests.claim_next(engine, "replica-b", now=now + 30, lease=60) is None  # held by replica-a
    taken = requests.claim_next(engine, "replica-b", now=now + 61, lease=60)  # replica-a died: lease ran out
    assert taken["id"] == request_id and taken["claimed_by"] == "replica-b" and taken["attempts"] == 2
    assert not requests.finish(engine, request_id, {}, worker="replica-a")  # the dead worker can no longer close it
    assert requests.finish(engine, request_id, {}, worker="replica-b")


def test_the_worker_erases_every_store_of_every_linked_conversation_and_tells_the_customer(stores):
    engine = stores["engine"]
    before = rows_of(stores, [CUSTOMER, WEB, SLACK])
    assert all(before.values()), before
    kept_before = rows_of(stores, [OTHER, "web:other"])
    request_id, _ = requests.record_request(engine, CUSTOMER, via=WEB)

    assert Worker(name="w").run_once() == [{"id": request_id, "status": "done"}]

    assert not any(rows_of(stores, [CUSTOMER, WEB, SLACK]).values()), rows_of(stores, [CUSTOMER, WEB, SLACK])
    assert rows_of(stores, [OTHER, "web:other"]) == kept_before  # nobody else loses anything
    done = requests.get_request(engine, request_id)
    assert done["status"] == "done" and done["open_key"] is None and done["finished_at"]
    assert done["removed"]["tracker_events"] == 4 and done["removed"]["customers"] == 1
    assert done["removed"]["index_entries"] == 1 and done["removed"]["spooled_ratings"] == 1
    assert done["removed"]["saved_profiles"] == 1 and done["removed"]["identities"] == 2
    assert done["removed"]["experiment_assignments"] == 1 and done["removed"]["experiment_exposures"] == 1
    # Told again, in the conversation that asked: the only thing left there.
    with stores["tracker"].connect() as conn:
        left = conn.execute(sa.select(EVENTS.c.type_name, EVENTS.c.data).where(EVENTS.c.sender_id == WEB).order_by(EVENTS.c.id)).all()
    assert [t for t, _ in left] == ["action", "session_started", "action", "bot"]
    with stores["tracker"].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(EVENTS).where(EVENTS.c.sender_id == SLACK)).scalar() == 0
    assert json.loads(left[-1][1])["text"] == worker.notice_text()
    # Running again finds nothing to do, and erasing again removes nothing.
    assert Worker(name="w2").run_once() == []
    again = erase.erase_identity(engine, CUSTOMER, [WEB, SLACK])
    assert {store: n for store, n in again.items() if n} == {"tracker_events": 4}  # only the notice was left


def test_the_worker_waits_until_the_rasa_server_saved_the_turn_that_asked(stores, monkeypatch):
    monkeypatch.setattr(worker, "SAVE_WAIT_SECONDS", 600.0)
    engine = stores["engine"]
    request_id, _ = requests.record_request(engine, CUSTOMER, via=WEB)  # its turn is not stored yet
    assert Worker(name="w").run_once() == [{"id": request_id, "status": "pending"}]
    assert rows_of(stores, [CUSTOMER])["customers"] == 1  # nothing erased yet
    with stores["tracker"].begin() as conn:  # the Rasa server saves the turn
        conn.execute(EVENTS.insert().values(sender_id=WEB, type_name="action", action_name="action_listen", timestamp=time.time() + 6,
                                            data=json.dumps({"event": "action", "name": "action_listen"})))
    assert Worker(name="w").run_once(now=time.time() + 3600) == [{"id": request_id, "status": "done"}]


def test_a_conversation_already_erased_by_an_attempt_that_died_is_not_waited_for(stores, monkeypatch):
    monkeypatch.setattr(worker, "SAVE_WAIT_SECONDS", 600.0)
    engine = stores["engine"]
    request_id, _ = requests.record_request(engine, CUSTOMER, via=WEB)
    requests.claim_next(engine, "died-in-the-middle", lease=1)
    erase.erase_tracker([WEB, SLACK])  # what it did before it died
    assert Worker(name="w").run_once(now=time.time() + 2) == [{"id": request_id, "status": "done"}]
    assert not any(rows_of(stores, [CUSTOMER, WEB, SLACK]).values())


def test_a_store_that_is_down_is_retried_with_backoff_and_the_worker_keeps_running(stores, monkeypatch):
    engine = stores["engine"]
    request_id, _ = requests.record_request(engine, CUSTOMER)
    # The tracker store (PostgreSQL here) cannot be reached.
    monkeypatch.setenv("ASSISTANT_TRACKER_URL", "postgresql://nobody@127.0.0.1:9/rasa")
    get_settings.cache_clear()
    started = time.time()
    assert Worker(name="w").run_once() == [{"id": request_id, "status": "pending"}]
    waiting = requests.get_request(engine, request_id)
    assert waiting["status"] == "pending" and waiting["attempts"] == 1 and waiting["open_key"] == CUSTOMER
    assert "OperationalError" in waiting["last_error"] and waiting["next_attempt_at"] > started
    assert Worker(name="w").run_once(now=started) == []  # not due yet: backoff
    # The project database itself gone: a round does not raise.
    (stores["tmp"] / "blocker").write_text("a file where the database's folder should be")
    assert Worker(f"sqlite:///{stores['tmp'] / 'blocker' / 'x.db'}", name="w").run_once() == []
    # Back up: the next due round finishes it.
    monkeypatch.delenv("ASSISTANT_TRACKER_URL")
    get_settings.cache_clear()
    assert Worker(name="w").run_once(now=time.time() + 3600) == [{"id": request_id, "status": "done"}]
    assert requests.get_request(engine, request_id)["attempts"] == 2
    assert not any(rows_of(stores, [CUSTOMER, WEB, SLACK]).values())


def test_each_process_drops_erased_profiles_from_memory_and_its_spool(stores):
    from bot.actions.suggestions import CATALOGUE
    from recommender import Recommender, load_items
    from recommender.model import CustomerProfile

    model = Recommender.from_catalogue(load_items(CATALOGUE), content_weight=0.0, context_weight=0.0)
    from recommender import store

    model.use_history(store.history_source(stores["engine"]), drop_saved=True)
    model.recommend(CUSTOMER, k=1)
    assert CUSTOMER in model.profiles  # read from the database on first sight
    suggestions.use_recommender(model)
    try:
        other_replica = Worker(name="replica-b")
        other_replica.sweep(stores["engine"])
        request_id, _ = requests.record_request(stores["engine"], CUSTOMER)
        assert Worker(name="replica-a").run_once()[0]["status"] == "done"
        model.profiles[CUSTOMER] = CustomerProfile(CUSTOMER, "held by replica-b")  # as if replica-b still held it
        with history.UNSAVED_RATINGS.open("a") as spool:  # and a rating in replica-b's spool
            spool.write(json.dumps({"answer_id": "intent:x", "rating": "up", "query": "q", "customer_id": CUSTOMER,
                                    "conversation_id": WEB}) + "\n")
        assert other_replica.sweep(stores["engine"]) == 1
        assert f'"{CUSTOMER}"' not in history.UNSAVED_RATINGS.read_text() and f'"{OTHER}"' in history.UNSAVED_RATINGS.read_text()
        assert CUSTOMER not in model.profiles
        assert (EXPERIMENT.name, CUSTOMER) not in experiments._assigned  # nor does this process remember their arm
        assert (EXPERIMENT.name, OTHER) in experiments._assigned
        model.recommend(CUSTOMER, k=1)  # the customer comes back: the database has nothing of them
        assert CUSTOMER not in model.profiles
    finally:
        suggestions.use_recommender(None)


def test_retention_purges_what_is_older_and_keeps_the_rest(stores):
    engine, tracker = stores["engine"], stores["tracker"]
    assert purge_older_than(engine, 0) == {}  # 0 = keep forever
    old = time.time() - 40 * 86400
    with engine.begin() as conn:
        conn.execute(db.interactions.insert().values(customer_id="old-one", item_id="easy-saver", kind="click", weight=1.0, ts=old))
        conn.execute(db.customers.insert().values(id="old-one", attributes={}, suggestions_opt_out=False, synthetic=False, created_at=old))
        conn.execute(db.review_queue.insert().values(conversation_id="web:old", text="old words", reason="fallback", status="open", created_at=old))
        conn.execute(db.experiment_assignments.insert().values(experiment="e", customer_id="old-one", arm="a", assigned_at=old))
        conn.execute(db.experiment_exposures.insert().values(experiment="e", arm="a", customer_id="old-one", conversation_id="web:old", ts=old))
        # Exposed long ago and again recently: the recent exposure and the arm stay.
        conn.execute(db.experiment_assignments.insert().values(experiment="e", customer_id="back-again", arm="b", assigned_at=old))
        conn.execute(db.experiment_exposures.insert().values(experiment="e", arm="b", customer_id="back-again", ts=old))
        conn.execute(db.experiment_exposures.insert().values(experiment="e", arm="b", customer_id="back-again", ts=time.time()))
    with tracker.begin() as conn:
        conn.execute(EVENTS.insert().values(sender_id="web:old", type_name="user", timestamp=old, data="{}"))
    before = rows_of(stores, [CUSTOMER, WEB, SLACK])

    removed = purge_older_than(engine, 30)

    assert removed["tracker_events"] == 1 and removed["interactions"] == 1 and removed["customers"] == 1 and removed["review_queue"] == 1
    assert removed["experiment_exposures"] == 2 and removed["experiment_assignments"] == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.experiment_assignments.c.customer_id).where(
            db.experiment_assignments.c.experiment == "e")).scalars().all() == ["back-again"]
    assert rows_of(stores, [CUSTOMER, WEB, SLACK]) == before
    assert not rows_of(stores, ["old-one", "web:old"])["tracker"]


def test_an_export_holds_everything_about_the_customer_and_only_its_token_opens_it(stores):
    engine = stores["engine"]
    token, path = export.create_export(engine, CUSTOMER, conversation_id=WEB)
    data = json.loads(path.read_text())
    assert data["customer_id"] == CUSTOMER and set(data["conversations"]) == {CUSTOMER, WEB, SLACK}
    assert data["profile"][0]["id"] == CUSTOMER and len(data["interactions"]) == 1 and len(data["handoffs"]) == 1
    assert data["answer_ratings"][0]["query"] == f"question of {CUSTOMER}"
    assert len(data["experiment_assignments"]) == len(data["experiment_exposures"]) == 1
    assert data["experiment_assignments"][0]["arm"] == data["experiment_exposures"][0]["arm"]
    assert [e["text"] for e in data["transcripts"][SLACK] if e.get("text")] == [f"hello from {CUSTOMER}"]
    assert OTHER not in json.dumps(data)
    assert json.loads(export.find_export(engine, token)) == data
    assert export.find_export(engine, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert export.find_export(engine, token, now=time.time() + 25 * 3600) is None  # expired after 24 h
    with engine.connect() as conn:  # only the token's hash is stored
        assert token not in json.dumps([dict(r) for r in conn.execute(sa.select(db.data_exports)).mappings()])
    # Erasing the customer removes the export too.
    requests.record_request(engine, CUSTOMER)
    Worker(name="w").run_once()
    assert not path.exists() and export.find_export(engine, token) is None


def test_staff_export_command_prints_the_customers_data(stores, capsys):
    assert export.main([CUSTOMER]) == 0
    assert json.loads(capsys.readouterr().out)["profile"][0]["id"] == CUSTOMER


def test_tell_customer_starts_a_new_session_in_an_erased_conversation(stores):
    erase.erase_tracker([WEB])
    assert tell_customer(WEB, "finished")
    with stores["tracker"].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(EVENTS).where(EVENTS.c.sender_id == WEB)).scalar() == 4


def test_review_exports_and_data_exports_live_where_git_and_the_images_leave_them_out():
    from core.settings import PROJECT_ROOT

    assert review.DEFAULT_NLU_EXPORT.parent == review.DEFAULT_HISTORY_EXPORT.parent == PROJECT_ROOT / "var" / "review"
    assert export.EXPORT_DIR == PROJECT_ROOT / "var" / "exports"
    assert "/var/" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    for ignore in sorted((PROJECT_ROOT / "deploy").glob("Dockerfile*.dockerignore")):
        lines = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert lines[0] == "**" and not any(line.startswith("!var") for line in lines), ignore.name  # everything out unless named


def test_what_an_attempt_removed_is_recorded_even_if_it_dies_before_the_end(stores, monkeypatch):
    engine = stores["engine"]
    request_id, _ = requests.record_request(engine, CUSTOMER)
    claimed = requests.claim_next(engine, "dies", lease=1)

    def die(*_args, **_kwargs):
        raise SystemExit("killed")  # the process dies after the tracker and the project rows

    with monkeypatch.context() as patch, pytest.raises(SystemExit):
        patch.setattr(erase, "erase_spooled_ratings", die)
        erase.erase_identity(engine, CUSTOMER, [WEB, SLACK],
                             record=lambda counts: requests.add_removed(engine, claimed["id"], counts, "dies"))
    kept = requests.get_request(engine, request_id)["removed"]
    assert kept["tracker_events"] == 4 and kept["customers"] == 1 and kept["identities"] == 2
    assert Worker(name="w").run_once(now=time.time() + 2) == [{"id": request_id, "status": "done"}]
    done = requests.get_request(engine, request_id)["removed"]
    assert done["tracker_events"] == 4 and done["customers"] == 1 and done["spooled_ratings"] == 1  # counted once each


def test_a_spooled_rating_of_a_customer_erased_since_never_comes_back(stores, tmp_path):
    engine = stores["engine"]
    history.UNSAVED_RATINGS.unlink()
    down = f"sqlite:///{tmp_path / 'blocker-file' / 'x.db'}"
    (tmp_path / "blocker-file").write_text("not a folder")  # the database cannot be opened
    rating = {"answer_id": "intent:x", "rating": "up", "query": "q", "customer_id": CUSTOMER, "conversation_id": WEB}
    assert history.store_rating(rating, database_url=down) is False  # spooled while the database is down
    requests.record_request(engine, CUSTOMER, via=WEB)  # then the customer asks to be erased
    later = {"answer_id": "intent:y", "rating": "down", "query": "q2", "customer_id": OTHER, "conversation_id": "web:other"}

    assert history.store_rating(later, database_url=str(engine.url)) is True  # the database is back: the spool is flushed

    with engine.connect() as conn:
        of_customer = conn.execute(sa.select(sa.func.count()).select_from(db.answer_ratings).where(
            db.answer_ratings.c.customer_id == CUSTOMER, db.answer_ratings.c.query == "q")).scalar()
        of_other = conn.execute(sa.select(sa.func.count()).select_from(db.answer_ratings).where(
            db.answer_ratings.c.customer_id == OTHER, db.answer_ratings.c.query == "q2")).scalar()
    assert (of_customer, of_other) == (0, 1)
    assert not history.UNSAVED_RATINGS.exists()


def test_an_export_is_kept_encrypted_at_rest_when_a_key_is_set(stores, monkeypatch):
    from core import crypto

    monkeypatch.setenv("ASSISTANT_ENCRYPTION_KEY", crypto.new_key())
    token, _ = export.create_export(stores["engine"], CUSTOMER, conversation_id=WEB)
    with stores["engine"].connect() as conn:
        stored = conn.execute(sa.text("SELECT content FROM data_exports")).scalar()
    assert crypto.is_encrypted(stored) and CUSTOMER not in stored
    assert json.loads(export.find_export(stores["engine"], token))["customer_id"] == CUSTOMER


def test_backoff_doubles_from_two_seconds_up_to_an_hour_and_gives_up_after_fifty_attempts(stores):
    engine = stores["engine"]
    request_id, _ = requests.record_request(engine, CUSTOMER)
    delays = []
    now = time.time() + 1
    for _ in range(requests.MAX_ATTEMPTS):
        claimed = requests.claim_next(engine, "w", now=now)
        status = requests.retry_later(engine, claimed["id"], "down", worker="w", now=now)
        row = requests.get_request(engine, request_id)
        delays.append(row["next_attempt_at"] - now)
        now = row["next_attempt_at"]
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0] and max(delays) == 3600.0
    assert status == "failed" and row["open_key"] is None and row["attempts"] == requests.MAX_ATTEMPTS
    assert requests.claim_next(engine, "w", now=now + 10**6) is None  # a failed request is not run again
    assert requests.record_request(engine, CUSTOMER)[1]  # the customer can ask again


def test_expired_exports_go_whatever_the_retention_and_the_purge_runs_once_an_hour(stores):
    engine = stores["engine"]
    token, path = export.create_export(engine, CUSTOMER, conversation_id=WEB)
    purger = Worker(name="w")
    assert purger.retention(engine, now=time.time() + 3600)["data_exports"] == 0  # still valid
    assert purger.retention(engine, now=time.time() + 3700) == {}  # not again within the hour
    assert purger.retention(engine, now=time.time() + 25 * 3600)["data_exports"] == 1
    assert not path.exists() and export.find_export(engine, token, now=0) is None


def test_a_worker_whose_claim_was_taken_over_stops_and_leaves_the_request_to_the_other(stores):
    engine = stores["engine"]
    request_id, _ = requests.record_request(engine, CUSTOMER)
    slow = requests.claim_next(engine, "slow", lease=1)
    taken = requests.claim_next(engine, "fast", now=time.time() + 5)  # slow's lease ran out
    assert taken["claimed_by"] == "fast"
    assert Worker(name="slow").process(slow) == worker.TAKEN_OVER
    assert requests.get_request(engine, request_id)["status"] == "running"  # still fast's
    assert Worker(name="fast").process(taken) == "done"
