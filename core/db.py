"""The one SQL layer for the project's own data.

SQLite by default (embedded, nothing to install); PostgreSQL when
``ASSISTANT_DATABASE_URL`` is a ``postgresql://`` URL. The schema is created
and upgraded by Alembic revisions (``core/migrations/versions/0001_*.py`` ...,
recorded in Alembic's ``alembic_version`` table); every process calls
`connect()`, which applies the ones still missing (`migrate`). A database made
by the hand-written runner this replaced (its ``schema_version`` table) is
stamped at the matching revision first, then upgraded, rows untouched.

The tables below are what the code reads and writes; the revision scripts
create the same tables, columns and indexes (tests/test_db_migrations.py
checks that they agree).

Tables:
- customers: one row per customer (id, segment, age band, JSON attributes,
  whether they opted out of suggestions).
- items: products, services and help articles that can be suggested.
- interactions: what a customer did with an item or talked about (view,
  purchase, click, dismiss, topic), with time and weight.
- answer_ratings: thumbs up/down on an answer given for a question.
- handoffs: conversations handed to a human agent.
- satisfaction: the end-of-conversation 1-5 rating (CSAT), one per conversation.
- review_queue: messages kept for a human to review (low confidence,
  fallback, thumbs-down, handoff), redacted.

Personal columns (customers' words and attributes) are `EncryptedText` /
`EncryptedJSON` (core/crypto.py): encrypted at rest when
``ASSISTANT_ENCRYPTION_KEY`` is set, plaintext otherwise, legacy plaintext
rows readable either way. Ids, names from the domain, times and counts stay
plain (queries need them). A WHERE on an encrypted column never matches.
"""
from __future__ import annotations

import contextlib
import fcntl  # POSIX: the lock file of a SQLite database while it is migrated
import functools
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from core.crypto import EncryptedJSON, EncryptedText, check_key

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("segment", sa.String(64)),
    sa.Column("age_band", sa.String(32)),
    sa.Column("attributes", EncryptedJSON, default=dict),  # personal: encrypted at rest
    sa.Column("suggestions_opt_out", sa.Boolean, nullable=False, default=False),
    sa.Column("synthetic", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # product | service | article
    sa.Column("title", sa.String(256), nullable=False),
    sa.Column("description", sa.Text, default=""),
    sa.Column("tags", sa.JSON, default=list),
    sa.Column("url", sa.String(512)),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
)

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("item_id", sa.String(128), index=True),  # NULL for a topic
    sa.Column("kind", sa.String(32), nullable=False),  # view|purchase|click|dismiss|topic|...
    sa.Column("topic", sa.String(128)),
    sa.Column("weight", sa.Float, nullable=False, default=1.0),
    sa.Column("conversation_id", sa.String(128)),
    sa.Column("ts", sa.Float, nullable=False, default=time.time, index=True),
)

answer_ratings = sa.Table(
    "answer_ratings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("answer_id", sa.String(128), nullable=False, index=True),
    sa.Column("query", EncryptedText, nullable=False),  # the customer's words: encrypted at rest
    sa.Column("rating", sa.Integer, nullable=False),  # +1 thumbs up, -1 thumbs down
    sa.Column("customer_id", sa.String(128)),
    sa.Column("conversation_id", sa.String(128)),
    sa.Column("source", sa.String(32)),  # intent | history
    sa.Column("ts", sa.Float, nullable=False, default=time.time),
)

handoffs = sa.Table(
    "handoffs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(128), nullable=False, index=True),
    sa.Column("customer_id", sa.String(128)),
    sa.Column("channel", sa.String(32)),
    sa.Column("reason", sa.String(64), nullable=False),  # asked | fallbacks | frustration
    sa.Column("status", sa.String(16), nullable=False, default="waiting"),  # waiting|active|closed
    sa.Column("agent", sa.String(128)),
    sa.Column("summary", EncryptedText),  # what the customer said: encrypted at rest
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
    sa.Column("updated_at", sa.Float, nullable=False, default=time.time),
    sa.Column("taken_at", sa.Float),  # when an agent first took it (the queue's expected wait)
    # One open handoff per conversation (migration 0009); bot/handoff/queue.py relies on it.
    sa.Index("uq_handoffs_open_conversation", "conversation_id", unique=True,
             sqlite_where=sa.text("status IN ('waiting', 'active')"),
             postgresql_where=sa.text("status IN ('waiting', 'active')")),
)

review_queue = sa.Table(
    "review_queue",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(128)),
    sa.Column("text", EncryptedText, nullable=False),  # already redacted; encrypted at rest
    sa.Column("reason", sa.String(32), nullable=False),  # low_confidence|fallback|thumbs_down|handoff
    sa.Column("predicted_intent", sa.String(128)),
    sa.Column("confidence", sa.Float),
    sa.Column("status", sa.String(16), nullable=False, default="open"),  # open|done|discarded
    sa.Column("assigned_intent", sa.String(128)),
    sa.Column("answer", EncryptedText),  # may quote the customer: encrypted at rest
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
)


# ------------------------------------------------------------------ trust (issue 13)
# Each section below is owned by one part of the work; tables are defined here (the one
# SQL layer) and created by that section's revision in core/migrations/versions/.

# --- v2: customer identity (conversation -> verified identity, REST callers) ---


identities = sa.Table(
    "identities",
    metadata,
    sa.Column("conversation_id", sa.String(192), primary_key=True),  # Rasa sender id: web:..., rest:caller:id, ...
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),  # the verified customer
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("verified_by", sa.String(64), nullable=False),  # token | anonymous | rest:<caller> | slack | telegram | demo
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
)

api_callers = sa.Table(
    "api_callers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, index=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),  # hex; the token itself is never stored
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
    sa.Column("revoked_at", sa.Float),  # NULL while the credential is valid
)



# --- v3: staff accounts, sessions, sign-in throttling, audit log ---
# Written only through bot.security.staff and bot.security.audit.

staff_accounts = sa.Table(
    "staff_accounts",
    metadata,
    sa.Column("username", sa.String(128), primary_key=True),  # lower case; an e-mail address for OIDC
    sa.Column("display_name", sa.String(128), nullable=False),  # what customers see
    sa.Column("role", sa.String(16), nullable=False),  # agent | supervisor | admin
    sa.Column("password_hash", sa.String(256)),  # argon2id; NULL: signs in through OIDC only
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
    sa.Column("updated_at", sa.Float, nullable=False, default=time.time),
    sa.Column("password_changed_at", sa.Float),
)

staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # SHA-256 of the cookie's 256-bit token
    sa.Column("username", sa.String(128), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("method", sa.String(16), nullable=False, default="password"),  # password | oidc
    sa.Column("client", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)

signin_throttle = sa.Table(
    "signin_throttle",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),  # "account:<username>" | "address:<client>"
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.Float, nullable=False, default=0.0),
    sa.Column("updated_at", sa.Float, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("actor", sa.String(128), nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(256)),
    sa.Column("client", sa.String(64)),
    sa.Column("detail", sa.JSON),
)

# The database itself refuses to change or remove audit rows, whoever asks: triggers made by
# revision 0003 (core/migrations/versions/0003_staff.py).



# --- v4: privacy (erasure requests, data exports, retention) ---


erasure_requests = sa.Table(
    "erasure_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    # The customer id while the request is open (pending|running), NULL after: one open request per customer.
    sa.Column("open_key", sa.String(128), unique=True),
    sa.Column("requested_at", sa.Float, nullable=False, default=time.time),
    sa.Column("requested_via", sa.String(256)),  # the conversation that asked (NULL: staff or a script)
    sa.Column("status", sa.String(16), nullable=False, default="pending"),  # pending|running|done|failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", sa.Float, nullable=False, default=time.time, index=True),
    sa.Column("claimed_by", sa.String(128)),  # worker (host:pid) holding it while running
    sa.Column("lease_until", sa.Float),  # a running claim older than this is taken over
    sa.Column("finished_at", sa.Float),
    sa.Column("removed", sa.JSON),  # what was removed, per store
)

data_exports = sa.Table(
    "data_exports",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 of the download token; the token is never stored
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("conversation_id", sa.String(256)),
    # The export itself: served from here, so any Rasa replica can hand it out. Encrypted at rest.
    sa.Column("content", EncryptedText, nullable=False),
    sa.Column("path", sa.String(512)),  # the copy in var/exports/ on the host that made it
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
    sa.Column("expires_at", sa.Float, nullable=False),
)



# ------------------------------------------------------------------ insight (issue 18)
# --- v5: sentiment of customer messages ---


# Sentiment of each customer message the desk reads (nlu.sentiment); written only by
# nlu.sentiment.record (the desk). No text: the message itself stays in the tracker store.
message_sentiment = sa.Table(
    "message_sentiment",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(192), nullable=False, index=True),
    sa.Column("message_id", sa.String(64)),
    sa.Column("label", sa.String(16), nullable=False),  # negative | neutral | positive
    sa.Column("confidence", sa.Float, nullable=False),  # probability of the label
    sa.Column("negative", sa.Float, nullable=False),  # probability of negative (the queue sorts on it)
    sa.Column("reason", sa.String(64)),  # reason of a negative message, when the model names one
    sa.Column("score", sa.Float),  # polarity P(positive) - P(negative), -1..1 (the customer page's trend)
    sa.Column("ts", sa.Float, nullable=False, default=time.time, index=True),
    sa.UniqueConstraint("conversation_id", "message_id", name="uq_message_sentiment"),
)



# --- v6: satisfaction ratings (CSAT) ---


# One row per conversation that answered the end-of-conversation 1-5 rating; written only
# through core.satisfaction.
satisfaction = sa.Table(
    "satisfaction",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(192), nullable=False, unique=True),
    sa.Column("customer_id", sa.String(128), index=True),  # the verified customer
    sa.Column("score", sa.Integer, nullable=False),  # 1..5
    sa.Column("intent", sa.String(128)),  # what the conversation was about (its latest service intent)
    sa.Column("handled_by", sa.String(16), nullable=False, default="assistant"),  # assistant | person
    sa.Column("segment", sa.String(64)),  # the customer's segment when they rated, if known
    sa.Column("ts", sa.Float, nullable=False, default=time.time, index=True),
)



# --- v7: customer segments ---


# Written only by `python -m training.segments` (each run replaces the previous one).

segment_clusters = sa.Table(
    "segment_clusters",
    metadata,
    sa.Column("cluster", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),  # its top traits, e.g. "asks about exchange_rate · recent"
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("traits", sa.JSON),  # [[feature, z-score of the centre], ...] strongest first
    sa.Column("trend", sa.JSON),  # [[week start (epoch s), interactions], ...]
    sa.Column("top_topics", sa.JSON),  # [[topic, count], ...]
    sa.Column("silhouette", sa.Float),  # of the whole run
    sa.Column("computed_at", sa.Float, nullable=False),
)

segment_members = sa.Table(
    "segment_members",
    metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("cluster", sa.Integer, nullable=False, index=True),
    sa.Column("computed_at", sa.Float, nullable=False),
)


# --- v8: agent assist (drafts offered, what the agent sent) ---
# Written only through bot.channels.assist.log_reply.

assist_replies = sa.Table(
    "assist_replies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(192), nullable=False, index=True),
    sa.Column("agent", sa.String(128), nullable=False),  # the staff account's username
    sa.Column("draft_source", sa.String(32)),  # answer_index | domain; NULL: written from scratch
    sa.Column("draft_id", sa.String(128)),  # the index entry's id or the response's name
    sa.Column("draft_text", EncryptedText),  # the draft as offered; encrypted at rest
    sa.Column("sent_text", EncryptedText, nullable=False),  # what was sent, redacted; encrypted at rest
    sa.Column("similarity", sa.Float),  # sent vs the chosen draft, 0..1 (difflib ratio)
    sa.Column("best_similarity", sa.Float),  # sent vs the closest draft offered
    sa.Column("review_item", sa.Integer),  # review_queue id when it was kept for review
    sa.Column("ts", sa.Float, nullable=False, default=time.time, index=True),
)


# --- v10: experiments (which arm a customer is in, and each time an arm was applied) ---
# Written only through bot.insight.experiments (assign_and_log); erased with the customer.

experiment_assignments = sa.Table(
    "experiment_assignments",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("arm", sa.String(64), nullable=False),  # fixed at the first exposure; weights changed later never move it
    sa.Column("assigned_at", sa.Float, nullable=False, default=time.time),
)

experiment_exposures = sa.Table(
    "experiment_exposures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(64), nullable=False, index=True),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("conversation_id", sa.String(192)),
    sa.Column("ts", sa.Float, nullable=False, default=time.time, index=True),
)


# The Alembic revision scripts (core/migrations/versions/). Add a revision file; never edit one that has shipped.
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

# PostgreSQL advisory lock key held while migrating ("NWMIGR" in ASCII).
_MIGRATION_LOCK = 0x4E574D49475200

# Where the hand-written runner before Alembic recorded its version (1..8, one row each):
# not part of `metadata`, read once to stamp the matching revision, then dropped.
_LEGACY_VERSION_TABLE = "schema_version"


class DatabaseUnavailableError(RuntimeError):
    """The configured database cannot be reached or opened."""


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # A few connections kept open (SQLAlchemy 1.4 would open one per use of a file database).
        engine = sa.create_engine(
            url, future=True, poolclass=sa.pool.QueuePool, pool_size=4, max_overflow=8,
            connect_args={"timeout": 30, "check_same_thread": False},
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL lets the server and action server share the file
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(url, future=True, pool_pre_ping=True)


def alembic_config(connection: Optional[sa.engine.Connection] = None) -> Config:
    """The Alembic configuration of the project's migrations, built in code (no alembic.ini).

    With `connection`, ``core/migrations/env.py`` runs the revisions on it, inside
    the transaction the caller holds.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest revision in core/migrations/versions/ (``"0008"``, ...)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: sa.engine.Connection) -> Optional[str]:
    """The revision the database is at (Alembic's ``alembic_version``), None before the first.

    Read with plain SQL (Alembic's MigrationContext would log two lines at every
    process start); Alembic itself reads it again when there is work to do.
    """
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions[0] if len(versions) == 1 else MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Processes sharing one SQLite file (Rasa and the action server) migrate it one at a time."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(database).expanduser().with_name(Path(database).name + ".migrate-lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _stamp_legacy(connection: sa.engine.Connection, config: Config) -> None:
    """A database made by the runner before Alembic: stamp the revision it reached, drop its table."""
    if not sa.inspect(connection).has_table(_LEGACY_VERSION_TABLE):
        return
    legacy = connection.execute(sa.text(f"SELECT MAX(version) FROM {_LEGACY_VERSION_TABLE}")).scalar()
    if legacy:
        revision = f"{int(legacy):04d}"
        ScriptDirectory.from_config(config).get_revision(revision)  # an unknown version stops here
        command.stamp(config, revision)
    connection.execute(sa.text(f"DROP TABLE {_LEGACY_VERSION_TABLE}"))


def migrate(engine: Engine) -> int:
    """Apply the Alembic revisions still missing; returns the schema version now in force (8 for ``0008``).

    One transaction; on PostgreSQL under an advisory lock and on a SQLite file
    under a lock file beside it, so that processes starting together (action
    server, Rasa replicas) migrate one at a time and the others find the work done.
    """
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Released at commit.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        current = current_revision(conn)
        if current != head_revision():
            config = alembic_config(conn)
            if current is None:
                _stamp_legacy(conn, config)
            command.upgrade(config, "head")
            current = current_revision(conn)
    return int(current)


@functools.lru_cache(maxsize=8)
def connect(url: Optional[str] = None) -> Engine:
    """The engine for `url` (default: the configured database), schema up to date.

    Raises `DatabaseUnavailableError` with the URL (password hidden) when the
    database cannot be reached.
    """
    if url is None:
        from core.settings import get_settings

        url = get_settings().database_url
    check_key()  # a malformed ASSISTANT_ENCRYPTION_KEY stops the process here, not at the first write
    engine = _make_engine(url)
    try:
        migrate(engine)
    except sa.exc.OperationalError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise DatabaseUnavailableError(
            f"cannot open the database at {shown}: {exc.orig}. Start it, or set "
            f"ASSISTANT_DATABASE_URL to a reachable database"
        ) from exc
    return engine


def insert_ignoring_duplicates(conn: sa.engine.Connection, table: sa.Table, unique: Sequence[str]):
    """An INSERT into `table` that skips rows already there by the unique columns `unique` (no error, no row).

    SQLite and PostgreSQL, the two databases the project runs on, both say
    it as ``ON CONFLICT (...) DO NOTHING``.
    """
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise NotImplementedError(f"insert_ignoring_duplicates: no ON CONFLICT for {dialect}")
    return insert(table).on_conflict_do_nothing(index_elements=[table.c[name] for name in unique])
