"""The conversation tracker store: Rasa's SQL store, rebuilt only when the database has news.

Rasa's `SQLTrackerStore` reads every event of the current session, parses
its JSON and deserialises it each time a conversation is fetched, and one
customer message fetches it several times (the handoff desk, the
processor, the handoff completion). `CachingSQLTrackerStore` keeps the
deserialised events of recently active conversations and asks the database
only the first and last row id of the conversation (two lookups at the
ends of the index on ``(sender_id, id)``, which this store adds to Rasa's
table: they cost the same at turn 5 and turn 5,000, where ``count(*)``
visited every row of the conversation and, at 2,400 events, took 5.6 ms on
PostgreSQL three times a message): when those match what it holds, it rebuilds the tracker from the kept
events; when they do not (another replica wrote, a conversation was erased,
a new session started), it reads from the database as Rasa does. So several
Rasa servers can share one database: the database stays the truth and the
cache only saves parsing.

Named in endpoints.yml as ``type: bot.stores.CachingSQLTrackerStore`` with
the same keys as Rasa's ``type: SQL`` store (dialect, url, db, username...).

A bounded tracker (``window_turns``, default `WINDOW_TURNS`): what Rasa
handles a message with is the conversation's *state* plus its last
``window_turns`` customer turns, not the whole session. Everything Rasa does
with a tracker costs in proportion to its events: rebuilding it, every
policy's featurisation (they replay the conversation from its start to find
the states of the last few turns), ``applied_events``, the whole tracker sent
to the action server with every custom action and parsed there, the desk's
scans. In a 200-turn conversation a message cost the Rasa server three times
what it cost at turn 25 (`bot.bench_turns`). So ``retrieve`` returns the
session's start (its ``session_started``, with its own timestamp), then a summary of everything before the window (one
``slot`` event for each slot that is not at its initial value, and the
active loop's ``active_loop`` event), then the window's events as they were
stored. The summary is kept with the conversation's events and moved forward
a turn at a time (a replay of the summary and that one turn), never inside a
form (while a loop is active or a follow-up action is due the window grows
instead), so it costs the same at every turn. The events it summarises
leave memory: the cache holds each conversation's summary and window, not
its history, so its memory does not grow with conversations' length (it did
by ~2 KB an event: 30 MB a minute at 30 msg/s). The database keeps every
event; the full session is what ``retrieve_full_tracker`` returns (the agent
inbox, the widget's history, exports). ``window_turns: 0`` gives Rasa's
whole-session tracker.

What a window changes: policies see the last `window_turns` turns (the
memoization and rule policies here look at most five actions back; a
``TEDPolicy`` with a longer ``max_history`` needs a wider window), and a
custom action that scans ``tracker.events`` sees the window and the session
start (this project's actions look a few messages back and keep longer-lived
facts in slots or in the database).

Saves write only the events a tracker gained since it was retrieved (the
tracker carries how many it was handed), never re-reading or re-counting the
conversation. Before the commit, one statement reads the two ends again and
counts the rows past the old end: when those are exactly the rows just
written, nobody else wrote meanwhile and the kept copy is extended with them;
otherwise the next retrieve reads the database. A save is five round trips to
the database (BEGIN, the version, one INSERT, that check, COMMIT), each of
which the Rasa server's event loop waits for.

Encryption at rest (`core.crypto`): when ``ASSISTANT_ENCRYPTION_KEY`` is set,
each row's ``data`` column (the whole event: message text, entities, slot
values, metadata) is stored as a Fernet token; rows written before, in
plaintext JSON, still read. The other columns stay plain because Rasa's own
queries and the project's counts need them and they hold no customer words:
``sender_id`` (the conversation id), ``type_name``, ``timestamp``,
``intent_name`` (an intent of the domain: Rasa ignores ``/name`` payloads
naming an intent the domain lacks) and ``action_name`` (an action, slot or
form name of the domain). Rasa's plain ``type: SQL`` store cannot read
encrypted rows: with a key, name this store.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, List, Optional, Text, Tuple

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.events import (
    ActionExecuted, ActiveLoop, Event, SessionStarted, SlotSet, UserUttered, deserialise_events,
)
from rasa.shared.core.trackers import DialogueStateTracker

from core import crypto, metrics

logger = logging.getLogger(__name__)

# Customer turns a retrieved tracker holds after its summary (see the module doc).
WINDOW_TURNS = 10
# Attribute a retrieved tracker carries: how many events it was handed (its save writes the rest).
HANDED = "_assistant_events_handed"


@dataclass
class _Kept:
    version: Tuple[Optional[int], Optional[int]]  # (lowest, highest row id of the sender): see `_version`
    events: List[Event]  # the latest session's events from the `dropped`-th on, as the database holds them
    cut: int = 0  # events[:cut] are summarised by `summary`
    summary: List[Event] = field(default_factory=list)
    dropped: int = 0  # the session's first events, summarised and no longer held in memory

    @property
    def stored(self) -> int:
        """How many events of the session the database holds (as of `version`)."""
        return self.dropped + len(self.events)


def _is_listen(event: Event) -> bool:
    return isinstance(event, ActionExecuted) and event.action_name == ACTION_LISTEN_NAME


class CachingSQLTrackerStore(SQLTrackerStore):
    """`SQLTrackerStore` that keeps recent conversations' events in memory (see module doc)."""

    def __init__(
        self,
        domain: Any = None,
        dialect: Text = "sqlite",
        host: Optional[Text] = None,
        port: Optional[int] = None,
        db: Text = "rasa.db",
        username: Optional[Text] = None,
        password: Optional[Text] = None,
        event_broker: Any = None,
        login_db: Optional[Text] = None,
        query: Optional[dict] = None,
        cache_size: int = 2000,
        window_turns: int = WINDOW_TURNS,
        **kwargs: Any,
    ) -> None:
        # The same arguments as SQLTrackerStore, spelled out: Rasa passes the
        # endpoint's `url` as `host` only to classes whose __init__ names it.
        crypto.check_key()  # a malformed ASSISTANT_ENCRYPTION_KEY stops the server here, not at the first save
        super().__init__(domain, dialect, host, port, db, username, password, event_broker, login_db, query, **kwargs)
        if self.engine.dialect.name == "sqlite" and isinstance(self.engine.pool, sa.pool.NullPool):
            # SQLAlchemy 1.4 opens a new SQLite connection for every session of a file
            # database; keep a few open instead (the file is in WAL mode, see below).
            self.engine = sa.create_engine(
                self.engine.url, poolclass=sa.pool.QueuePool, pool_size=4, max_overflow=4,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        table = self.SQLEvent.__tablename__
        self._ensure_version_index()
        # Each a lookup at one end of the (sender_id, id) index: what these cost does not grow with the conversation.
        ends = (f"(SELECT id FROM {table} WHERE sender_id = :sender_id ORDER BY id LIMIT 1), "
                f"(SELECT id FROM {table} WHERE sender_id = :sender_id ORDER BY id DESC LIMIT 1)")
        self._version_sql = sa.text(f"SELECT {ends}")
        # After a save, in one round trip: the same two ends, and how many rows lie past the old end (a range of
        # the index); `save` compares that with the rows it wrote.
        self._after_save_sql = sa.text(
            f"SELECT {ends}, (SELECT count(*) FROM {table} WHERE sender_id = :sender_id AND id > :since)")
        self.cache_size = int(cache_size)
        self.window_turns = max(0, int(window_turns))
        self._kept: "OrderedDict[str, _Kept]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    VERSION_INDEX = "ix_events_sender_id_id"

    def _ensure_version_index(self) -> None:
        """Add the ``(sender_id, id)`` index to Rasa's events table if it is missing (once; several servers may race).

        Plain DDL, not an `sa.Index` on Rasa's table: that would join Rasa's
        shared metadata, and every later store's ``create_all`` would try to
        create it again.
        """
        table = self.SQLEvent.__tablename__

        def present() -> bool:
            return self.VERSION_INDEX in {i["name"] for i in sa.inspect(self.engine).get_indexes(table)}

        if present():
            return
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.text(f"CREATE INDEX {self.VERSION_INDEX} ON {table} (sender_id, id)"))
        except sa.exc.DBAPIError:
            if not present():  # not another server's index created meanwhile: a real failure
                raise
            return
        logger.info("added index %s on %s (sender_id, id) for the tracker cache's version check", self.VERSION_INDEX, table)

    # ------------------------------------------------------------------ cache
    def _version(self, session: Any, sender_id: Text) -> Tuple[Optional[int], Optional[int]]:
        """(lowest, highest row id) of the conversation: what changes when anyone writes or deletes its rows.

        Rows are only ever appended (higher ids), erased whole (both None) or
        dropped oldest first by the retention worker (a higher lowest id), so
        the two ends tell every change this project makes without counting.
        """
        # On the session's connection: the ORM's execute adds more than the query costs.
        lowest, highest = session.connection().execute(self._version_sql, {"sender_id": sender_id}).one()
        return lowest, highest

    def _version_and_written_since(self, session: Any, sender_id: Text,
                                   since: Optional[int]) -> Tuple[Tuple[Optional[int], Optional[int]], int]:
        """`_version`, and how many rows of the conversation have an id above `since` (all of them when None),
        in one statement: one round trip to the database."""
        lowest, highest, written = session.connection().execute(
            self._after_save_sql, {"sender_id": sender_id, "since": -1 if since is None else since}).one()
        return (lowest, highest), int(written or 0)

    def _keep(self, sender_id: Text, kept: Optional[_Kept]) -> None:
        with self._lock:
            if kept is None:
                self._kept.pop(sender_id, None)
                return
            self._kept[sender_id] = kept
            self._kept.move_to_end(sender_id)
            while len(self._kept) > self.cache_size:
                self._kept.popitem(last=False)

    def _tracker(self, sender_id: Text, events: List[Event]) -> Optional[DialogueStateTracker]:
        if not self.domain or not events:
            return None
        return DialogueStateTracker.from_events(sender_id, list(events), self.domain.slots)

    # ---------------------------------------------------------------- window
    def _windowed(self, sender_id: Text, kept: _Kept) -> Optional[DialogueStateTracker]:
        """The tracker of `kept`: its session start, summary and last turns (see the module doc)."""
        if self.window_turns:
            self._advance(sender_id, kept)
        with self._lock:  # `_advance` may drop the events before the cut meanwhile
            events = kept.summary + kept.events[kept.cut:]
        tracker = self._tracker(sender_id, events)
        if tracker is not None:
            setattr(tracker, HANDED, len(tracker.events))
            metrics.TRACKER_EVENTS.observe(len(events))
        return tracker

    def _advance(self, sender_id: Text, kept: _Kept) -> None:
        """Move the summary forward so that the window holds `window_turns` customer turns.

        Not to a point inside a form (a loop active or a follow-up action due
        there): then to the latest turn before it that is not, or not at all.
        One replay, from the summary through the turns it may move over.
        """
        with self._lock:
            cut, summary = kept.cut, kept.summary
        events = kept.events
        turns = [i for i in range(cut, len(events)) if isinstance(events[i], UserUttered)]
        candidates = turns[1:max(1, len(turns) - self.window_turns + 1)]
        if not candidates or not self.domain:
            return
        state = DialogueStateTracker.from_events(sender_id, list(summary), self.domain.slots)
        replayed, moved = cut, None
        for turn in candidates:
            # The window starts with the action_listen before its first turn, as every turn does.
            new_cut = turn - 1 if _is_listen(events[turn - 1]) else turn
            for event in events[replayed:new_cut]:
                state.update(event)
            replayed = new_cut
            if not (state.active_loop_name or state.followup_action):
                # The session's start is at the head of the summary once there is one.
                moved = (new_cut, self._summary(state, summary or events, events[new_cut].timestamp))
        if moved is not None:
            with self._lock:
                if (kept.cut, kept.summary) == (cut, summary):
                    # The summarised events go: what is kept of a conversation is its window, not
                    # its history (a 700-turn conversation held ~2 MB of parsed events).
                    new_cut, kept.summary = moved
                    del kept.events[:new_cut]
                    kept.dropped += new_cut
                    kept.cut = 0

    @staticmethod
    def _summary(state: DialogueStateTracker, session: List[Event], at: float) -> List[Event]:
        """The session's start, then the slots and active loop of `state`, stamped `at`."""
        head: List[Event] = []
        for i, event in enumerate(session[:4]):
            if isinstance(event, SessionStarted):
                before = session[i - 1] if i else None
                if isinstance(before, ActionExecuted) and before.action_name == ACTION_SESSION_START_NAME:
                    head.append(before)
                head.append(event)
                break
        slots = [SlotSet(name, slot.value, timestamp=at) for name, slot in state.slots.items()
                 if slot.value != slot.initial_value]
        loop = [ActiveLoop(state.active_loop_name, timestamp=at)] if state.active_loop_name else []
        return head + slots + loop

    # ------------------------------------------------------------ store API
    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The latest session's tracker; parsed from the database only when it changed."""
        with self.session_scope() as session:
            version = self._version(session, sender_id)
            with self._lock:
                kept = self._kept.get(sender_id)
            if kept is not None and kept.version == version:
                self.hits += 1
                metrics.TRACKER_CACHE.labels("hit").inc()
                return self._windowed(sender_id, kept)
            if version[1] is None:  # a new conversation: nothing to read, and the first save extends this
                self._keep(sender_id, _Kept(version, []))
                metrics.TRACKER_CACHE.labels("new").inc()
                return None
            self.misses += 1
            metrics.TRACKER_CACHE.labels("miss").inc()
            rows = self._event_query(session, sender_id, fetch_events_from_all_sessions=False).all()
        events = deserialise_events(self._stored_events(rows))
        if not rows:
            self._keep(sender_id, None)
            return None
        kept = _Kept(version, events)
        self._keep(sender_id, kept)
        return self._windowed(sender_id, kept)

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        """Every session's events (Rasa's query), decrypted; not cached."""
        with self.session_scope() as session:
            rows = self._event_query(session, conversation_id, fetch_events_from_all_sessions=True).all()
        if not self.domain or not rows:
            return None
        return DialogueStateTracker.from_dict(conversation_id, self._stored_events(rows), self.domain.slots)

    @staticmethod
    def _stored_events(rows: List[Any]) -> List[dict]:
        """The event dictionaries of stored rows: encrypted or legacy plaintext alike."""
        return [json.loads(crypto.decrypt_text(row.data)) for row in rows]

    @staticmethod
    def _latest_session(events: List[Event]) -> List[Event]:
        """What Rasa's query returns of these rows: events at or after the latest SessionStarted's timestamp."""
        starts = [e.timestamp for e in events if isinstance(e, SessionStarted)]
        if not starts:
            return events
        since = max(starts)
        return [e for e in events if e.timestamp >= since]

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Store the tracker's new events and extend the kept copy with them.

        New: those it gained since this store handed it out (`HANDED`); for a
        tracker that did not come from here (a new conversation), those past
        the session's stored count, as Rasa does.
        """
        await self.stream_events(tracker)
        sender_id = tracker.sender_id
        with self._lock:
            kept = self._kept.get(sender_id)
        handed = getattr(tracker, HANDED, None)
        with self.session_scope() as session:
            before = self._version(session, sender_id)
            if handed is not None:
                stored = int(handed)
            elif kept is not None and kept.version == before:
                stored = kept.stored  # what the database holds of this session, without asking it
            else:
                stored = self._event_query(session, sender_id, fetch_events_from_all_sessions=False).count()
            new = list(tracker.events)[stored:]
            dumped = [event.as_dict() for event in new]
            if dumped:
                # One Core INSERT of plain rows: the ORM's unit of work costs more than the write.
                session.execute(
                    self.SQLEvent.__table__.insert(),
                    [
                        {
                            "sender_id": sender_id,
                            "type_name": event.type_name,
                            "timestamp": data.get("timestamp"),
                            "intent_name": ((data.get("parse_data") or {}).get("intent") or {}).get("name"),
                            "action_name": data.get("name"),
                            "data": crypto.encrypt_text(json.dumps(data)),
                        }
                        for event, data in zip(new, dumped)
                    ],
                )
                # Before the commit, in one statement: the rows of others committed meanwhile are seen
                # (read committed), as they were by two queries after it, for two round trips fewer.
                after, written = self._version_and_written_since(session, sender_id, before[1])
                # Nobody else wrote between `before` and now: the rows past the old end are exactly ours.
                alone = written == len(new)
            else:
                after, alone = before, True
            session.commit()
        setattr(tracker, HANDED, len(tracker.events))  # saved again, it writes only what it gains after this
        same_start = before[0] is None or after[0] == before[0]  # the retention worker dropped none of its rows meanwhile
        if kept is not None and kept.version == before and alone and same_start:
            # Fresh objects from the stored form: the kept copy never shares the caller's events.
            # A new session keeps only its own events, as Rasa's query would return them (and
            # starts without a summary).
            added = deserialise_events(dumped)
            if any(isinstance(event, SessionStarted) for event in added):
                self._keep(sender_id, _Kept(after, self._latest_session(kept.events + added)))
            else:
                with self._lock:  # in place: copying the session's events would cost what the window saves
                    kept.events.extend(added)
                    kept.version = after
                self._keep(sender_id, kept)
        else:
            self._keep(sender_id, None)  # read from the database next time
