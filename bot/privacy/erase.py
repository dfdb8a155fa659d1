"""What erasing one identity removes, store by store.

`erase_identity(customer_id, conversations)` removes, for the customer and
every conversation linked to them:

- Rasa's tracker rows (the ``events`` table of the tracker store: the SQLite
  file ``tracker_db`` or PostgreSQL at ``tracker_url``);
- the project's rows: customers, interactions, answer_ratings, handoffs, satisfaction,
  review_queue, identities (when the identity layer has that table),
  data_exports (and the export files), experiment_assignments and
  experiment_exposures;
- the ratings waiting in this process's spool (``var/unsaved_ratings.jsonl``);
- the review exports in ``var/review/`` (rewritten from the queue without them);
- answer-index entries built from their words (records whose source ends in
  ``#<conversation id>`` or that came from one of their review items);
- their saved recommender profile (``profiles.jsonl`` of ``recommender_dir``)
  and the profile (and experiment arms) this process holds in memory.

Each step returns how many things it removed; running it again removes
nothing, which is how the worker knows every store is clean.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import db
from core.settings import get_settings
from core.files import write_text_atomically

logger = logging.getLogger(__name__)

EVENTS = sa.table(
    "events", sa.column("id"), sa.column("sender_id"), sa.column("type_name"), sa.column("timestamp"),
    sa.column("intent_name"), sa.column("action_name"), sa.column("data"),
)


class NotYetSaved(RuntimeError):
    """The conversation that asked has not been saved by the Rasa server yet; try again shortly."""


# ------------------------------------------------------------------ tracker store

_tracker_engines: Dict[str, Engine] = {}


def tracker_url() -> str:
    """The tracker store the Rasa server writes: ``tracker_url``, else the SQLite file ``tracker_db``."""
    settings = get_settings()
    return settings.tracker_url or f"sqlite:///{settings.tracker_db}"


def tracker_engine(url: Optional[str] = None) -> Optional[Engine]:
    """An engine on the tracker store; None for a SQLite file that does not exist (nothing stored yet)."""
    url = url or tracker_url()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return None
    if url not in _tracker_engines:
        connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
        _tracker_engines[url] = sa.create_engine(url, future=True, pool_pre_ping=True, connect_args=connect_args)
    return _tracker_engines[url]


def _has_events_table(engine: Engine) -> bool:
    return sa.inspect(engine).has_table("events")


def turn_saved(engine: Optional[Engine], conversation_id: str, since: float) -> bool:
    """Whether the Rasa server saved the turn of `conversation_id` that ran at `since` (an action_listen after it).

    A conversation with no rows at all counts as saved: the customer had
    asked and confirmed in earlier turns, so it was erased already (by an
    attempt that did not finish).
    """
    if engine is None or not _has_events_table(engine):
        return False
    with engine.connect() as conn:
        stored, listened = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.case(
                (sa.and_(EVENTS.c.action_name == "action_listen", EVENTS.c.timestamp >= since), 1)))).where(
                EVENTS.c.sender_id == conversation_id)
        ).one()
    return stored == 0 or listened > 0


def erase_tracker(conversations: Sequence[str], engine: Optional[Engine] = None) -> int:
    """Delete every tracker row of these conversations; returns how many."""
    engine = engine or tracker_engine()
    if engine is None or not conversations or not _has_events_table(engine):
        return 0
    with engine.begin() as conn:
        return int(conn.execute(EVENTS.delete().where(EVENTS.c.sender_id.in_(list(conversations)))).rowcount or 0)


# ------------------------------------------------------------------ the project's tables


def erase_project_rows(engine: Engine, customer_id: str, conversations: Sequence[str]) -> Dict[str, object]:
    """Delete the customer's rows from the project's tables; returns counts and the removed review item ids."""
    ids = list(dict.fromkeys([customer_id, *conversations]))
    removed: Dict[str, object] = {}
    with engine.begin() as conn:
        removed["customers"] = conn.execute(db.customers.delete().where(db.customers.c.id.in_(ids))).rowcount
        for table in (db.interactions, db.answer_ratings, db.handoffs, db.satisfaction):
            removed[table.name] = conn.execute(table.delete().where(
                sa.or_(table.c.customer_id.in_(ids), table.c.conversation_id.in_(ids)))).rowcount
        removed["segment_members"] = conn.execute(  # customer segments (v7)
            db.segment_members.delete().where(db.segment_members.c.customer_id.in_(ids))).rowcount
        review_ids = list(conn.execute(sa.select(db.review_queue.c.id).where(db.review_queue.c.conversation_id.in_(ids))).scalars())
        removed["review_queue"] = conn.execute(db.review_queue.delete().where(db.review_queue.c.id.in_(review_ids))).rowcount if review_ids else 0
        removed["assist_replies"] = conn.execute(  # agent assist (v8): what agents sent this customer
            db.assist_replies.delete().where(db.assist_replies.c.conversation_id.in_(ids))).rowcount
        removed["message_sentiment"] = conn.execute(  # message sentiment (v5), keyed by conversation
            db.message_sentiment.delete().where(db.message_sentiment.c.conversation_id.in_(ids))).rowcount
        removed["experiment_assignments"] = conn.execute(  # experiments (v10): their arm, and each time it was applied
            db.experiment_assignments.delete().where(db.experiment_assignments.c.customer_id.in_(ids))).rowcount
        removed["experiment_exposures"] = conn.execute(db.experiment_exposures.delete().where(
            sa.or_(db.experiment_exposures.c.customer_id.in_(ids), db.experiment_exposures.c.conversation_id.in_(ids)))).rowcount
        identities = getattr(db, "identities", None)
        if identities is not None:
            clauses = [getattr(identities.c, name).in_(ids) for name in ("customer_id", "conversation_id") if name in identities.c]
            removed["identities"] = conn.execute(identities.delete().where(sa.or_(*clauses))).rowcount if clauses else 0
        exports = list(conn.execute(sa.select(db.data_exports.c.path).where(db.data_exports.c.customer_id == customer_id)).scalars())
        removed["data_exports"] = conn.execute(db.data_exports.delete().where(db.data_exports.c.customer_id == customer_id)).rowcount
    for path in exports:
        if path:
            Path(path).unlink(missing_ok=True)
    removed["review_item_ids"] = review_ids
    return removed


# ------------------------------------------------------------------ files of this host


def erase_spooled_ratings(ids: Iterable[str], spool: Optional[Path] = None) -> int:
    """Drop this process's spooled ratings (not yet in the database) of these ids; returns how many."""
    from bot.actions import history

    ids = set(ids)
    spool = Path(spool or history.UNSAVED_RATINGS)
    with history._spool_lock:
        if not spool.exists():
            return 0
        kept, dropped = [], 0
        for line in spool.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                kept.append(line)
                continue
            if str(item.get("customer_id")) in ids or str(item.get("conversation_id")) in ids:
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            write_text_atomically(spool, "".join(line + "\n" for line in kept))
        return dropped


def rewrite_review_exports(engine: Engine) -> int:
    """Write the review exports in var/review/ again from the queue, if they exist; returns how many lines went."""
    from core import review

    nlu, history = review.DEFAULT_NLU_EXPORT, review.DEFAULT_HISTORY_EXPORT
    if not (nlu.exists() or history.exists()):
        return 0

    def lines() -> int:
        return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in (nlu, history) if p.exists())

    before = lines()
    review.export(nlu, history, db_url=engine.url.render_as_string(hide_password=False))
    return max(0, before - lines())


def erase_index_entries(conversations: Sequence[str], review_item_ids: Iterable[int], index_dir: Optional[str] = None) -> int:
    """Remove answer-index records built from these conversations' words; returns how many."""
    folder = Path(index_dir or get_settings().index_dir)
    from retrieval import RECORDS_FILE

    records_file = folder / RECORDS_FILE
    if not records_file.exists():
        return 0
    suffixes = tuple(f"#{c}" for c in conversations)
    review_ids = {f"review-{i}" for i in review_item_ids}
    doomed: List[str] = []
    for line in records_file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        source = str(record.get("source") or "")
        if record.get("id") in review_ids or (suffixes and source.endswith(suffixes)):
            doomed.append(str(record["id"]))
    if not doomed:
        return 0
    from retrieval import AnswerIndex

    index = AnswerIndex.load(folder)
    removed = index.remove(doomed)
    index.save(folder)
    return removed


def erase_saved_profile(ids: Iterable[str], recommender_dir: Optional[str] = None) -> int:
    """Remove these customers from a trained recommender's ``profiles.jsonl`` (serving never reads it); returns how many."""
    path = Path(recommender_dir or get_settings().recommender_dir) / "profiles.jsonl"
    if not path.exists():
        return 0
    ids = set(ids)
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("customer_id") in ids:
                dropped += 1
                continue
        except ValueError:
            pass
        kept.append(line)
    if dropped:
        write_text_atomically(path, "".join(line + "\n" for line in kept))
    return dropped


def forget_in_memory(ids: Iterable[str]) -> int:
    """Drop the recommender profiles (and experiment arms) this process holds for these ids; returns how many profiles."""
    from bot.actions import suggestions
    from bot.insight.experiments import forget_assignments

    ids = list(ids)
    forget_assignments(ids)
    model = suggestions.loaded_recommender()
    if model is None:
        return 0
    return sum(1 for i in ids if model.forget(i))


# ------------------------------------------------------------------ all of it


def erase_identity(engine: Engine, customer_id: str, conversations: Sequence[str],
                   record: Optional[Callable[[Dict[str, int]], None]] = None) -> Dict[str, int]:
    """One pass over every store; returns counts per store (all zero when everything was already clean).

    `record`, when given, is called after each step that removed something,
    so what was removed is kept even if the process dies before the pass ends.
    """
    ids = list(dict.fromkeys([customer_id, *conversations]))
    removed: Dict[str, int] = {}

    def note(counts: Dict[str, int]) -> None:
        removed.update(counts)
        if record is not None and any(counts.values()):
            record({k: v for k, v in counts.items() if v})

    note({"tracker_events": erase_tracker(ids)})
    rows = erase_project_rows(engine, customer_id, ids)
    review_item_ids = rows.pop("review_item_ids")
    note({k: int(v) for k, v in rows.items()})
    note({"spooled_ratings": erase_spooled_ratings(ids)})
    note({"review_export_lines": rewrite_review_exports(engine)})
    note({"index_entries": erase_index_entries(ids, review_item_ids)})
    note({"saved_profiles": erase_saved_profile(ids)})
    note({"memory_profiles": forget_in_memory(ids)})
    return removed
