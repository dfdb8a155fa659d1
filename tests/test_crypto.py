"""Encryption at rest: round trip, legacy plaintext, wrong keys refused clearly, key rotation."""
import asyncio
import subprocess
import sys

import pytest
import sqlalchemy as sa
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.stores import CachingSQLTrackerStore
from core import crypto, db
from tests.e2e.services import postgres  # noqa: F401  (a fixture)

DOMAIN = Domain.from_yaml('version: "3.1"\nintents: [greet]\nresponses:\n  utter_greet: [{text: hi}]\n')
KEY_A, KEY_B = crypto.new_key(), crypto.new_key()


@pytest.fixture
def key(monkeypatch):
    """Set ASSISTANT_ENCRYPTION_KEY for the rest of the test: key("A,B"), key(None)."""

    def use(value):
        if value is None:
            monkeypatch.delenv(crypto.KEY_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(crypto.KEY_VARIABLE, value)

    use(None)
    return use


def raw(engine, sql):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def write_project_rows(url):
    engine = db.connect(url)
    with engine.begin() as conn:
        conn.execute(db.customers.insert().values(id="c1", attributes={"name": "Ann Smith", "city": "Leeds"}))
        conn.execute(db.answer_ratings.insert().values(answer_id="a1", query="why was Ann charged twice?", rating=-1))
        conn.execute(db.handoffs.insert().values(conversation_id="web:c1", reason="asked", summary="Ann wants a refund"))
        conn.execute(db.review_queue.insert().values(text="my card was swallowed at Leeds", reason="fallback",
                                                     answer="call us on the number on your card"))
    return engine


def read_project_rows(engine):
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(db.customers.c.attributes)).scalar(),
            conn.execute(sa.select(db.answer_ratings.c.query)).scalar(),
            conn.execute(sa.select(db.handoffs.c.summary)).scalar(),
            tuple(conn.execute(sa.select(db.review_queue.c.text, db.review_queue.c.answer)).one()),
        )


EXPECTED = ({"name": "Ann Smith", "city": "Leeds"}, "why was Ann charged twice?", "Ann wants a refund",
            ("my card was swallowed at Leeds", "call us on the number on your card"))


def save_turn(db_path, sender, text):
    store = CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db_path)
    tracker = asyncio.run(store.retrieve(sender)) or DialogueStateTracker(sender, DOMAIN.slots)
    tracker.update(UserUttered(text, {"name": "greet", "confidence": 1.0}))
    tracker.update(ActionExecuted("utter_greet"))
    tracker.update(BotUttered("hi"))
    tracker.update(ActionExecuted("action_listen"))
    asyncio.run(store.save(tracker))


def user_texts(db_path, sender):
    tracker = asyncio.run(CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=db_path).retrieve_full_tracker(sender))
    return [e.text for e in tracker.events if isinstance(e, UserUttered)]


def test_off_by_default_and_a_round_trip_with_a_key(key):
    assert not crypto.enabled() and crypto.encrypt_text("card 4539") == "card 4539"
    key(KEY_A)
    token = crypto.encrypt_text("card 4539 1488 0343 6467")
    assert crypto.is_encrypted(token) and "4539" not in token
    assert crypto.encrypt_text("card 4539 1488 0343 6467") != token, "randomised: equal texts do not show"
    assert crypto.decrypt_text(token) == "card 4539 1488 0343 6467"
    assert crypto.decrypt_text("written before the key") == "written before the key"
    assert crypto.encrypt_text(None) is None and crypto.decrypt_text(None) is None


def test_a_malformed_key_stops_startup_naming_the_variable_never_the_key(key, tmp_path):
    key(f"{KEY_A},not-a-fernet-key-but-secret")
    with pytest.raises(crypto.EncryptionKeyError) as caught:
        crypto.check_key()
    assert crypto.KEY_VARIABLE in str(caught.value) and "key 2 of 2" in str(caught.value)
    assert "not-a-fernet-key" not in str(caught.value) and KEY_A not in str(caught.value)
    with pytest.raises(crypto.EncryptionKeyError):
        db.connect(f"sqlite:///{tmp_path / 'project.db'}")
    with pytest.raises(crypto.EncryptionKeyError):
        CachingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"))
    shown = subprocess.run([sys.executable, "-m", "core.crypto", "check"], capture_output=True, text=True,
                           env={crypto.KEY_VARIABLE: "secret-value", "PATH": ""})
    assert shown.returncode == 2 and crypto.KEY_VARIABLE in shown.stderr and "secret-value" not in shown.stderr
    assert "Traceback" not in shown.stderr


def test_a_value_under_a_key_not_configured_is_refused_clearly(key):
    key(KEY_A)
    token = crypto.encrypt_text("Ann Smith")
    key(KEY_B)
    with pytest.raises(crypto.EncryptionKeyError, match="does not hold"):
        crypto.decrypt_text(token)
    key(None)
    with pytest.raises(crypto.EncryptionKeyError, match="is not set"):
        crypto.decrypt_text(token)


def test_personal_columns_are_encrypted_and_legacy_plaintext_rows_still_read(key, tmp_path):
    url = f"sqlite:///{tmp_path / 'project.db'}"
    legacy = write_project_rows(url)  # no key: plaintext, as before this feature
    assert "Ann Smith" in str(raw(legacy, "SELECT attributes FROM customers"))
    key(KEY_A)
    assert read_project_rows(legacy) == EXPECTED
    with legacy.begin() as conn:
        conn.execute(db.customers.insert().values(id="c2", attributes={"name": "Bo Li"}))
        conn.execute(db.answer_ratings.insert().values(answer_id="a2", query="Bo's question", rating=1))
    stored = str(raw(legacy, "SELECT attributes FROM customers WHERE id = 'c2'")
                 + raw(legacy, "SELECT query FROM answer_ratings WHERE answer_id = 'a2'"))
    # "Bo Li" and "Bo's question" hold a space and a quote, which base64 ciphertext never does;
    # "Bo" alone turns up in random ciphertext about one run in two hundred
    assert "Bo Li" not in stored and "Bo's" not in stored and "gAAAAA" in stored
    with legacy.connect() as conn:
        assert conn.execute(sa.select(db.customers.c.attributes).where(db.customers.c.id == "c2")).scalar() == {"name": "Bo Li"}


def test_rotation_from_key_a_to_key_b(key, tmp_path, capsys):
    url, tracker_db = f"sqlite:///{tmp_path / 'project.db'}", str(tmp_path / "tracker.db")
    save_turn(tracker_db, "web:c1", "plaintext from before the key")  # legacy rows are encrypted by rotate too
    key(KEY_A)
    engine = write_project_rows(url)
    save_turn(tracker_db, "web:c1", "my sort code is 20-00-00")
    args = ["--database-url", url, "--tracker-url", f"sqlite:///{tracker_db}"]

    key(f"{KEY_B},{KEY_A}")  # step 1: the new key first, the old one kept
    assert read_project_rows(engine) == EXPECTED
    assert crypto.main(["rotate", "--batch", "2", *args]) == 0
    assert crypto.main(["status", *args]) == 0
    out = capsys.readouterr().out
    assert "nothing left to rotate" in out and "0 under older keys, 0 plaintext" in out

    key(KEY_B)  # the old key dropped: everything still reads
    assert read_project_rows(engine) == EXPECTED
    assert user_texts(tracker_db, "web:c1") == ["plaintext from before the key", "my sort code is 20-00-00"]
    tracker = sa.create_engine(f"sqlite:///{tracker_db}")
    assert all(crypto.under_first_key(d) for (d,) in raw(tracker, "SELECT data FROM events"))
    assert crypto.main(["rotate", *args]) == 0, "idempotent"
    assert "0 values re-encrypted" in capsys.readouterr().out.splitlines()[-1]

    key(KEY_A)  # and the old key alone no longer opens anything
    with pytest.raises(crypto.EncryptionKeyError):
        read_project_rows(engine)


def test_an_interrupted_rotation_resumes(key, tmp_path):
    key(KEY_A)
    url = f"sqlite:///{tmp_path / 'project.db'}"
    engine = db.connect(url)
    with engine.begin() as conn:
        for n in range(5):
            conn.execute(db.answer_ratings.insert().values(answer_id=f"a{n}", query=f"question {n}", rating=1))
    key(f"{KEY_B},{KEY_A}")

    def stop(_line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # stopped after its first batch of two
        crypto.rotate_table(engine, db.answer_ratings, ["query"], batch=2, log=stop)
    assert crypto.count_table(engine, db.answer_ratings, ["query"]) == {"plaintext": 0, "first_key": 2, "older_key": 3}
    assert crypto.rotate_table(engine, db.answer_ratings, ["query"], batch=2, log=lambda _: None) == {"rows": 5, "rewritten": 3}
    key(KEY_B)
    with engine.connect() as conn:
        assert [q for (q,) in conn.execute(sa.select(db.answer_ratings.c.query).order_by(db.answer_ratings.c.id))] == [
            f"question {n}" for n in range(5)]


def test_the_encrypted_columns_are_the_personal_ones():
    assert crypto.encrypted_columns(db.metadata).items() >= {
        "customers": ["attributes"], "answer_ratings": ["query"], "handoffs": ["summary"],
        "review_queue": ["text", "answer"],
    }.items()


def test_on_postgresql_json_and_text_columns_and_the_tracker_rotate(key, postgres):  # noqa: F811
    """The same on PostgreSQL: the JSON column stays valid JSON, Rasa's queries run on encrypted rows."""
    import uuid

    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    tracker_url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    parsed = sa.engine.make_url(tracker_url)
    key(None)
    engine = write_project_rows(url)  # legacy plaintext, then encrypted rows beside them
    key(KEY_A)
    with engine.begin() as conn:
        conn.execute(db.customers.insert().values(id="c2", attributes={"name": "Bo Li"}))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT json_typeof(attributes) FROM customers WHERE id = 'c2'")).scalar() == "string"
    store = CachingSQLTrackerStore(DOMAIN, dialect="postgresql", host=parsed.host, port=parsed.port,
                                   db=parsed.database, username=parsed.username, password=parsed.password)
    tracker = DialogueStateTracker("web:c1", DOMAIN.slots)
    tracker.update(UserUttered("my sort code is 20-00-00", {"name": "greet", "confidence": 1.0}))
    asyncio.run(store.save(tracker))
    key(f"{KEY_B},{KEY_A}")
    assert crypto.main(["rotate", "--database-url", url, "--tracker-url", tracker_url]) == 0
    key(KEY_B)
    assert read_project_rows(engine) == EXPECTED
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.customers.c.attributes).where(db.customers.c.id == "c2")).scalar() == {"name": "Bo Li"}
    fresh = CachingSQLTrackerStore(DOMAIN, dialect="postgresql", host=parsed.host, port=parsed.port,
                                   db=parsed.database, username=parsed.username, password=parsed.password)
    assert [e.text for e in asyncio.run(fresh.retrieve("web:c1")).events if isinstance(e, UserUttered)] == [
        "my sort code is 20-00-00"]


def test_analytics_reads_an_encrypted_tracker_store(key, tmp_path):
    from bot.insight import analytics

    tracker_db = str(tmp_path / "tracker.db")
    save_turn(tracker_db, "web:c1", "written before the key")
    key(KEY_A)
    save_turn(tracker_db, "web:c1", "written with the key")
    events = analytics.read_events(f"sqlite:///{tracker_db}", 0, 2e10)
    assert [e["data"]["text"] for e in events if e["type_name"] == "user"] == ["written before the key", "written with the key"]
    key(KEY_B)
    with pytest.raises(analytics.AnalyticsError, match=crypto.KEY_VARIABLE):
        analytics.read_events(f"sqlite:///{tracker_db}", 0, 2e10)


def test_the_benchmark_runs_and_leaves_the_key_as_it_was(key):
    key(KEY_A)
    from bot.bench_stores import bench

    results = bench(turns=2, repeats=1)
    assert set(results) == {"off", "on"} and all(f["total"] > 0 for f in results.values())
    assert crypto.encrypt_text("x") != "x" and crypto.decrypt_text(crypto.encrypt_text("x")) == "x"


def test_a_rotation_batch_on_sqlite_holds_the_write_lock_from_its_read(key, tmp_path):
    """So a row written between the batch's read and its write cannot get its old value back."""
    url = f"sqlite:///{tmp_path / 'project.db'}"
    db.connect(url)
    other = sa.create_engine(url, connect_args={"timeout": 0.1})
    with crypto._one_writer_per_batch(db.connect(url)).begin() as conn:
        conn.execute(sa.select(db.answer_ratings.c.id)).all()
        with pytest.raises(sa.exc.OperationalError, match="locked"), other.begin() as writer:
            writer.execute(db.answer_ratings.insert().values(answer_id="a", query="q", rating=1))
