"""Customers, items and interactions in the project database (`core.db`).

SQLite by default, PostgreSQL by URL: everything here goes through the SQL
layer's engine, so the same calls work on both.

    engine = core.db.connect()
    save_items(engine, load_items("bot/catalogue/items.jsonl"))
    record_interaction(engine, "cust-1", "travel-credit-card", "click")
    Recommender.fit(read_interactions(engine), read_items(engine))
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Mapping, Optional

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import db

# Rows written per statement when loading files.
_CHUNK = 5000


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def save_items(engine: Engine, items: pd.DataFrame) -> int:
    """Insert or replace the catalogue rows of `items` (standard item columns); returns how many."""
    rows = [
        {"id": r["item_id"], "kind": r["kind"], "title": r["title"], "description": r.get("description") or "",
         "tags": list(r.get("tags") or []), "url": _clean(r.get("url")), "active": bool(r.get("active", True)),
         "created_at": time.time()}
        for r in items.to_dict("records")
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            conn.execute(db.items.delete().where(db.items.c.id.in_([r["id"] for r in chunk])))
            conn.execute(db.items.insert(), chunk)
    return len(rows)


def read_items(engine: Engine, active_only: bool = False) -> pd.DataFrame:
    """The catalogue as a DataFrame in the standard item columns."""
    query = sa.select(db.items).order_by(db.items.c.id)
    if active_only:
        query = query.where(db.items.c.active.is_(True))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(
        [{"item_id": r["id"], "kind": r["kind"], "title": r["title"], "description": r["description"] or "",
          "tags": list(r["tags"] or []), "url": r["url"], "active": bool(r["active"])} for r in rows],
        columns=["item_id", "kind", "title", "description", "tags", "url", "active"],
    )


def save_customers(engine: Engine, customers: pd.DataFrame, synthetic: bool = False) -> int:
    """Insert or replace customer rows (customer_id, segment, age_band); returns how many.

    An existing customer's opt-out of suggestions is kept.
    """
    ids = [str(c) for c in customers["customer_id"]]
    with engine.begin() as conn:
        opted_out = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            opted_out |= set(conn.execute(
                sa.select(db.customers.c.id).where(db.customers.c.id.in_(chunk)).where(db.customers.c.suggestions_opt_out.is_(True))
            ).scalars())
            conn.execute(db.customers.delete().where(db.customers.c.id.in_(chunk)))
        rows = [
            {"id": str(r["customer_id"]), "segment": _clean(r.get("segment")), "age_band": _clean(r.get("age_band")),
             "attributes": {}, "suggestions_opt_out": str(r["customer_id"]) in opted_out, "synthetic": synthetic,
             "created_at": time.time()}
            for r in customers.to_dict("records")
        ]
        for start in range(0, len(rows), _CHUNK):
            conn.execute(db.customers.insert(), rows[start:start + _CHUNK])
    return len(rows)


def read_customers(engine: Engine) -> pd.DataFrame:
    """Customers as a DataFrame (customer_id, segment, age_band, suggestions_opt_out, synthetic)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.customers)).mappings().all()
    return pd.DataFrame(
        [{"customer_id": r["id"], "segment": r["segment"], "age_band": r["age_band"],
          "suggestions_opt_out": bool(r["suggestions_opt_out"]), "synthetic": bool(r["synthetic"])} for r in rows],
        columns=["customer_id", "segment", "age_band", "suggestions_opt_out", "synthetic"],
    )


def add_interactions(engine: Engine, interactions: pd.DataFrame, default_weights: Optional[Mapping[str, float]] = None) -> int:
    """Append interaction rows (standard columns, as `recommender.data` checks them); returns how many."""
    weights = dict(default_weights or {})
    rows = []
    for r in interactions.to_dict("records"):
        weight = _clean(r.get("weight"))
        kind = r.get("kind") or "interaction"
        rows.append({
            "customer_id": str(r["customer_id"]), "item_id": _clean(r.get("item_id")), "kind": kind,
            "topic": _clean(r.get("topic")), "weight": float(weights.get(kind, 1.0) if weight is None else weight),
            "conversation_id": _clean(r.get("conversation_id")), "ts": float(r["timestamp"]),
        })
    with engine.begin() as conn:
        for start in range(0, len(rows), _CHUNK):
            conn.execute(db.interactions.insert(), rows[start:start + _CHUNK])
    return len(rows)


def record_interaction(engine: Engine, customer_id: str, item_id: Optional[str], kind: str, *, topic: Optional[str] = None,
                       weight: float = 1.0, conversation_id: Optional[str] = None, timestamp: Optional[float] = None) -> None:
    """Store one interaction now (a click on a suggestion, a topic asked about, ...)."""
    with engine.begin() as conn:
        conn.execute(db.interactions.insert().values(
            customer_id=customer_id, item_id=item_id, kind=kind, topic=topic, weight=float(weight),
            conversation_id=conversation_id, ts=time.time() if timestamp is None else float(timestamp),
        ))


def read_interactions(engine: Engine, customer_id: Optional[str] = None, since: Optional[float] = None) -> pd.DataFrame:
    """Interactions (all, or one customer's, or newer than `since`) in the columns `Recommender.fit` takes."""
    query = sa.select(db.interactions).order_by(db.interactions.c.ts, db.interactions.c.id)
    if customer_id is not None:
        query = query.where(db.interactions.c.customer_id == customer_id)
    if since is not None:
        query = query.where(db.interactions.c.ts > since)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(
        [{"customer_id": r["customer_id"], "item_id": r["item_id"], "timestamp": r["ts"], "kind": r["kind"],
          "weight": r["weight"], "topic": r["topic"]} for r in rows],
        columns=["customer_id", "item_id", "timestamp", "kind", "weight", "topic"],
    )


def history_source(engine: Engine) -> Callable[[str], Optional[Dict[str, Any]]]:
    """A source for `Recommender.use_history`: a customer's segment and interactions from the database."""

    def history(customer_id: str) -> Optional[Dict[str, Any]]:
        with engine.connect() as conn:
            segment = conn.execute(sa.select(db.customers.c.segment).where(db.customers.c.id == customer_id)).scalar()
        frame = read_interactions(engine, customer_id=customer_id)
        if segment is None and frame.empty:
            return None
        return {"segment": segment, "interactions": frame}

    return history


def set_suggestions_opt_out(engine: Engine, customer_id: str, opted_out: bool = True) -> None:
    """Remember that `customer_id` wants (no) suggestions; creates the customer row if needed."""
    with engine.begin() as conn:
        updated = conn.execute(
            db.customers.update().where(db.customers.c.id == customer_id).values(suggestions_opt_out=opted_out)
        ).rowcount
        if not updated:
            conn.execute(db.customers.insert().values(
                id=customer_id, attributes={}, suggestions_opt_out=opted_out, synthetic=False, created_at=time.time()))


def suggestions_opted_out(engine: Engine, customer_id: str) -> bool:
    """Whether `customer_id` asked for no suggestions."""
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(db.customers.c.suggestions_opt_out).where(db.customers.c.id == customer_id)
        ).scalar()
    return bool(value)


def customer_summary(engine: Engine, customer_id: str, recent: int = 10) -> Dict[str, Any]:
    """What this package's tables hold on a customer: the profile row (None if unknown) and the `recent`
    latest interactions, newest first, each with its item's title (None for a topic)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(db.customers).where(db.customers.c.id == customer_id)).mappings().first()
        latest = conn.execute(
            sa.select(db.interactions.c.kind, db.interactions.c.topic, db.interactions.c.ts, db.items.c.title)
            .select_from(db.interactions.outerjoin(db.items, db.items.c.id == db.interactions.c.item_id))
            .where(db.interactions.c.customer_id == customer_id)
            .order_by(db.interactions.c.ts.desc())
            .limit(recent)
        ).mappings().all()
    return {"profile": dict(row) if row is not None else None, "recent": [dict(r) for r in latest]}


def erase_customer(engine: Engine, customer_id: str) -> Dict[str, int]:
    """Delete the customer's profile row and every interaction of theirs; returns rows deleted per table."""
    with engine.begin() as conn:
        interactions = conn.execute(db.interactions.delete().where(db.interactions.c.customer_id == customer_id)).rowcount
        customers = conn.execute(db.customers.delete().where(db.customers.c.id == customer_id)).rowcount
    return {"interactions": interactions, "customers": customers}


def erase_synthetic(engine: Engine) -> int:
    """Delete every customer labelled synthetic, with their interactions (before a demo is regenerated)."""
    with engine.begin() as conn:
        ids = list(conn.execute(sa.select(db.customers.c.id).where(db.customers.c.synthetic.is_(True))).scalars())
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            conn.execute(db.interactions.delete().where(db.interactions.c.customer_id.in_(chunk)))
            conn.execute(db.customers.delete().where(db.customers.c.id.in_(chunk)))
    return len(ids)
