"""What the customer page shows, gathered from the project's database (no web code here).

`customer_view(engine, customer_id, conversations=...)` returns None for a
customer the database does not know (no profile row, no linked conversation,
no interaction), else a dictionary with:

- ``identity``: every conversation linked to the customer, on every channel
  (`bot.security.identity`), with the channel and who vouched for it;
- ``consent``: ``suggestions_opt_out`` (the customer opted out of profiling and
  suggestions) and ``synthetic`` (a demo customer);
- ``interests``: interactions per category (an item's first tag, or the topic
  asked) per month, weighted as stored; ``None`` when the customer opted out;
- ``timeline``: the conversations as read from the tracker store (passed in by
  the caller: first and last message time, customer messages);
- ``ratings`` (thumbs up/down on answers) and ``clicks`` (suggestions clicked);
- ``suggestions``: what the recommender would suggest now, each with its reason
  (``None`` when the customer opted out; computed by a read-only recommender of
  this module, never the one the assistant serves with);
- ``segment``: the stored behaviour segment (`training.segments`), if any;
- ``sentiment``: per day average where the sentiment table exists, else None;
- ``satisfaction``: each linked conversation's end-of-conversation rating
  (score 1-5, handled by the assistant or a person), by conversation id.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from typing import Any, Dict, List, Optional

import sqlalchemy as sa

from core import db

logger = logging.getLogger(__name__)

_recommender = None
_source = None  # the database history the page's recommender reads profiles from
_lock = threading.Lock()


def _month(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m")


def read_only_recommender(engine):
    """A recommender for the customer pages, loaded once (trained model, else catalogue and popularity).

    Its profiles are read from the database; nothing it does is written back
    or shared with the assistant's own recommender.
    """
    global _recommender, _source
    if _recommender is None:
        with _lock:
            if _recommender is None:
                from bot.actions.suggestions import CATALOGUE
                from core.settings import get_settings
                from recommender import ModelFolderError, Recommender, history_source, load_items, read_interactions

                try:
                    model = Recommender.load(get_settings().recommender_dir)
                except ModelFolderError:
                    model = Recommender.fit(read_interactions(engine), load_items(CATALOGUE),
                                            sequence_weight=0.0, collaborative_weight=0.0, content_weight=0.0)
                _source = history_source(engine)
                model.use_history(_source, drop_saved=True)
                _recommender = model
    return _recommender


def use_recommender(model) -> None:
    """Make the pages use `model` (tests); None loads it again on next use."""
    global _recommender, _source
    with _lock:
        _recommender = model
        _source = getattr(model, "_history", None) if model is not None else None


def suggestions_now(engine, customer_id: str, k: int = 5) -> List[Dict[str, Any]]:
    """What the recommender would suggest to `customer_id` now, with each reason."""
    model = read_only_recommender(engine)
    with _lock:
        model.use_history(_source)  # re-read the database: the page shows the customer as they are now
    return [s.as_dict() for s in model.recommend(customer_id, k=k)]


def _categories(conn) -> Dict[str, str]:
    rows = conn.execute(sa.select(db.items.c.id, db.items.c.tags, db.items.c.kind)).all()
    return {r.id: ((r.tags or [None])[0] or r.kind) for r in rows}


def interests(conn, customer_id: str) -> Dict[str, Any]:
    """Weighted interactions per category per month: {"months": [...], "series": {category: [...]}, "totals": {...}}."""
    category = _categories(conn)
    rows = conn.execute(sa.select(db.interactions.c.item_id, db.interactions.c.topic, db.interactions.c.kind,
                                  db.interactions.c.weight, db.interactions.c.ts)
                        .where(db.interactions.c.customer_id == customer_id)
                        .where(db.interactions.c.kind != "dismiss")).all()
    counts: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        name = r.topic if r.item_id is None else category.get(r.item_id, "other")
        counts[name or "other"][_month(r.ts)] += float(r.weight or 1.0)
    months = sorted({m for per in counts.values() for m in per})
    totals = {c: round(sum(per.values()), 2) for c, per in counts.items()}
    top = sorted(totals, key=lambda c: -totals[c])[:6]
    return {"months": months, "series": {c: [round(counts[c].get(m, 0.0), 2) for m in months] for c in top},
            "totals": dict(sorted(totals.items(), key=lambda kv: -kv[1]))}


def sentiment(conn, conversations: List[str]) -> Optional[List[List[Any]]]:
    """[[day, average score, messages], ...] from a sentiment table with conversation_id, a score and a time; None if absent."""
    table = next((t for name, t in db.metadata.tables.items() if "sentiment" in name), None)
    if table is None or not conversations:
        return None
    cols = table.c
    score = next((cols[n] for n in ("score", "polarity", "value") if n in cols), None)
    when = next((cols[n] for n in ("ts", "created_at", "timestamp") if n in cols), None)
    if score is None or when is None or "conversation_id" not in cols:
        return None
    try:
        rows = conn.execute(sa.select(score, when).where(cols.conversation_id.in_(conversations))).all()
    except sa.exc.SQLAlchemyError:
        return None
    days: Dict[str, List[float]] = defaultdict(list)
    for value, ts in rows:
        if value is not None and ts is not None:
            days[dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d")].append(float(value))
    return [[d, round(sum(v) / len(v), 3), len(v)] for d, v in sorted(days.items())]


def customer_view(engine, customer_id: str, conversations: Optional[List[Dict[str, Any]]] = None,
                  with_suggestions: bool = True) -> Optional[Dict[str, Any]]:
    """Everything the customer page shows (module docstring); None for an unknown customer."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(db.customers).where(db.customers.c.id == customer_id)).mappings().first()
        links = conn.execute(sa.select(db.identities.c.conversation_id, db.identities.c.channel,
                                       db.identities.c.verified_by, db.identities.c.created_at)
                             .where(db.identities.c.customer_id == customer_id)
                             .order_by(db.identities.c.created_at, db.identities.c.conversation_id)).mappings().all()
        count = conn.execute(sa.select(sa.func.count()).select_from(db.interactions)
                             .where(db.interactions.c.customer_id == customer_id)).scalar()
        if row is None and not links and not count:
            return None
        opted_out = bool(row["suggestions_opt_out"]) if row is not None else False
        ratings = conn.execute(sa.select(db.answer_ratings.c.answer_id, db.answer_ratings.c.rating, db.answer_ratings.c.ts)
                               .where(db.answer_ratings.c.customer_id == customer_id)
                               .order_by(db.answer_ratings.c.ts.desc()).limit(50)).mappings().all()
        clicks = conn.execute(sa.select(db.interactions.c.item_id, db.interactions.c.ts, db.items.c.title)
                              .select_from(db.interactions.outerjoin(db.items, db.items.c.id == db.interactions.c.item_id))
                              .where(db.interactions.c.customer_id == customer_id)
                              .where(db.interactions.c.kind == "click")
                              .order_by(db.interactions.c.ts.desc()).limit(50)).mappings().all()
        view: Dict[str, Any] = {
            "id": customer_id,
            "known_profile": row is not None,
            "segment_label": row["segment"] if row is not None else None,
            "age_band": row["age_band"] if row is not None else None,
            "consent": {"suggestions_opt_out": opted_out, "synthetic": bool(row["synthetic"]) if row is not None else False},
            "identity": [{"conversation_id": l["conversation_id"], "channel": l["channel"],
                          "verified_by": l["verified_by"], "since": l["created_at"]} for l in links],
            "interests": None if opted_out else interests(conn, customer_id),
            "ratings": [dict(r) for r in ratings],
            "clicks": [{"item_id": c["item_id"], "title": c["title"] or c["item_id"], "ts": c["ts"]} for c in clicks],
            "sentiment": sentiment(conn, [l["conversation_id"] for l in links]),
            "satisfaction": satisfaction_of(conn, [l["conversation_id"] for l in links]),
        }
    view["timeline"] = conversations or []
    view["segment"] = None if opted_out else segment_of(engine, customer_id)
    view["suggestions"] = None
    if not opted_out and with_suggestions:
        try:
            view["suggestions"] = suggestions_now(engine, customer_id)
        except Exception:  # the page still shows everything else
            logger.exception("could not compute suggestions for the customer page")
            view["suggestions"] = []
    return view


def satisfaction_of(conn, conversation_ids: List[str]) -> Dict[str, Dict[str, Any]]:
    """The end-of-conversation rating (score 1-5, handled_by, ts) of each conversation that has one."""
    if not conversation_ids:
        return {}
    t = db.satisfaction
    rows = conn.execute(sa.select(t.c.conversation_id, t.c.score, t.c.handled_by, t.c.ts)
                        .where(t.c.conversation_id.in_(conversation_ids[:1000]))).mappings().all()
    return {r["conversation_id"]: {"score": r["score"], "handled_by": r["handled_by"], "ts": r["ts"]} for r in rows}


def stored_segments(engine) -> List[Dict[str, Any]]:
    """The segments of the last `python -m training.segments` run, largest first ([] before the first run)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.segment_clusters).order_by(db.segment_clusters.c.size.desc())).mappings().all()
    return [dict(r) for r in rows]


def segment_of(engine, customer_id: str) -> Optional[Dict[str, Any]]:
    """The stored segment of `customer_id` (cluster and name), or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(db.segment_clusters.c.cluster, db.segment_clusters.c.name)
            .select_from(db.segment_members.join(db.segment_clusters,
                                                 db.segment_clusters.c.cluster == db.segment_members.c.cluster))
            .where(db.segment_members.c.customer_id == customer_id)).mappings().first()
    return dict(row) if row else None
