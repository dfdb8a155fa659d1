"""Customers' thumbs up and down on retrieved answers, applied to the next search.

Ratings live in the ``answer_ratings`` table (`core.db`), one row per rating
with the question the customer had asked. `AnswerFeedback` keeps the ratings
of historical answers (answer ids ``history:<record id>``) in memory together
with the embedding of that question, reads new rows incrementally before each
use, and re-ranks hits for a new query using only the ratings given for
*similar* queries (cosine similarity at least ``cluster_similarity``: the
query's cluster):

- each net vote moves the hit's score by ``weight`` (scaled by how similar the
  rated query was), at most ``max_shift`` either way;
- an answer with ``downvote_limit`` or more downs in the cluster, and more
  downs than ups, is no longer offered for that cluster.

Changes take effect on the next message: no restart, no rebuild.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import sqlalchemy as sa

from core.db import answer_ratings, connect

logger = logging.getLogger(__name__)

HISTORY_PREFIX = "history:"
RATINGS = {"up": 1, "down": -1}


def history_answer_id(record_id: str) -> str:
    """The answer id under which ratings of a historical answer are stored."""
    return f"{HISTORY_PREFIX}{record_id}"


def record_rating(
    answer_id: str,
    rating: str,
    query: str,
    customer_id: Optional[str] = None,
    conversation_id: Optional[str] = None,
    database_url: Optional[str] = None,
) -> int:
    """Store a thumbs up (``"up"``) or down (``"down"``) for `answer_id`, given for `query`.

    The query is redacted before it is stored. Returns the row id. Raises
    ValueError for a rating other than up/down or an empty answer id, and
    `core.db.DatabaseUnavailableError` when the database cannot be reached.
    """
    from core.redaction import redact

    if rating not in RATINGS:
        raise ValueError(f"rating must be 'up' or 'down', got {rating!r}")
    if not answer_id:
        raise ValueError("answer_id is empty")
    source = answer_id.split(":", 1)[0] if ":" in answer_id else None
    if database_url is None:  # resolved here: connect() caches engines by the URL it is given
        from core.settings import get_settings

        database_url = get_settings().database_url
    with connect(database_url).begin() as conn:
        result = conn.execute(
            answer_ratings.insert().values(
                answer_id=answer_id,
                query=redact(query or ""),
                rating=RATINGS[rating],
                customer_id=customer_id,
                conversation_id=conversation_id,
                source=source,
                ts=time.time(),
            )
        )
        return int(result.inserted_primary_key[0])


def rating_counts(engine, customer_id: str) -> Dict[str, int]:
    """How many thumbs up and down `customer_id` has given: {"up": n, "down": n}."""
    with engine.connect() as conn:
        counts = dict(conn.execute(
            sa.select(answer_ratings.c.rating, sa.func.count())
            .where(answer_ratings.c.customer_id == customer_id)
            .group_by(answer_ratings.c.rating)
        ).all())
    return {name: counts.get(value, 0) for name, value in RATINGS.items()}


class _Ratings:
    """The rated queries of one answer: vectors and +1/-1, appended by `refresh`, read by `votes`.

    One tuple holds both, replaced whole on append, so a reader on another thread
    (the event loop, while the model thread refreshes) always sees them matching.
    """

    def __init__(self) -> None:
        self._state: Tuple[tuple, tuple, Optional[np.ndarray]] = ((), (), None)

    def append(self, vector: np.ndarray, value: int) -> None:
        vectors, values, _ = self._state
        self._state = (vectors + (vector,), values + (value,), None)

    def snapshot(self) -> Tuple[np.ndarray, np.ndarray]:
        """(stacked vectors, values) as of now."""
        state = self._state
        vectors, values, stacked = state
        if stacked is None:
            stacked = np.vstack(vectors)
            if self._state is state:  # not appended to meanwhile: keep the stack
                self._state = (vectors, values, stacked)
        return stacked, np.asarray(values)


# Built once (read on every message): SQLAlchemy then skips rebuilding and re-keying it.
_NEW_RATINGS = (
    sa.select(answer_ratings.c.id, answer_ratings.c.answer_id, answer_ratings.c.query, answer_ratings.c.rating)
    .where(answer_ratings.c.id > sa.bindparam("after"))
    .where(answer_ratings.c.answer_id.like(f"{HISTORY_PREFIX}%"))
    .order_by(answer_ratings.c.id)
)


class AnswerFeedback:
    """Ratings of historical answers, read incrementally and applied to hits."""

    def __init__(
        self,
        encode: Callable[[Sequence[str]], np.ndarray],
        database_url: Optional[str] = None,
        cluster_similarity: float = 0.75,
        downvote_limit: int = 2,
        weight: float = 0.05,
        max_shift: float = 0.15,
        reread_window: int = 100,
        reread_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`encode` turns texts into normalised vectors (the index's encoder)."""
        if database_url is None:  # resolved here: connect() caches engines by the URL it is given
            from core.settings import get_settings

            database_url = get_settings().database_url
        self._encode = encode
        self.database_url = database_url
        self.cluster_similarity = cluster_similarity
        self.downvote_limit = downvote_limit
        self.weight = weight
        self.max_shift = max_shift
        # Rows can become visible out of id order (concurrent PostgreSQL transactions);
        # re-reading a short window behind the newest id seen catches them. Every message
        # reads what is newer than the newest id seen (a new rating counts from the next
        # message); the window only every `reread_every_s`, since reading it on every
        # message cost a loaded server about 4 ms of each.
        self.reread_window = reread_window
        self.reread_every_s = reread_every_s
        self._clock = clock
        self._reread_at = float("-inf")
        self._by_answer: Dict[str, _Ratings] = {}
        self._seen: set = set()
        self._last_id = 0
        self._warned = False
        self._refreshing = threading.Lock()  # one refresh at a time (the model thread's, or an inline one)

    def __len__(self) -> int:
        return len(self._seen)

    def refresh(self) -> int:
        """Read ratings stored since the last call; returns how many were new.

        A database that cannot be read is logged (once) and skipped, so that a
        database problem never stops the assistant from answering. The Rasa
        server calls it on the model thread, with each message's prefetch
        (`AnswerRetriever`), not on the event loop. A refresh already running
        elsewhere makes this one return 0 at once.
        """
        if not self._refreshing.acquire(blocking=False):
            return 0
        try:
            return self._refresh()
        finally:
            self._refreshing.release()

    def _refresh(self) -> int:
        try:
            after = self._last_id
            now = self._clock()
            if now - self._reread_at >= self.reread_every_s:
                after, self._reread_at = self._last_id - self.reread_window, now
            engine = connect(self.database_url)
            with engine.connect() as conn:
                rows = conn.execute(_NEW_RATINGS, {"after": after}).fetchall()
        except Exception as exc:  # noqa: BLE001 - any database failure degrades to "no feedback"
            if not self._warned:
                logger.warning("answer ratings could not be read (%s); answering without them", exc)
                self._warned = True
            return 0
        self._warned = False
        new = [row for row in rows if row.id not in self._seen]
        if not new:
            return 0
        vectors = self._encode([row.query for row in new])
        for row, vector in zip(new, vectors):
            self._seen.add(row.id)
            self._last_id = max(self._last_id, row.id)
            self._by_answer.setdefault(row.answer_id[len(HISTORY_PREFIX):], _Ratings()).append(vector, int(np.sign(row.rating)))
        return len(new)

    def votes(self, query_vector: np.ndarray, record_id: str) -> Dict[str, float]:
        """Ups and downs given to `record_id` for queries in the cluster of `query_vector`, and their weighted net."""
        ratings = self._by_answer.get(record_id)
        if ratings is None:
            return {"up": 0, "down": 0, "net": 0.0}
        matrix, values = ratings.snapshot()
        similarity = matrix @ query_vector
        in_cluster = similarity >= self.cluster_similarity
        values = values[in_cluster]
        return {
            "up": int((values > 0).sum()),
            "down": int((values < 0).sum()),
            "net": float((values * similarity[in_cluster]).sum()),
        }

    def apply(self, query_vector: np.ndarray, hits: List[dict]) -> List[dict]:
        """`hits` (dicts with id and score) re-ranked by the ratings of similar queries, best first.

        Each returned hit keeps its score before ratings as ``base_score`` and gains ``votes``
        when ratings apply; hits voted down past the limit are left out.
        """
        ranked = []
        for hit in hits:
            hit = {**hit, "base_score": hit.get("base_score", hit["score"])}
            votes = self.votes(query_vector, str(hit["id"]))
            if votes["up"] or votes["down"]:
                if votes["down"] >= self.downvote_limit and votes["down"] > votes["up"]:
                    continue
                shift = float(np.clip(self.weight * votes["net"], -self.max_shift, self.max_shift))
                hit["score"] = round(hit["base_score"] + shift, 4)
                hit["votes"] = {"up": votes["up"], "down": votes["down"]}
            ranked.append(hit)
        ranked.sort(key=lambda h: -h["score"])
        return ranked
