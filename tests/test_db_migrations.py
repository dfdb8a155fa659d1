"""Schema migrations through Alembic (core/db.py, core/migrations/) on SQLite.

- a fresh database reaches the head revision with exactly the schema the
  hand-written runner before Alembic made (its DDL, frozen below as SQLite
  printed it at v8), and the tables `core.db` declares agree with it;
- a database made by that runner (its ``schema_version`` table, at v8 or
  part-way at v5) is stamped at the matching revision and upgraded, rows intact;
- a second upgrade changes nothing; downgrading to nothing and back works;
- processes opening one fresh SQLite file together migrate it once.
The PostgreSQL side is tests/test_db_postgres.py.
"""
from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core import db
from tests.concurrent_start import open_together

# What the runner before Alembic left in a SQLite file at v8 (sqlite_master, in creation
# order), grouped by the version that created it (0: its own version table).
LEGACY_SQLITE_DDL = {
    0: [
        'CREATE TABLE schema_version (\n\tversion INTEGER NOT NULL, \n\tapplied_at FLOAT NOT NULL, \n\tPRIMARY KEY (version)\n)',
    ],
    1: [
        'CREATE TABLE customers (\n\tid VARCHAR(128) NOT NULL, \n\tsegment VARCHAR(64), \n\tage_band VARCHAR(32), \n\tattributes JSON, \n\tsuggestions_opt_out BOOLEAN NOT NULL, \n\tsynthetic BOOLEAN NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
        'CREATE TABLE items (\n\tid VARCHAR(128) NOT NULL, \n\tkind VARCHAR(16) NOT NULL, \n\ttitle VARCHAR(256) NOT NULL, \n\tdescription TEXT, \n\ttags JSON, \n\turl VARCHAR(512), \n\tactive BOOLEAN NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
        'CREATE TABLE interactions (\n\tid INTEGER NOT NULL, \n\tcustomer_id VARCHAR(128) NOT NULL, \n\titem_id VARCHAR(128), \n\tkind VARCHAR(32) NOT NULL, \n\ttopic VARCHAR(128), \n\tweight FLOAT NOT NULL, \n\tconversation_id VARCHAR(128), \n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
        'CREATE INDEX ix_interactions_ts ON interactions (ts)',
        'CREATE INDEX ix_interactions_item_id ON interactions (item_id)',
        'CREATE INDEX ix_interactions_customer_id ON interactions (customer_id)',
        'CREATE TABLE answer_ratings (\n\tid INTEGER NOT NULL, \n\tanswer_id VARCHAR(128) NOT NULL, \n\t"query" TEXT NOT NULL, \n\trating INTEGER NOT NULL, \n\tcustomer_id VARCHAR(128), \n\tconversation_id VARCHAR(128), \n\tsource VARCHAR(32), \n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
        'CREATE INDEX ix_answer_ratings_answer_id ON answer_ratings (answer_id)',
        'CREATE TABLE handoffs (\n\tid INTEGER NOT NULL, \n\tconversation_id VARCHAR(128) NOT NULL, \n\tcustomer_id VARCHAR(128), \n\tchannel VARCHAR(32), \n\treason VARCHAR(64) NOT NULL, \n\tstatus VARCHAR(16) NOT NULL, \n\tagent VARCHAR(128), \n\tsummary TEXT, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
        'CREATE INDEX ix_handoffs_conversation_id ON handoffs (conversation_id)',
        'CREATE TABLE review_queue (\n\tid INTEGER NOT NULL, \n\tconversation_id VARCHAR(128), \n\ttext TEXT NOT NULL, \n\treason VARCHAR(32) NOT NULL, \n\tpredicted_intent VARCHAR(128), \n\tconfidence FLOAT, \n\tstatus VARCHAR(16) NOT NULL, \n\tassigned_intent VARCHAR(128), \n\tanswer TEXT, \n\tcreated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
    ],
    2: [
        'CREATE TABLE identities (\n\tconversation_id VARCHAR(192) NOT NULL, \n\tcustomer_id VARCHAR(128) NOT NULL, \n\tchannel VARCHAR(32) NOT NULL, \n\tverified_by VARCHAR(64) NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tPRIMARY KEY (conversation_id)\n)',
        'CREATE INDEX ix_identities_customer_id ON identities (customer_id)',
        'CREATE TABLE api_callers (\n\tid INTEGER NOT NULL, \n\tname VARCHAR(64) NOT NULL, \n\ttoken_sha256 VARCHAR(64) NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\trevoked_at FLOAT, \n\tPRIMARY KEY (id), \n\tUNIQUE (token_sha256)\n)',
        'CREATE INDEX ix_api_callers_name ON api_callers (name)',
    ],
    3: [
        'CREATE TABLE staff_accounts (\n\tusername VARCHAR(128) NOT NULL, \n\tdisplay_name VARCHAR(128) NOT NULL, \n\trole VARCHAR(16) NOT NULL, \n\tpassword_hash VARCHAR(256), \n\tdisabled BOOLEAN NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tpassword_changed_at FLOAT, \n\tPRIMARY KEY (username)\n)',
        'CREATE TABLE staff_sessions (\n\tid_hash VARCHAR(64) NOT NULL, \n\tusername VARCHAR(128) NOT NULL, \n\tcsrf_token VARCHAR(64) NOT NULL, \n\tmethod VARCHAR(16) NOT NULL, \n\tclient VARCHAR(64), \n\tcreated_at FLOAT NOT NULL, \n\tlast_seen FLOAT NOT NULL, \n\texpires_at FLOAT NOT NULL, \n\trevoked_at FLOAT, \n\tPRIMARY KEY (id_hash)\n)',
        'CREATE INDEX ix_staff_sessions_username ON staff_sessions (username)',
        'CREATE TABLE signin_throttle (\n\t"key" VARCHAR(200) NOT NULL, \n\tfailures INTEGER NOT NULL, \n\tlocked_until FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY ("key")\n)',
        'CREATE TABLE audit_log (\n\tid INTEGER NOT NULL, \n\tts FLOAT NOT NULL, \n\tactor VARCHAR(128) NOT NULL, \n\taction VARCHAR(64) NOT NULL, \n\ttarget VARCHAR(256), \n\tclient VARCHAR(64), \n\tdetail JSON, \n\tPRIMARY KEY (id)\n)',
        'CREATE INDEX ix_audit_log_ts ON audit_log (ts)',
        'CREATE INDEX ix_audit_log_actor ON audit_log (actor)',
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ],
    4: [
        'CREATE TABLE erasure_requests (\n\tid INTEGER NOT NULL, \n\tcustomer_id VARCHAR(128) NOT NULL, \n\topen_key VARCHAR(128), \n\trequested_at FLOAT NOT NULL, \n\trequested_via VARCHAR(256), \n\tstatus VARCHAR(16) NOT NULL, \n\tattempts INTEGER NOT NULL, \n\tlast_error TEXT, \n\tnext_attempt_at FLOAT NOT NULL, \n\tclaimed_by VARCHAR(128), \n\tlease_until FLOAT, \n\tfinished_at FLOAT, \n\tremoved JSON, \n\tPRIMARY KEY (id), \n\tUNIQUE (open_key)\n)',
        'CREATE INDEX ix_erasure_requests_customer_id ON erasure_requests (customer_id)',
        'CREATE INDEX ix_erasure_requests_next_attempt_at ON erasure_requests (next_attempt_at)',
        'CREATE TABLE data_exports (\n\ttoken_hash VARCHAR(64) NOT NULL, \n\tcustomer_id VARCHAR(128) NOT NULL, \n\tconversation_id VARCHAR(256), \n\tcontent TEXT NOT NULL, \n\tpath VARCHAR(512), \n\tcreated_at FLOAT NOT NULL, \n\texpires_at FLOAT NOT NULL, \n\tPRIMARY KEY (token_hash)\n)',
        'CREATE INDEX ix_data_exports_customer_id ON data_exports (customer_id)',
    ],
    5: [
        'CREATE TABLE message_sentiment (\n\tid INTEGER NOT NULL, \n\tconversation_id VARCHAR(192) NOT NULL, \n\tmessage_id VARCHAR(64), \n\tlabel VARCHAR(16) NOT NULL, \n\tconfidence FLOAT NOT NULL, \n\tnegative FLOAT NOT NULL, \n\treason VARCHAR(64), \n\tscore FLOAT, \n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tCONSTRAINT uq_message_sentiment UNIQUE (conversation_id, message_id)\n)',
        'CREATE INDEX ix_message_sentiment_ts ON message_sentiment (ts)',
        'CREATE INDEX ix_message_sentiment_conversation_id ON message_sentiment (conversation_id)',
    ],
    6: [
        'CREATE TABLE satisfaction (\n\tid INTEGER NOT NULL, \n\tconversation_id VARCHAR(192) NOT NULL, \n\tcustomer_id VARCHAR(128), \n\tscore INTEGER NOT NULL, \n\tintent VARCHAR(128), \n\thandled_by VARCHAR(16) NOT NULL, \n\tsegment VARCHAR(64), \n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tUNIQUE (conversation_id)\n)',
        'CREATE INDEX ix_satisfaction_customer_id ON satisfaction (customer_id)',
        'CREATE INDEX ix_satisfaction_ts ON satisfaction (ts)',
    ],
    7: [
        'CREATE TABLE segment_clusters (\n\tcluster INTEGER NOT NULL, \n\tname VARCHAR(256) NOT NULL, \n\tsize INTEGER NOT NULL, \n\ttraits JSON, \n\ttrend JSON, \n\ttop_topics JSON, \n\tsilhouette FLOAT, \n\tcomputed_at FLOAT NOT NULL, \n\tPRIMARY KEY (cluster)\n)',
        'CREATE TABLE segment_members (\n\tcustomer_id VARCHAR(128) NOT NULL, \n\tcluster INTEGER NOT NULL, \n\tcomputed_at FLOAT NOT NULL, \n\tPRIMARY KEY (customer_id)\n)',
        'CREATE INDEX ix_segment_members_cluster ON segment_members (cluster)',
    ],
    8: [
        'CREATE TABLE assist_replies (\n\tid INTEGER NOT NULL, \n\tconversation_id VARCHAR(192) NOT NULL, \n\tagent VARCHAR(128) NOT NULL, \n\tdraft_source VARCHAR(32), \n\tdraft_id VARCHAR(128), \n\tdraft_text TEXT, \n\tsent_text TEXT NOT NULL, \n\tsimilarity FLOAT, \n\tbest_similarity FLOAT, \n\treview_item INTEGER, \n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
        'CREATE INDEX ix_assist_replies_ts ON assist_replies (ts)',
        'CREATE INDEX ix_assist_replies_conversation_id ON assist_replies (conversation_id)',
    ],
}


# What the Alembic revisions after the old runner add (0009: one open handoff per conversation, taken_at).
ALEMBIC_SQLITE_DDL = [
    "CREATE UNIQUE INDEX uq_handoffs_open_conversation ON handoffs (conversation_id) WHERE status IN ('waiting', 'active')",
    # 0010: experiments
    "CREATE TABLE experiment_assignments (\n\texperiment VARCHAR(64) NOT NULL, \n\tcustomer_id VARCHAR(128) NOT NULL, "
    "\n\tarm VARCHAR(64) NOT NULL, \n\tassigned_at FLOAT NOT NULL, \n\tPRIMARY KEY (experiment, customer_id)\n)",
    "CREATE TABLE experiment_exposures (\n\tid INTEGER NOT NULL, \n\texperiment VARCHAR(64) NOT NULL, "
    "\n\tarm VARCHAR(64) NOT NULL, \n\tcustomer_id VARCHAR(128) NOT NULL, \n\tconversation_id VARCHAR(192), "
    "\n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_experiment_exposures_experiment ON experiment_exposures (experiment)",
    "CREATE INDEX ix_experiment_exposures_customer_id ON experiment_exposures (customer_id)",
    "CREATE INDEX ix_experiment_exposures_ts ON experiment_exposures (ts)",
]
# 0009 also adds handoffs.taken_at; SQLite writes the new column into the table's stored DDL.
_HANDOFFS_V8 = next(sql for sql in LEGACY_SQLITE_DDL[1] if sql.startswith("CREATE TABLE handoffs"))
_HANDOFFS_AT_HEAD = _HANDOFFS_V8.replace("updated_at FLOAT NOT NULL, ", "updated_at FLOAT NOT NULL, taken_at FLOAT, ")
SCHEMA_AT_HEAD = ({sql for number, statements in LEGACY_SQLITE_DDL.items() if number for sql in statements}
                  - {_HANDOFFS_V8}) | {_HANDOFFS_AT_HEAD} | set(ALEMBIC_SQLITE_DDL)


def _sqlite_url(tmp_path, name: str = "assistant.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _schema(path) -> set:
    """The DDL SQLite keeps for every table, index and trigger, but Alembic's own table."""
    with sqlite3.connect(str(path)) as conn:
        return {sql for (name, sql) in conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
                if name != "alembic_version"}


def _legacy_database(path, version: int) -> None:
    """A file as the runner before Alembic left it at `version`, with a row in several tables."""
    with sqlite3.connect(str(path)) as conn:
        for number in range(0, version + 1):
            for statement in LEGACY_SQLITE_DDL[number]:
                conn.execute(statement)
        conn.executemany("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                         [(number, 1700000000.0 + number) for number in range(1, version + 1)])
        conn.execute("INSERT INTO customers (id, segment, attributes, suggestions_opt_out, synthetic, created_at) "
                     "VALUES ('c-1', 'student', '{\"city\": \"Zürich\"}', 1, 0, 1700000000.0)")
        # Two open handoffs of one conversation: what the race before 0009 could leave (the newest stays open).
        conn.execute("INSERT INTO handoffs (conversation_id, customer_id, reason, status, created_at, updated_at) "
                     "VALUES ('conv-1', 'c-1', 'asked', 'waiting', 1700000000.0, 1700000000.0)")
        conn.execute("INSERT INTO handoffs (conversation_id, customer_id, reason, status, created_at, updated_at) "
                     "VALUES ('conv-1', 'c-1', 'frustration', 'waiting', 1700000000.5, 1700000000.5)")
        conn.execute("INSERT INTO audit_log (ts, actor, action, target) VALUES (1700000000.0, 'admin', 'signin', 'x')")
        if version >= 5:
            conn.execute("INSERT INTO message_sentiment (conversation_id, message_id, label, confidence, negative, ts) "
                         "VALUES ('conv-1', 'm-1', 'negative', 0.9, 0.9, 1700000000.0)")


def _versions(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def test_a_fresh_database_reaches_head_with_the_schema_the_old_runner_made(tmp_path):
    engine = db.connect(_sqlite_url(tmp_path))

    assert db.head_revision() == "0010"
    assert _versions(engine) == ["0010"]
    assert _schema(tmp_path / "assistant.db") == SCHEMA_AT_HEAD
    assert not sa.inspect(engine).has_table("schema_version")


def test_the_declared_tables_agree_with_the_revisions(tmp_path):
    engine = db.connect(_sqlite_url(tmp_path))
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert differences == []


def test_upgrading_twice_changes_nothing(tmp_path):
    engine = db.connect(_sqlite_url(tmp_path))
    with engine.begin() as conn:
        conn.execute(db.customers.insert().values(id="c-2", attributes={"a": 1}))
    before = _schema(tmp_path / "assistant.db")

    assert db.migrate(engine) == 10
    with engine.begin() as conn:  # Alembic's own command, too
        command.upgrade(db.alembic_config(conn), "head")
    assert _versions(engine) == ["0010"]
    assert _schema(tmp_path / "assistant.db") == before
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.customers.c.attributes)).scalars().all() == [{"a": 1}]


@pytest.mark.parametrize("version", [8, 5])
def test_a_database_made_by_the_old_runner_is_stamped_and_upgraded_with_its_rows(tmp_path, version):
    path = tmp_path / "legacy.db"
    _legacy_database(path, version)

    engine = db.connect(f"sqlite:///{path}")

    assert _versions(engine) == ["0010"]
    assert not sa.inspect(engine).has_table("schema_version")  # one version record: Alembic's
    assert _schema(path) == SCHEMA_AT_HEAD
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.customers.c.id, db.customers.c.attributes)).all() == [("c-1", {"city": "Zürich"})]
        assert conn.execute(sa.select(db.handoffs.c.reason, db.handoffs.c.status).order_by(db.handoffs.c.id)).all() == [
            ("asked", "closed"), ("frustration", "waiting")]
        assert conn.execute(sa.select(db.audit_log.c.actor)).scalars().all() == ["admin"]
        assert conn.execute(sa.select(sa.func.count()).select_from(db.message_sentiment)).scalar() == (1 if version >= 5 else 0)
        assert conn.execute(sa.select(sa.func.count()).select_from(db.assist_replies)).scalar() == 0
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):  # the v3 trigger survived
        with engine.begin() as conn:
            conn.execute(db.audit_log.delete())


def test_downgrading_to_nothing_and_back(tmp_path):
    engine = db.connect(_sqlite_url(tmp_path))
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "base")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    assert db.migrate(engine) == 10
    assert set(sa.inspect(engine).get_table_names()) == set(db.metadata.tables) | {"alembic_version"}


def test_processes_opening_one_fresh_sqlite_file_together_migrate_it_once(tmp_path):
    """Rasa and the action server share the SQLite file and start at the same time."""
    url = _sqlite_url(tmp_path)
    assert open_together(url, 3) == ["ok"] * 3
    assert _versions(db.connect(url)) == ["0010"]


def test_a_new_revision_is_written_from_the_template_and_applied(tmp_path):
    """How a later change adds a revision (docs/deployment.md), on a copy of core/migrations."""
    import shutil

    from alembic.script import ScriptDirectory

    scripts = tmp_path / "migrations"
    shutil.copytree(db.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    config = db.alembic_config()
    config.set_main_option("script_location", str(scripts))
    command.revision(config, "example change", rev_id="0011")
    [written] = (scripts / "versions").glob("0011_*.py")
    written.write_text(written.read_text().replace(
        "def upgrade() -> None:\n    pass", "def upgrade() -> None:\n    op.add_column('items', sa.Column('note', sa.Text))"))
    assert ScriptDirectory.from_config(config).get_current_head() == "0011"

    engine = db.connect(_sqlite_url(tmp_path))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("items")}
    assert _versions(engine) == ["0011"]
