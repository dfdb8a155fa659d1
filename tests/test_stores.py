"""The caching SQL tracker store: same trackers as Rasa's, rebuilt only when the database changed."""
import asyncio
import time
import json

import pytest
import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.stores import CachingSQLTrackerStore
from core import crypto
from tests.e2e.services import postgres  # noqa: F401  (a fixture)

DOMAIN = Domain.from_yaml(
    """
version: "3.1"
intents: [greet]
slots:
  card_digits:
    type: text
    mappings: [{type: custom}]
responses:
  utter_greet: [{text: hi}]
"""
)


@pytest.fixture(params=["plaintext", "encrypted"])
def key(request, monkeypatch):
    """Each store test runs without and with ASSISTANT_ENCRYPTION_KEY (the Helm values' setting)."""
    if request.param == "encrypted":
        monkeypatch.setenv(crypto.KEY_VARIABLE, crypto.new_key())
    else:
        monkeypatch.delenv(crypto.KEY_VARIABLE, raising=False)
    return request.param


def rows(engine, sender_id):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.text("SELECT * FROM events WHERE sender_id = :s ORDER BY id"), {"s": sender_id}).mappings()]


def run(coro):
    return asyncio.run(coro)


def turn(tracker: DialogueStateTracker, text: str) -> None:
    tracker.update(UserUttered(text, {"name": "greet", "confidence": 1.0}))
    tracker.update(ActionExecuted("utter_greet"))
    tracker.update(BotUttered("hi"))
    tracker.update(ActionExecuted("action_listen"))


def dump(tracker):
    return [e.as_dict() for e in tracker.events] if tracker else None


def test_same_tracker_as_rasa_and_cache_hits(tmp_path, key):
    # Rasa's store saves the same trackers into a database of its own (it cannot read encrypted rows).
    ours = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"))
    rasa = SQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "rasa.db"))
    tracker = DialogueStateTracker("c1", DOMAIN.slots)
    turn(tracker, "hello")
    tracker.update(SlotSet("card_digits", "1234"))
    run(ours.save(tracker))
    run(rasa.save(tracker))
    first = run(ours.retrieve("c1"))
    assert dump(first) == dump(run(rasa.retrieve("c1")))
    assert first.get_slot("card_digits") == "1234"
    turn(first, "again")
    run(ours.save(first))
    run(rasa.save(first))
    hits = ours.hits
    again = run(ours.retrieve("c1"))
    assert ours.hits == hits + 1, "a conversation saved here is rebuilt without reading its events"
    assert dump(again) == dump(run(rasa.retrieve("c1")))
    assert dump(run(ours.retrieve_full_tracker("c1"))) == dump(run(rasa.retrieve_full_tracker("c1")))
    assert run(ours.retrieve("nobody")) is None


def test_rows_are_rasas_with_the_data_column_encrypted(tmp_path, key):
    """Row for row what Rasa's store writes; with a key only `data` differs, and decrypts to Rasa's."""
    ours = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"))
    rasa = SQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "rasa.db"))
    tracker = DialogueStateTracker("c9", DOMAIN.slots)
    turn(tracker, "my name is Ann Smith, card 4539 1488 0343 6467")
    tracker.update(SlotSet("card_digits", "6467"))
    for store in (ours, rasa):
        run(store.save(tracker))
    mine, theirs = rows(ours.engine, "c9"), rows(rasa.engine, "c9")
    assert len(mine) == len(theirs) == 5
    for a, b in zip(mine, theirs):
        assert {k: v for k, v in a.items() if k != "data"} == {k: v for k, v in b.items() if k != "data"}
        assert json.loads(crypto.decrypt_text(a["data"])) == json.loads(b["data"])
        assert crypto.is_encrypted(a["data"]) == (key == "encrypted")
    stored = " ".join(str(row[k]) for row in mine for k in ("data", "intent_name", "action_name", "type_name"))
    assert ("Ann Smith" in stored) == (key == "plaintext") and ("6467" in stored) == (key == "plaintext")
    assert [r["intent_name"] for r in mine][0] == "greet", "intent names stay plain for Rasa's and our queries"


def test_legacy_plaintext_rows_and_encrypted_rows_read_together(tmp_path, monkeypatch):
    """A conversation begun before the key was set goes on after it: both kinds of row are read."""
    db = str(tmp_path / "tracker.db")
    monkeypatch.delenv(crypto.KEY_VARIABLE, raising=False)
    tracker = DialogueStateTracker("c10", DOMAIN.slots)
    turn(tracker, "written in plaintext")
    run(SQLTrackerStore(DOMAIN, dialect="sqlite", db=db).save(tracker))  # Rasa's own store, before the key
    monkeypatch.setenv(crypto.KEY_VARIABLE, crypto.new_key())
    store = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db)
    tracker = run(store.retrieve("c10"))
    turn(tracker, "written encrypted")
    run(store.save(tracker))
    raw = [r["data"] for r in rows(store.engine, "c10")]
    assert [crypto.is_encrypted(d) for d in raw] == [False] * 4 + [True] * 4
    fresh = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db)
    for read in (fresh.retrieve, fresh.retrieve_full_tracker):
        texts = [e.text for e in run(read("c10")).events if isinstance(e, UserUttered)]
        assert texts == ["written in plaintext", "written encrypted"]
    monkeypatch.setenv(crypto.KEY_VARIABLE, crypto.new_key())  # a key that did not write them
    with pytest.raises(crypto.EncryptionKeyError, match=crypto.KEY_VARIABLE):
        run(CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db).retrieve("c10"))


def test_another_server_writing_is_seen(tmp_path, key):
    db = str(tmp_path / "tracker.db")
    one = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db)
    two = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db)
    tracker = DialogueStateTracker("c2", DOMAIN.slots)
    turn(tracker, "first")
    run(one.save(tracker))
    assert len(run(one.retrieve("c2")).events) == 4
    other = run(two.retrieve("c2"))
    turn(other, "second, through the other replica")
    run(two.save(other))
    seen = run(one.retrieve("c2"))
    assert [e.text for e in seen.events if isinstance(e, UserUttered)] == ["first", "second, through the other replica"]


def test_erased_conversation_and_new_session(tmp_path, key):
    db = str(tmp_path / "tracker.db")
    store = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db)
    tracker = DialogueStateTracker("c3", DOMAIN.slots)
    turn(tracker, "please forget me")
    run(store.save(tracker))
    assert run(store.retrieve("c3")) is not None
    with sa.create_engine(f"sqlite:///{db}").begin() as conn:  # what "delete my data" does
        conn.execute(sa.text("DELETE FROM events WHERE sender_id = 'c3'"))
    assert run(store.retrieve("c3")) is None
    fresh = DialogueStateTracker("c3", DOMAIN.slots)
    turn(fresh, "old session")
    run(store.save(fresh))
    restarted = run(store.retrieve("c3"))
    restarted.update(ActionExecuted("action_session_start"))
    restarted.update(SessionStarted())
    restarted.update(ActionExecuted("action_listen"))
    turn(restarted, "new session")
    run(store.save(restarted))
    texts = [e.text for e in run(store.retrieve("c3")).events if isinstance(e, UserUttered)]
    assert texts == ["new session"], "only the latest session, as Rasa's store returns"


def test_a_message_waiting_behind_another_of_its_conversation_is_not_held_a_second():
    import asyncio
    import time

    from bot.lock_store import PromptInMemoryLockStore  # what bot/endpoints.yml names

    store = PromptInMemoryLockStore()

    async def main():
        started = time.perf_counter()

        async def first():
            async with store.lock("c"):
                await asyncio.sleep(0.1)

        async def second():
            await asyncio.sleep(0.01)
            async with store.lock("c"):
                return time.perf_counter() - started

        return (await asyncio.gather(first(), second()))[1]

    assert asyncio.run(main()) < 0.4  # Rasa alone re-checks once a second


def test_new_conversation_and_new_session_need_no_reread(tmp_path, key):
    """A conversation's first save and a session start keep the cache; trackers stay Rasa's, rows unduplicated."""
    from rasa.shared.core.constants import ACTION_SESSION_START_NAME

    ours = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"))
    rasa = SQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "rasa.db"))

    def both(do):
        return run(do(ours)), run(do(rasa))

    assert both(lambda s: s.retrieve("new")) == (None, None)
    created = DialogueStateTracker("new", DOMAIN.slots)
    created.update(ActionExecuted("action_listen"))
    for store in (ours, rasa):
        run(store.save(created))
    misses = ours.misses
    mine, theirs = both(lambda s: s.retrieve("new"))
    assert dump(mine) == dump(theirs) and ours.misses == misses, "the first save is kept"

    started = time.time()
    time.sleep(0.01)  # the turn comes after the session start, as in a real conversation
    said = DialogueStateTracker("new", DOMAIN.slots)
    turn(said, "hello")
    for tracker in (mine, theirs):  # Rasa's session start, then a turn, saved together
        tracker.update(ActionExecuted(ACTION_SESSION_START_NAME, timestamp=started))
        tracker.update(SessionStarted(timestamp=started))
        tracker.update(ActionExecuted("action_listen", timestamp=started + 0.001))
        for event in said.events:
            tracker.update(event)
    run(ours.save(mine))
    run(rasa.save(theirs))
    mine, theirs = both(lambda s: s.retrieve("new"))
    assert dump(mine) == dump(theirs) and ours.misses == misses, "the new session is kept, as Rasa reads it"
    assert len(mine.events) == len(theirs.events) == 3 + 4  # the first session's action_listen is left out
    again = DialogueStateTracker("new", DOMAIN.slots)
    turn(again, "and again")
    for tracker in (mine, theirs):
        for event in again.events:
            tracker.update(event)
    run(ours.save(mine))
    run(rasa.save(theirs))
    assert dump(run(ours.retrieve("new"))) == dump(run(rasa.retrieve("new")))
    assert dump(run(CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db")).retrieve("new"))) == dump(
        run(rasa.retrieve("new"))
    ), "what the database holds is what was kept"
    with ours.engine.connect() as a, rasa.engine.connect() as b:
        count = "SELECT count(*) FROM events WHERE sender_id = 'new'"
        assert a.exec_driver_sql(count).scalar() == b.exec_driver_sql(count).scalar()


def test_a_typed_slash_name_outside_the_domain_is_no_intent_name():
    """Why intent_name may stay plain: Rasa takes `/name` as an intent only when the domain has it."""
    from rasa.nlu.classifiers.regex_message_handler import RegexMessageHandler
    from rasa.shared.nlu.training_data.message import Message

    handler = RegexMessageHandler()
    typed, button = handler.process([Message(data={"text": "/Ann_Smith_4539"}), Message(data={"text": "/greet"})], DOMAIN)
    assert (typed.get("intent") or {}).get("name") is None
    assert button.get("intent")["name"] == "greet"


# ------------------------------------------------------------------ the bounded tracker
WINDOW_DOMAIN = Domain.from_yaml(
    """
version: "3.1"
intents: [greet, lost_card]
slots:
  card_digits:
    type: text
    mappings: [{type: custom}]
  requested_slot:
    type: text
    influence_conversation: false
    mappings: [{type: custom}]
forms:
  freeze_form:
    required_slots: [card_digits]
responses:
  utter_greet: [{text: hi}]
"""
)


def session_start(tracker: DialogueStateTracker) -> None:
    from rasa.shared.core.constants import ACTION_SESSION_START_NAME

    tracker.update(ActionExecuted(ACTION_SESSION_START_NAME))
    tracker.update(SessionStarted())
    tracker.update(ActionExecuted("action_listen"))


def test_retrieved_tracker_holds_state_and_last_turns(tmp_path, key):
    """Session start, a summary of the slots and the last `window_turns` turns; the database keeps every event."""
    from bot.stores import HANDED

    ours = CachingSQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"), window_turns=5)
    rasa = SQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "rasa.db"))
    full = DialogueStateTracker("long", WINDOW_DOMAIN.slots)
    session_start(full)
    turn(full, "first")
    full.update(SlotSet("card_digits", "4321"))  # set early, long before the window
    for store in (ours, rasa):
        run(store.save(full))
    for i in range(30):  # one turn at a time, each retrieved, extended and saved, as the server does
        mine, theirs = run(ours.retrieve("long")), run(rasa.retrieve("long"))
        said = DialogueStateTracker("long", WINDOW_DOMAIN.slots)
        turn(said, f"message {i}")
        for tracker in (mine, theirs):
            for event in said.events:
                tracker.update(event)
        run(ours.save(mine))
        run(rasa.save(theirs))

    mine, theirs = run(ours.retrieve("long")), run(rasa.retrieve("long"))
    assert [e.text for e in mine.events if isinstance(e, UserUttered)] == [f"message {i}" for i in range(25, 30)]
    assert len(mine.events) < 3 + 1 + 5 * 4 + 2 < len(theirs.events)
    # Rasa's own query starts a session at its session_started (action_session_start is stamped before it).
    assert [e.type_name for e in list(mine.events)[:2]] == ["session_started", "slot"]
    assert list(mine.events)[0] == list(theirs.events)[0], "the session keeps its own start time"
    assert mine.current_slot_values() == theirs.current_slot_values() and mine.get_slot("card_digits") == "4321"
    assert mine.latest_message.text == theirs.latest_message.text == "message 29"
    assert getattr(mine, HANDED) == len(mine.events)
    # Saves wrote exactly what Rasa's store wrote, and nothing twice.
    assert [(r["type_name"], r["timestamp"]) for r in rows(ours.engine, "long")] == [
        (r["type_name"], r["timestamp"]) for r in rows(rasa.engine, "long")]
    assert dump(run(ours.retrieve_full_tracker("long"))) == dump(run(rasa.retrieve_full_tracker("long")))
    # A server that never saw the conversation (a restart, another replica) hands out the same window.
    fresh = CachingSQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"), window_turns=5)
    assert dump(run(fresh.retrieve("long")))[3:] == dump(mine)[3:]
    # window_turns: 0 is Rasa's whole session.
    whole = CachingSQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"), window_turns=0)
    assert dump(run(whole.retrieve("long"))) == dump(theirs)


def test_memory_holds_the_window_not_the_history(tmp_path, key):
    """The cache's events of a conversation stop growing with its length; what it hands out and writes do not change."""
    ours = CachingSQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"), window_turns=5)
    tracker = DialogueStateTracker("long", WINDOW_DOMAIN.slots)
    session_start(tracker)
    turn(tracker, "first")
    tracker.update(SlotSet("card_digits", "4321"))
    run(ours.save(tracker))
    held = []
    for i in range(60):
        tracker = run(ours.retrieve("long"))
        turn(tracker, f"message {i}")
        run(ours.save(tracker))
        held.append(len(ours._kept["long"].events))
    kept = ours._kept["long"]
    assert max(held[20:]) <= max(held[:20]) and len(kept.events) < 10 * 4, held
    with ours.session_scope() as session:  # what Rasa's save counts: the latest session's rows
        assert kept.stored == ours._event_query(session, "long", fetch_events_from_all_sessions=False).count()
    assert kept.dropped > 0
    mine = run(ours.retrieve("long"))
    assert [e.text for e in mine.events if isinstance(e, UserUttered)] == [f"message {i}" for i in range(55, 60)]
    assert mine.get_slot("card_digits") == "4321"
    assert [e.type_name for e in list(mine.events)[:2]] == ["session_started", "slot"]
    # The same as a server that never saw the conversation hands out.
    fresh = CachingSQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"), window_turns=5)
    assert dump(run(fresh.retrieve("long")))[3:] == dump(mine)[3:]


def test_window_never_starts_inside_a_form(tmp_path, key):
    """While a loop is active the window grows back to where the form started; after it, it closes up."""
    from rasa.shared.core.events import ActiveLoop

    ours = CachingSQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "ours.db"), window_turns=3)
    tracker = DialogueStateTracker("form", WINDOW_DOMAIN.slots)
    session_start(tracker)
    turn(tracker, "hello")
    tracker.update(UserUttered("lost my card", {"name": "lost_card", "confidence": 1.0}))
    tracker.update(ActionExecuted("freeze_form"))
    tracker.update(ActiveLoop("freeze_form"))
    tracker.update(SlotSet("requested_slot", "card_digits"))
    tracker.update(ActionExecuted("action_listen"))
    run(ours.save(tracker))
    for i in range(8):  # the customer talks about other things while the form waits
        tracker = run(ours.retrieve("form"))
        turn(tracker, f"aside {i}")
        run(ours.save(tracker))
    mine = run(ours.retrieve("form"))
    assert mine.active_loop_name == "freeze_form"
    assert any(isinstance(e, UserUttered) and e.text == "lost my card" for e in mine.events)
    # The form ends; once three turns follow it, the window closes up to them.
    mine.update(ActionExecuted("freeze_form"))
    mine.update(ActiveLoop(None))
    mine.update(SlotSet("requested_slot", None))
    mine.update(ActionExecuted("action_listen"))
    run(ours.save(mine))
    for text in ("thanks", "one more", "bye"):
        tracker = run(ours.retrieve("form"))
        turn(tracker, text)
        run(ours.save(tracker))
    after = run(ours.retrieve("form"))
    assert [e.text for e in after.events if isinstance(e, UserUttered)] == ["thanks", "one more", "bye"]
    assert after.active_loop_name is None and after.get_slot("requested_slot") is None


def test_the_default_window_is_ten_turns(tmp_path):
    """What docs/architecture.md promises: the last 10 turns, unless the endpoint says otherwise."""
    store = CachingSQLTrackerStore(WINDOW_DOMAIN, dialect="sqlite", db=str(tmp_path / "d.db"))
    assert store.window_turns == 10


def test_the_version_check_is_two_lookups_at_the_ends_of_an_index(tmp_path):
    """Its cost must not grow with the conversation: count(*) visited every row (5.6 ms at 2,400 events on PostgreSQL)."""
    store = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"))
    with store.engine.connect() as conn:
        plan = [row[-1] for row in conn.execute(sa.text("EXPLAIN QUERY PLAN " + store._version_sql.text), {"sender_id": "a"})]
        after = [row[-1] for row in conn.execute(sa.text("EXPLAIN QUERY PLAN " + store._after_save_sql.text),
                                                 {"sender_id": "a", "since": 3})]
    searches = [p for p in plan if p.startswith("SEARCH")]
    assert len(searches) == 2 and all("INDEX ix_events_sender_id_id (sender_id=?)" in p for p in searches)
    # After a save: the same two ends, and the rows past the old end counted over a range of the index.
    assert [p for p in after if p.startswith("SEARCH")][:2] == searches
    assert not any(p.startswith("SCAN events") for p in plan + after)
    assert any("(sender_id=? AND id>?)" in p for p in after)
    # A second store on the same database (another replica) finds the index there and starts.
    CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"))


def test_the_retention_worker_dropping_a_conversations_oldest_rows_is_seen(tmp_path, key):
    db = str(tmp_path / "tracker.db")
    store = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db, window_turns=0)
    tracker = DialogueStateTracker("c9", DOMAIN.slots)
    turn(tracker, "an old question")
    turn(tracker, "a newer one")
    run(store.save(tracker))
    assert len(run(store.retrieve("c9")).events) == 8
    hits, misses = store.hits, store.misses
    with sa.create_engine(f"sqlite:///{db}").begin() as conn:  # what the retention worker does: oldest first
        conn.execute(sa.text("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE sender_id = 'c9' ORDER BY id LIMIT 4)"))
    seen = run(store.retrieve("c9"))
    assert store.misses == misses + 1 and store.hits == hits, "read again, not served from memory"
    fresh = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db, window_turns=0)
    assert dump(seen) == dump(run(fresh.retrieve("c9"))), "what the database holds now"
    assert [e.text for e in seen.events if isinstance(e, UserUttered)] == ["a newer one"]


def test_on_postgresql_the_store_adds_its_index_and_the_version_check_uses_it(postgres):  # noqa: F811
    import uuid

    url = sa.engine.make_url(postgres.create_database(f"t_{uuid.uuid4().hex[:12]}"))
    kwargs = dict(dialect="postgresql", host=url.host, port=url.port, db=url.database, username=url.username,
                  password=url.password)
    store = CachingSQLTrackerStore(DOMAIN, **kwargs)
    CachingSQLTrackerStore(DOMAIN, **kwargs)  # a second replica starting on the same database
    assert "ix_events_sender_id_id" in {i["name"] for i in sa.inspect(store.engine).get_indexes("events")}
    tracker = DialogueStateTracker("pg-1", DOMAIN.slots)
    turn(tracker, "hello")
    run(store.save(tracker))
    assert [e.text for e in run(store.retrieve("pg-1")).events if isinstance(e, UserUttered)] == ["hello"]
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")  # a table this small would be scanned whatever the indexes
        plan = "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + store._version_sql.text), {"sender_id": "pg-1"}))
    assert plan.count("Index Only Scan") == 2 and "ix_events_sender_id_id" in plan and "Limit" in plan


def test_the_store_benchmark_runs_on_postgresql(postgres):  # noqa: F811
    """On a database of its own for each run."""
    from bot.bench_stores import bench

    results = bench(turns=2, repeats=1, postgres=postgres)
    assert set(results) == {"off", "on"} and all(f["save"] > 0 and f["retrieve_hit"] > 0 for f in results.values())


def test_the_store_benchmark_command_starts_its_own_postgresql(capsys):
    """`python -m bot.bench_stores --postgres`, as docs/benchmarks.md runs it."""
    from bot.bench_stores import main

    assert main(["--postgres", "--turns", "2"]) == 0
    printed = capsys.readouterr().out
    assert "PostgreSQL, best of 3" in printed and "no key" in printed and "with key" in printed


def test_a_save_alone_keeps_its_copy_and_a_write_by_another_replica_in_between_is_seen(tmp_path):
    """After a save alone the kept copy is extended; after another replica wrote in between, it is read again."""
    db = str(tmp_path / "tracker.db")
    store = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db, window_turns=0)
    other = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db, window_turns=0)
    tracker = DialogueStateTracker("r1", DOMAIN.slots)
    turn(tracker, "first")
    run(store.save(tracker))
    mine = run(store.retrieve("r1"))
    hits = store.hits
    turn(mine, "second")
    run(store.save(mine))
    again = run(store.retrieve("r1"))
    assert store.hits == hits + 1, "alone: the kept copy was extended, not read again"
    theirs = run(other.retrieve("r1"))
    turn(theirs, "from the other replica")
    run(other.save(theirs))
    turn(again, "third")
    misses = store.misses
    run(store.save(again))  # the other replica's rows lie past the old end too: not alone
    seen = run(store.retrieve("r1"))
    assert store.misses == misses + 1, "read again from the database"
    assert [e.text for e in seen.events if isinstance(e, UserUttered)] == ["first", "second", "from the other replica", "third"]
