"""Customer segments found by clustering behaviour, stored for the inbox's segment page.

    python -m training.segments              # the configured database
    python -m training.segments --db sqlite:///var/assistant.db --max-k 8

Features per customer (from ``interactions`` and ``identities``): how many
interactions, views, clicks, purchases and topics asked; how many distinct
topics; days since the last interaction (recency, against the newest
interaction in the data); how many distinct weeks they were active
(frequency); the share of their conversations on each channel; and the share
of their questions on each of the most asked topics. Features are
standardized and clustered with k-means (scikit-learn), k from 2 to
``--max-k`` chosen by the best silhouette. Each segment is named by the two
features whose centre is furthest above the average, and stored with its
size, its interactions per week (trend) and the topics it asks about most.

Customers who opted out (``customers.suggestions_opt_out``) are not profiled:
they are left out of the features and of every segment.

Each run replaces the previous one in ``segment_clusters`` /
``segment_members`` (migration v7).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from core import db

DAY = 86400.0
WEEK = 7 * DAY
TOP_TOPICS = 8  # topic-share features for the most asked topics
TREND_WEEKS = 12
MIN_CUSTOMERS = 6  # fewer than this: no clustering (nothing to store)

COUNT_KINDS = ("view", "click", "purchase", "topic")
CHANNELS = ("web", "rest", "slack", "telegram")


class SegmentsError(ValueError):
    """Not enough data to find segments."""


def _readable(feature: str) -> str:
    if feature.startswith("topic:"):
        return f"asks about {feature[6:]}"
    if feature.startswith("channel:"):
        return f"uses {feature[8:]}"
    return {
        "interactions": "many interactions", "view": "browses a lot", "click": "clicks suggestions",
        "purchase": "buys", "topic": "asks many questions", "distinct_topics": "asks about many things",
        "recency_days": "inactive lately", "active_weeks": "frequent",
    }.get(feature, feature)


def load(engine) -> Dict[str, pd.DataFrame]:
    """Interactions and channel links of the customers who did not opt out."""
    with engine.connect() as conn:
        opted_out = set(conn.execute(
            sa.select(db.customers.c.id).where(db.customers.c.suggestions_opt_out.is_(True))).scalars())
        rows = conn.execute(sa.select(
            db.interactions.c.customer_id, db.interactions.c.kind, db.interactions.c.topic, db.interactions.c.ts)).all()
        links = conn.execute(sa.select(db.identities.c.customer_id, db.identities.c.channel)).all()
    events = pd.DataFrame(rows, columns=["customer_id", "kind", "topic", "ts"])
    channels = pd.DataFrame(links, columns=["customer_id", "channel"])
    events = events[~events["customer_id"].isin(opted_out)]
    channels = channels[~channels["customer_id"].isin(opted_out)]
    return {"events": events, "channels": channels}


def features(events: pd.DataFrame, channels: pd.DataFrame) -> pd.DataFrame:
    """One row per customer with any interaction; columns as in the module docstring."""
    if events.empty:
        return pd.DataFrame()
    now = float(events["ts"].max())
    grouped = events.groupby("customer_id")
    table = pd.DataFrame({"interactions": grouped.size()})
    for kind in COUNT_KINDS:
        table[kind] = events[events["kind"] == kind].groupby("customer_id").size()
    topics = events[events["kind"] == "topic"].dropna(subset=["topic"])
    table["distinct_topics"] = topics.groupby("customer_id")["topic"].nunique()
    table["recency_days"] = (now - grouped["ts"].max()) / DAY
    table["active_weeks"] = grouped["ts"].agg(lambda ts: len(set((ts // WEEK).astype(int))))
    if not channels.empty:
        counts = channels.groupby(["customer_id", "channel"]).size().unstack(fill_value=0)
        shares = counts.div(counts.sum(axis=1), axis=0)
        for channel in CHANNELS:
            if channel in shares:
                table[f"channel:{channel}"] = shares[channel]
    for topic in topics["topic"].value_counts().index[:TOP_TOPICS]:
        asked = topics.groupby("customer_id")["topic"].agg(lambda t, topic=topic: float((t == topic).mean()))
        table[f"topic:{topic}"] = asked
    return table.fillna(0.0).astype(float)


def cluster(table: pd.DataFrame, max_k: int = 8, seed: int = 0) -> Dict[str, Any]:
    """k-means on standardized features, k by the best silhouette; labels, centres (z-scores), k, silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    if len(table) < MIN_CUSTOMERS:
        raise SegmentsError(f"{len(table)} customers with interactions: at least {MIN_CUSTOMERS} are needed")
    scaled = StandardScaler().fit_transform(table.values)
    best: Optional[Dict[str, Any]] = None
    for k in range(2, min(max_k, len(table) - 1) + 1):
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(scaled)
        if len(set(model.labels_)) < 2:
            continue
        score = float(silhouette_score(scaled, model.labels_, sample_size=min(len(table), 2000), random_state=seed))
        if best is None or score > best["silhouette"]:
            best = {"k": k, "silhouette": score, "labels": model.labels_, "centres": model.cluster_centers_}
    if best is None:
        raise SegmentsError("the customers' behaviour does not split into segments")
    return best


def describe(table: pd.DataFrame, found: Dict[str, Any], events: pd.DataFrame) -> List[Dict[str, Any]]:
    """Each segment: number, name from its top traits, size, traits, weekly trend, most asked topics (largest first)."""
    columns = list(table.columns)
    labels = pd.Series(found["labels"], index=table.index)
    end = float(events["ts"].max())
    first_week = (end // WEEK - (TREND_WEEKS - 1)) * WEEK
    segments = []
    for number in sorted(set(found["labels"])):
        centre = found["centres"][number]
        order = np.argsort(-centre)
        traits = [[columns[i], round(float(centre[i]), 2)] for i in order[:4]]
        name = " · ".join(_readable(columns[i]) for i in order[:2] if centre[i] > 0) or "typical customers"
        members = set(labels[labels == number].index)
        mine = events[events["customer_id"].isin(members)]
        weeks = Counter(((mine["ts"] // WEEK) * WEEK).astype(int).tolist())
        trend = [[int(first_week + i * WEEK), int(weeks.get(int(first_week + i * WEEK), 0))] for i in range(TREND_WEEKS)]
        asked = Counter(mine.loc[mine["kind"] == "topic", "topic"].dropna().tolist()).most_common(5)
        segments.append({"cluster": int(number), "name": name, "size": len(members), "traits": traits,
                         "trend": trend, "top_topics": [[t, int(c)] for t, c in asked], "members": sorted(members)})
    segments.sort(key=lambda s: -s["size"])
    return segments


def compute(engine, max_k: int = 8, seed: int = 0) -> Dict[str, Any]:
    """Find the segments of the customers in `engine`'s database and store them (replacing the last run)."""
    data = load(engine)
    table = features(data["events"], data["channels"])
    found = cluster(table, max_k=max_k, seed=seed)
    segments = describe(table, found, data["events"])
    now = time.time()
    with engine.begin() as conn:
        conn.execute(db.segment_members.delete())
        conn.execute(db.segment_clusters.delete())
        for s in segments:
            conn.execute(db.segment_clusters.insert().values(
                cluster=s["cluster"], name=s["name"][:256], size=s["size"], traits=s["traits"], trend=s["trend"],
                top_topics=s["top_topics"], silhouette=found["silhouette"], computed_at=now))
            if s["members"]:
                conn.execute(db.segment_members.insert(), [
                    {"customer_id": c, "cluster": s["cluster"], "computed_at": now} for c in s["members"]])
    return {"k": found["k"], "silhouette": found["silhouette"], "customers": len(table),
            "features": list(table.columns), "segments": segments}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="database URL (default: the configured one)")
    parser.add_argument("--max-k", type=int, default=8, help="the most segments tried (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = compute(db.connect(args.db), max_k=args.max_k, seed=args.seed)
    except SegmentsError as exc:
        print(f"no segments: {exc}", file=sys.stderr)
        return 1
    print(f"{result['customers']} customers, {result['k']} segments (silhouette {result['silhouette']:.3f})")
    for s in result["segments"]:
        asked = ", ".join(t for t, _ in s["top_topics"][:3]) or "-"
        print(f"  {s['size']:5d}  {s['name']}  (asks most: {asked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
