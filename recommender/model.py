"""`Recommender`: personalised suggestions behind one small interface.

    rec = Recommender.fit(interactions, items, sequence_epochs=20)
    rec.recommend("cust-1", k=3, context={"intent": "exchange_rate"})
    rec.record("cust-1", "travel-credit-card", "click")   # next call sees it
    rec.save("artifacts/recommender"); rec = Recommender.load("artifacts/recommender")

Inside, each part scores every item in [0, 1] and the scores are blended
with the weights of `RecommenderConfig`, over the parts that have something
to say for this customer in this context:

- popularity (overall, and of the customer's segment when known);
- collaborative: item-item similarity to the customer's recent items;
- sequence: SASRec self-attention over the recent items;
- content: the customer's recent items and topics against item text;
- context: the conversation's intent and retrieved topics against item tags
  (and item text, for a term no item is tagged with).

The best candidates are then re-ranked for variety (MMR), and each suggestion
says in a short sentence why it is there, naming only what the customer did
or asked, never their attributes.

`recommend(..., strategy=...)` ranks with one part alone instead of the blend
(`STRATEGIES`: what the suggestion arms of an experiment compare):
``popularity``, ``content`` (the customer's items and topics, and the
conversation's, against item text), ``item_item`` (collaborative) or
``sequence``; a part with nothing to say for this customer gives no
suggestions. Its blend weight does not matter, only whether it was trained.

Customer and item ids are text: an integer id (as MovieLens has them) is
turned into its text at every method, so ``recommend(42)`` and
``recommend("42")`` are the same customer.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.files import replacing_folder, write_text_atomically
from core.records import read_jsonl
from recommender.collaborative import ItemNeighbours
from recommender.config import COMPONENTS, RecommenderConfig
from recommender.content import ContentModel, humanise, item_text
from recommender.data import as_id, check_customers, check_interactions, check_items
from recommender.diversity import mmr
from recommender.popularity import Popularity
from recommender.sequence import SequenceModel

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
Context = Union[None, str, Mapping[str, Any]]
# The parts each ranking strategy scores with: the blend uses every part with a weight, the others one part alone.
STRATEGIES: Dict[str, tuple] = {
    "blend": COMPONENTS,
    "popularity": ("popularity",),
    "content": ("content",),
    "item_item": ("collaborative",),
    "sequence": ("sequence",),
}
# What a history source returns for a customer: {"segment": str|None, "interactions": DataFrame}.
HistorySource = Callable[[str], Optional[Mapping[str, Any]]]


class ModelFolderError(FileNotFoundError):
    """A recommender folder is missing or incomplete."""


class UnknownItemError(KeyError):
    """An item id the recommender's catalogue does not hold."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Suggestion:
    """One suggested item, its relevance in [0, 1] and why it is suggested."""

    item_id: str
    score: float
    reason: str
    title: str = ""
    kind: str = ""
    source: str = ""  # the part that contributed most: context, sequence, collaborative, content, popularity

    def as_dict(self) -> Dict[str, Any]:
        """The suggestion as a plain dictionary."""
        return {"item_id": self.item_id, "score": self.score, "reason": self.reason,
                "title": self.title, "kind": self.kind, "source": self.source}


@dataclass
class CustomerProfile:
    """What the recommender knows of one customer: their items in time order, topics, dismissals."""

    customer_id: str
    segment: Optional[str] = None
    items: List[int] = field(default_factory=list)
    weights: List[float] = field(default_factory=list)
    times: List[float] = field(default_factory=list)
    kinds: List[str] = field(default_factory=list)
    topics: List[List[Any]] = field(default_factory=list)  # [term, weight, time]
    dismissed: List[int] = field(default_factory=list)
    dismissed_times: List[float] = field(default_factory=list)

    @property
    def last_time(self) -> float:
        """Time of the latest event known, or -inf."""
        times = self.times[-1:] + [t[2] for t in self.topics[-1:]] + self.dismissed_times[-1:]
        return max(times) if times else -math.inf

    def recent(self, length: int, decay: float):
        """The last `length` items and their weights, each step back in time multiplied by `decay`."""
        items = np.asarray(self.items[-length:], dtype=np.int64)
        weights = np.asarray(self.weights[-length:], dtype=np.float64)
        return items, weights * decay ** np.arange(len(items))[::-1]

    def recent_topics(self, length: int, decay: float):
        """The last `length` topics and their decayed weights."""
        topics = self.topics[-length:]
        steps = decay ** np.arange(len(topics))[::-1]
        return [t[0] for t in topics], [t[1] * s for t, s in zip(topics, steps)]

    def add(self, item: Optional[int], kind: str, weight: float, when: float, topic: Optional[str] = None) -> None:
        """Append one event (kept in time order)."""
        if kind == "dismiss":
            if item is not None:
                self.dismissed.append(item)
                self.dismissed_times.append(when)
        elif item is None:
            if topic:
                self.topics.append([topic, weight, when])
        elif not self.times or when >= self.times[-1]:
            self.items.append(item); self.weights.append(weight); self.times.append(when); self.kinds.append(kind)
        else:  # an event older than the latest: insert in place so "recent" stays right
            at = int(np.searchsorted(np.asarray(self.times), when, side="right"))
            self.items.insert(at, item); self.weights.insert(at, weight); self.times.insert(at, when); self.kinds.insert(at, kind)

    def as_json(self) -> Dict[str, Any]:
        """The profile as JSON-able values."""
        return dict(self.__dict__)


class _FitDescriptor:
    """Lets `fit` be called on the class (returns a new fitted Recommender) or on an instance."""

    def __init__(self, function):
        self.function = function
        functools.update_wrapper(self, function)

    def __get__(self, instance, owner):
        return functools.partial(self.function, instance if instance is not None else owner())


class Recommender:
    """Suggestions for a customer: `fit`, `recommend`, `record`, `forget`, `save`, `load`."""

    def __init__(self, **config: Any):
        self.config = RecommenderConfig.from_mapping(config)
        self.item_ids: List[str] = []
        self.index: Dict[str, int] = {}
        self.items = pd.DataFrame(columns=["item_id", "kind", "title", "description", "tags", "url", "active"])
        self.item_tags: List[frozenset] = []
        self.active = np.zeros(0, dtype=bool)
        self.profiles: Dict[str, CustomerProfile] = {}
        self.popularity: Optional[Popularity] = None
        self.collaborative: Optional[ItemNeighbours] = None
        self.sequence: Optional[SequenceModel] = None
        self.content: Optional[ContentModel] = None
        self.fit_seconds: Dict[str, float] = {}
        self.folder: Optional[Path] = None
        self._history: Optional[HistorySource] = None
        self._history_checked: set = set()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ training

    @_FitDescriptor
    def fit(self, interactions: pd.DataFrame, items: Optional[pd.DataFrame] = None,
            customers: Optional[pd.DataFrame] = None, **config: Any) -> "Recommender":
        """Learn from `interactions` (customer_id, item_id, timestamp; optional kind, weight, topic).

        `items` (item_id, title; optional kind, description, tags, url, active)
        is the catalogue; items in it without interactions can still be
        suggested from their text and tags. `customers` (customer_id; optional
        segment, age_band) lets popularity follow the customer's segment.
        `config` overrides `RecommenderConfig` settings. Returns the fitted recommender.
        """
        self.config = RecommenderConfig.from_mapping(self.config.as_dict(), **config)
        cfg = self.config
        started = time.perf_counter()
        events = check_interactions(interactions)
        catalogue = check_items(items) if items is not None else None
        people = check_customers(customers) if customers is not None else None
        self._set_catalogue(catalogue, events)
        events = events.assign(
            item=events["item_id"].map(self.index),
            weight=events["weight"].fillna(events["kind"].map(cfg.kind_weights)).fillna(1.0),
        ).sort_values(["customer_id", "timestamp"], kind="stable")
        segments = dict(zip(people["customer_id"], people["segment"])) if people is not None else {}
        self.profiles = self._build_profiles(events, segments)
        self.fit_seconds = {"data": time.perf_counter() - started}

        liked = events[(events["kind"] != "dismiss") & events["item"].notna()]
        liked_items = liked["item"].to_numpy(dtype=np.int64)
        n = len(self.item_ids)
        started = time.perf_counter()
        self.popularity = Popularity(n).fit(
            liked_items, liked["weight"].to_numpy(dtype=np.float64),
            liked["customer_id"].map(segments).fillna("").to_numpy(dtype=object) if segments else None,
        )
        self.fit_seconds["popularity"] = time.perf_counter() - started

        self.collaborative = None
        if cfg.collaborative_weight > 0:
            started = time.perf_counter()
            customer_codes, _ = pd.factorize(liked["customer_id"])
            matrix = sp.csr_matrix((np.ones(len(liked), np.float32), (customer_codes, liked_items)),
                                   shape=(int(customer_codes.max()) + 1 if len(liked) else 0, n))
            self.collaborative = ItemNeighbours(n, cfg.neighbours, cfg.shrinkage).fit(matrix, cfg.show_progress)
            self.fit_seconds["collaborative"] = time.perf_counter() - started

        self.sequence = None
        if cfg.sequence_weight > 0:
            started = time.perf_counter()
            sequences = [np.asarray(p.items, dtype=np.int64) for p in self.profiles.values() if len(p.items) >= 2]
            self.sequence = SequenceModel(n, cfg.sequence_dim, cfg.sequence_blocks, cfg.sequence_heads,
                                          cfg.sequence_max_len, cfg.sequence_dropout, cfg.seed)
            self.sequence.fit(sequences, cfg.sequence_epochs, cfg.sequence_batch_size, cfg.sequence_lr,
                              cfg.sequence_negatives, cfg.seed, cfg.threads, cfg.show_progress)
            self.fit_seconds["sequence"] = time.perf_counter() - started

        self.content = None
        if cfg.content_weight > 0 or cfg.context_weight > 0:
            started = time.perf_counter()
            self.content = self._fit_content(cfg)
            self.fit_seconds["content"] = time.perf_counter() - started
        self._history_checked = set(self.profiles)
        return self

    def _fit_content(self, cfg: RecommenderConfig) -> Optional[ContentModel]:
        texts = [item_text(t, d, tags) for t, d, tags in zip(self.items["title"], self.items["description"], self.items["tags"])]
        try:
            return ContentModel(cfg.encoder).fit(texts, list(self.items["tags"]), cfg.show_progress)
        except Exception as exc:  # no encoder: context still matches tags exactly
            if cfg.content_weight > 0:
                raise RuntimeError(
                    f"the content part needs the sentence encoder, which could not be loaded ({exc}); "
                    f"install it (make setup) or set content_weight=0"
                ) from exc
            logger.warning("no sentence encoder (%s): context matches item tags only", exc)
            return None

    def _set_catalogue(self, catalogue: Optional[pd.DataFrame], events: pd.DataFrame) -> None:
        known = list(catalogue["item_id"]) if catalogue is not None else []
        missing = pd.unique(events["item_id"].dropna())
        extra = [i for i in missing if i not in set(known)] if catalogue is not None else list(missing)
        if catalogue is not None and extra:
            logger.warning("%d item(s) in the interactions are not in the catalogue, e.g. %s; they get their id as title",
                           len(extra), ", ".join(map(str, extra[:3])))
        rows = catalogue.to_dict("records") if catalogue is not None else []
        rows += [{"item_id": i, "kind": "product", "title": str(i), "description": "", "tags": [], "url": None, "active": True}
                 for i in extra]
        self.items = pd.DataFrame(rows, columns=["item_id", "kind", "title", "description", "tags", "url", "active"])
        self.item_ids = list(self.items["item_id"])
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.item_tags = [frozenset(t) for t in self.items["tags"]]
        self.active = self.items["active"].to_numpy(dtype=bool)

    @staticmethod
    def _build_profiles(events: pd.DataFrame, segments: Mapping[str, Optional[str]]) -> Dict[str, CustomerProfile]:
        profiles: Dict[str, CustomerProfile] = {}
        customers = events["customer_id"].to_numpy()
        if len(customers) == 0:
            return {cid: CustomerProfile(cid, seg) for cid, seg in segments.items()}
        cuts = np.flatnonzero(customers[1:] != customers[:-1]) + 1
        columns = [events[c].to_numpy() for c in ("item", "kind", "weight", "timestamp", "topic")]
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(customers)]):
            cid = customers[start]
            profile = CustomerProfile(cid, segments.get(cid))
            item, kind, weight, when, topic = (c[start:stop] for c in columns)
            liked = (kind != "dismiss") & ~pd.isna(item)
            profile.items = item[liked].astype(np.int64).tolist()
            profile.weights = weight[liked].astype(float).tolist()
            profile.times = when[liked].astype(float).tolist()
            profile.kinds = kind[liked].tolist()
            gone = (kind == "dismiss") & ~pd.isna(item)
            profile.dismissed = item[gone].astype(np.int64).tolist()
            profile.dismissed_times = when[gone].astype(float).tolist()
            talked = pd.isna(item) & (kind == "topic")
            profile.topics = [[t, float(w), float(s)] for t, w, s in zip(topic[talked], weight[talked], when[talked])]
            profiles[cid] = profile
        for cid, seg in segments.items():  # customers with no interactions still carry a segment
            profiles.setdefault(cid, CustomerProfile(cid, seg))
        return profiles

    # ------------------------------------------------------------------ serving

    def recommend(self, customer_id: Union[str, int], k: int = 10, context: Context = None, exclude_seen: bool = True,
                  strategy: str = "blend") -> List[Suggestion]:
        """Up to `k` suggestions for `customer_id`, best first.

        `context` is the conversation now: an intent name, or a mapping with
        ``intent``, ``topics`` (tags of retrieved answers) and ``label`` (how
        to name the topic in the reason). `exclude_seen` leaves out items the
        customer already engaged with; dismissed and inactive items are
        always left out. A customer never seen gets popular items, shaped by
        the context. `strategy` (one of `STRATEGIES`) ranks with one part
        alone instead of the blend; an unknown one raises ValueError.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown ranking strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
        if not self.item_ids or k <= 0:
            return []
        cfg = self.config
        customer_id = as_id(customer_id)
        with self._lock:
            profile = self._profile(customer_id)
            recent, weights = profile.recent(cfg.history_length, cfg.recency_decay) if profile else (np.zeros(0, np.int64), np.zeros(0))
            topics, topic_weights = profile.recent_topics(cfg.history_length, cfg.recency_decay) if profile else ([], [])
            sequence = np.asarray(profile.items[-cfg.sequence_max_len:], dtype=np.int64) if profile else recent
            seen = set(profile.items) if (profile and exclude_seen) else set()
            dismissed = set(profile.dismissed) if profile else set()
            segment = profile.segment if profile else None
        terms, label = _context_terms(context)
        if strategy == "blend":
            use = [name for name in COMPONENTS if cfg.weight(name) > 0]
        else:
            use = list(STRATEGIES[strategy])
            if strategy == "content":  # what the customer asks about now counts as one of their topics
                topics, topic_weights = list(topics) + terms, list(topic_weights) + [1.0] * len(terms)
        parts = self._part_scores(recent, weights, topics, topic_weights, sequence, segment, terms, use)
        blended, denominator = np.zeros(len(self.item_ids)), 0.0
        for name, scores in parts.items():
            weight = cfg.weight(name) if strategy == "blend" else 1.0
            blended += weight * scores
            denominator += weight
        if denominator == 0:
            return []
        blended /= denominator

        allowed = self.active.copy()
        blocked = list(seen | dismissed)
        if blocked:
            allowed[blocked] = False
        candidates = np.flatnonzero(allowed)
        if len(candidates) == 0:
            return []
        pool = min(len(candidates), max(k, cfg.diversity_candidates if cfg.diversity < 1.0 else k))
        top = candidates[np.argpartition(-blended[candidates], pool - 1)[:pool]] if pool < len(candidates) else candidates
        top = top[np.argsort(-blended[top], kind="stable")]
        if cfg.diversity < 1.0 and k > 1 and len(top) > 1:
            top = top[mmr(blended[top], self._similarity(top), k, cfg.diversity)]
        top = top[:k]
        return self._explain(top, blended, parts, recent, weights, terms, label, segment)

    def _part_scores(self, recent, weights, topics, topic_weights, sequence, segment, terms, use) -> Dict[str, np.ndarray]:
        """Scores in [0, 1] over all items of each part named in `use` that has a signal here."""
        parts = {}
        if "context" in use and terms:
            parts["context"] = self._context_scores(terms)
        if "sequence" in use and self.sequence is not None and len(sequence):
            scores = self.sequence.score(sequence)
            if scores is not None:
                parts["sequence"] = _min_max(scores)
        if "collaborative" in use and self.collaborative is not None and len(recent):
            scores = self.collaborative.score(recent, weights)
            if scores is not None and scores.max() > 0:
                parts["collaborative"] = _min_max(scores)
        if "content" in use and self.content is not None and (len(recent) or topics):
            scores = self.content.profile_scores(recent, weights, topics, topic_weights)
            if scores is not None:
                parts["content"] = scores
        if "popularity" in use and self.popularity is not None:
            parts["popularity"] = self.popularity.score(segment)
        return parts

    def _context_scores(self, terms: Sequence[str]) -> np.ndarray:
        scores = np.zeros(len(self.item_ids))
        for term in terms:
            exact = np.fromiter((term in tags for tags in self.item_tags), dtype=bool, count=len(self.item_tags))
            if exact.any():
                scores = np.maximum(scores, exact.astype(np.float64))
            elif self.content is not None:  # no item carries this tag: fall back on text similarity
                similar = self.content.similarity_to(term, self.config.context_similarity_cap)
                if similar is not None:
                    scores = np.maximum(scores, similar)
        return scores

    def _similarity(self, top: np.ndarray) -> np.ndarray:
        """Pairwise similarity of candidate items, from the richest item representation at hand."""
        if self.content is not None and self.content.item_vectors.size:
            vectors = self.content.item_vectors[top]
            return vectors @ vectors.T
        if self.sequence is not None:
            vectors = self.sequence.item_vectors()[top]
            return vectors @ vectors.T
        if self.collaborative is not None:
            return self.collaborative.pair_similarity(top, top)
        return np.eye(len(top))

    def _explain(self, top, blended, parts, recent, weights, terms, label, segment) -> List[Suggestion]:
        cfg = self.config
        links = self.collaborative.strongest_links(recent, weights, top) if ("collaborative" in parts) else None
        titles = self.items["title"].tolist()
        kinds = self.items["kind"].tolist()
        suggestions = []
        for position, item in enumerate(top):
            contributions = {name: cfg.weight(name) * float(scores[item]) for name, scores in parts.items()}
            leader = max(COMPONENTS, key=lambda name: contributions.get(name, -1.0))
            reason = self._reason(leader, item, position, links, recent, weights, terms, label, titles)
            suggestions.append(Suggestion(self.item_ids[item], round(float(blended[item]), 4), reason,
                                          titles[item], kinds[item], leader))
        return suggestions

    def _reason(self, leader, item, position, links, recent, weights, terms, label, titles) -> str:
        # Reasons name what the customer did or asked in their dealings with us, never their attributes.
        if leader == "context":
            tag = next((t for t in terms if t in self.item_tags[item]), None)
            topic = label or humanise(tag or terms[0])
            return f"Because you asked about {topic}"
        if leader == "collaborative" and links is not None and links[position] >= 0:
            return f"Often chosen with {titles[links[position]]}"
        if leader == "sequence" and len(recent):
            return f"A common next step after {titles[recent[-1]]}"
        if leader == "content" and len(recent) and self.content is not None:
            closest = recent[int(np.argmax(self.content.item_vectors[recent] @ self.content.item_vectors[item] * weights))]
            return f"Similar to {titles[closest]}"
        if leader in ("collaborative", "sequence", "content"):
            return "Based on what you've looked at before"
        return "Popular with other customers"

    # ------------------------------------------------------------------ online updates

    def record(self, customer_id: Union[str, int], item_id: Union[str, int, None], kind: str = "click",
               weight: Optional[float] = None, timestamp: Optional[float] = None, topic: Optional[str] = None) -> None:
        """Add one interaction now; the next `recommend` for this customer takes it into account.

        `kind` is view, click, purchase, dismiss, topic, ...; a ``topic`` event
        has `topic` and may have no item. Raises `UnknownItemError` for an item
        the catalogue does not hold.
        """
        kind = (kind or "click").strip().lower()
        customer_id = as_id(customer_id)
        item = None
        if item_id is not None:
            item_id = as_id(item_id)
            if item_id not in self.index:
                raise UnknownItemError(f"item {item_id!r} is not in the recommender's catalogue; add it with add_items()")
            item = self.index[item_id]
        elif kind != "topic" or not topic:
            raise ValueError("record() needs an item_id, or kind='topic' with a topic")
        weight = float(self.config.kind_weights.get(kind, 1.0) if weight is None else weight)
        when = time.time() if timestamp is None else float(timestamp)
        with self._lock:
            profile = self._profile(customer_id) or self.profiles.setdefault(customer_id, CustomerProfile(customer_id))
            profile.add(item, kind, weight, when, topic)
            if item is not None and kind != "dismiss" and self.popularity is not None:
                self.popularity.counts[item] += weight

    def forget(self, customer_id: Union[str, int]) -> bool:
        """Erase everything held about `customer_id`: in memory and in the folder it was loaded from.

        Returns whether anything was held. Item popularity and item-item
        similarities are counts over all customers and stay until the next training.
        """
        customer_id = as_id(customer_id)
        with self._lock:
            known = self.profiles.pop(customer_id, None) is not None
            self._history_checked.discard(customer_id)
            if known and self.folder is not None and (self.folder / "profiles.jsonl").exists():
                _write_profiles(self.folder, self.profiles)
        return known

    def use_history(self, source: Optional[HistorySource], drop_saved: bool = False) -> None:
        """Read a customer's history from `source` the first time they are seen in this process.

        `source(customer_id)` returns None or {"segment": ..., "interactions":
        DataFrame}; events newer than what the model holds are added, so a
        customer with history in the database but unknown to the trained
        model still gets personal suggestions. `drop_saved` forgets the
        profiles the model was trained or loaded with, and detaches it from
        its folder, so that every profile comes from `source` alone (a
        serving process: a customer erased from the database cannot come
        back from a saved model).
        """
        with self._lock:
            self._history = source
            self._history_checked = set()
            if drop_saved:
                self.profiles = {}
                self.folder = None

    def _profile(self, customer_id: str) -> Optional[CustomerProfile]:
        profile = self.profiles.get(customer_id)
        if self._history is None or customer_id in self._history_checked:
            return profile
        self._history_checked.add(customer_id)
        try:
            found = self._history(customer_id)
        except Exception:  # a history that cannot be read must not stop the suggestions
            logger.exception("could not read the history of customer %r", customer_id)
            return profile
        if not found:
            return profile
        frame = found.get("interactions")
        if profile is None:
            profile = CustomerProfile(customer_id)
        if found.get("segment"):
            profile.segment = found["segment"]
        if frame is not None and len(frame):
            newer = check_interactions(frame, errors="skip")
            newer = newer[newer["timestamp"] > profile.last_time].sort_values("timestamp", kind="stable")
            for row in newer.itertuples(index=False):
                item = self.index.get(row.item_id) if row.item_id is not None else None
                if row.item_id is not None and item is None:
                    continue  # an item no longer in the catalogue
                weight = row.weight if not math.isnan(row.weight) else self.config.kind_weights.get(row.kind, 1.0)
                profile.add(item, row.kind, float(weight), float(row.timestamp), row.topic)
        self.profiles[customer_id] = profile
        return profile

    # ------------------------------------------------------------------ catalogue

    def item(self, item_id: Union[str, int]) -> Dict[str, Any]:
        """The catalogue entry of `item_id` (title, kind, description, tags, url, active)."""
        item_id = as_id(item_id)
        if item_id not in self.index:
            raise UnknownItemError(f"item {item_id!r} is not in the recommender's catalogue")
        row = self.items.iloc[self.index[item_id]].to_dict()
        row["tags"] = list(row["tags"])
        return row

    def add_items(self, items: pd.DataFrame) -> List[str]:
        """Add new catalogue items without retraining (suggested from their text and tags); returns their ids.

        Items already held are updated (title, description, tags, active) but keep their scores.
        """
        checked = check_items(items)
        with self._lock:
            new_rows, added = [], []
            for row in checked.to_dict("records"):
                if row["item_id"] in self.index:
                    at = self.index[row["item_id"]]
                    for column in ("kind", "title", "description", "tags", "url", "active"):
                        self.items.at[at, column] = row[column]
                    self.item_tags[at] = frozenset(row["tags"])
                    self.active[at] = row["active"]
                else:
                    new_rows.append(row)
                    added.append(row["item_id"])
            if not new_rows:
                return []
            fresh = pd.DataFrame(new_rows, columns=self.items.columns)
            if self.content is not None:
                self.content.add([item_text(r["title"], r["description"], r["tags"]) for r in new_rows], [r["tags"] for r in new_rows])
            self.items = pd.concat([self.items, fresh], ignore_index=True)
            self.item_ids = list(self.items["item_id"])
            self.index = {item: i for i, item in enumerate(self.item_ids)}
            self.item_tags += [frozenset(r["tags"]) for r in new_rows]
            self.active = np.concatenate([self.active, fresh["active"].to_numpy(dtype=bool)])
            for part in (self.popularity, self.collaborative, self.sequence):
                if part is not None:
                    part.resize(len(self.item_ids))
        return added

    # ------------------------------------------------------------------ persistence

    def save(self, folder: Union[str, os.PathLike]) -> Path:
        """Write the recommender to `folder` (replaced as a whole, so a reader never sees half a model)."""
        folder = Path(folder)
        with replacing_folder(folder) as staging:
            with self._lock:
                manifest = {
                    "format": FORMAT_VERSION, "config": self.config.as_dict(), "fit_seconds": self.fit_seconds,
                    "parts": [name for name, part in (("popularity", self.popularity), ("collaborative", self.collaborative),
                                                      ("sequence", self.sequence), ("content", self.content)) if part is not None],
                    "items": len(self.item_ids), "customers": len(self.profiles), "saved_at": time.time(),
                }
                (staging / "recommender.json").write_text(json.dumps(manifest, indent=2))
                with (staging / "items.jsonl").open("w", encoding="utf-8") as fh:
                    for row in self.items.to_dict("records"):
                        row["tags"] = list(row["tags"])
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                _write_profiles(staging, self.profiles)
                for part in (self.popularity, self.collaborative, self.sequence, self.content):
                    if part is not None:
                        part.save(staging)
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: Union[str, os.PathLike]) -> "Recommender":
        """Read a recommender written by `save`; `ModelFolderError` says how to make one if it is missing."""
        folder = Path(folder)
        manifest_path = folder / "recommender.json"
        if not manifest_path.is_file():
            raise ModelFolderError(
                f"no recommender in {folder}: train one with `python -m training.train_recommender --out {folder}`"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise ModelFolderError(f"{folder} holds recommender format {manifest.get('format')}, this code reads {FORMAT_VERSION}; retrain it")
        model = cls(**manifest["config"])
        rows = [row for _, row in read_jsonl(folder / "items.jsonl")]
        model.items = pd.DataFrame(rows, columns=["item_id", "kind", "title", "description", "tags", "url", "active"])
        model.item_ids = list(model.items["item_id"])
        model.index = {item: i for i, item in enumerate(model.item_ids)}
        model.item_tags = [frozenset(t) for t in model.items["tags"]]
        model.active = model.items["active"].to_numpy(dtype=bool)
        model.profiles = _read_profiles(folder)
        model._history_checked = set(model.profiles)
        parts = set(manifest["parts"])
        try:
            model.popularity = Popularity.load(folder) if "popularity" in parts else None
            model.collaborative = ItemNeighbours.load(folder, model.config.neighbours, model.config.shrinkage) if "collaborative" in parts else None
            model.sequence = SequenceModel.load(folder) if "sequence" in parts else None
            model.content = ContentModel.load(folder, model.config.encoder) if "content" in parts else None
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFolderError(f"the recommender in {folder} is incomplete ({exc}); retrain it with `python -m training.train_recommender`") from exc
        model.fit_seconds = manifest.get("fit_seconds", {})
        model.folder = folder
        return model

    @classmethod
    def from_catalogue(cls, items: pd.DataFrame, **config: Any) -> "Recommender":
        """A recommender that knows only the catalogue: popularity is flat, context and content still work."""
        empty = pd.DataFrame(columns=["customer_id", "item_id", "timestamp"])
        config.setdefault("sequence_weight", 0.0)
        config.setdefault("collaborative_weight", 0.0)
        return cls.fit(empty, items, **config)


def _context_terms(context: Context):
    """(terms, label) from a context: an intent name or {intent, topics, label}."""
    if context is None:
        return [], None
    if isinstance(context, str):
        return [context], None
    terms = []
    if context.get("intent"):
        terms.append(str(context["intent"]))
    for topic in context.get("topics") or []:
        if topic and str(topic) not in terms:
            terms.append(str(topic))
    return terms, context.get("label")


def _min_max(scores: np.ndarray) -> np.ndarray:
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 1e-12:
        return np.zeros_like(scores, dtype=np.float64)
    return (scores - low) / (high - low)


def _write_profiles(folder: Path, profiles: Mapping[str, CustomerProfile]) -> None:
    # Written beside and renamed, so an erasure never leaves a half-written file.
    write_text_atomically(
        folder / "profiles.jsonl",
        "".join(json.dumps(profile.as_json(), ensure_ascii=False) + "\n" for profile in profiles.values()),
    )


def _read_profiles(folder: Path) -> Dict[str, CustomerProfile]:
    profiles = {}
    path = folder / "profiles.jsonl"
    if path.exists():
        for _, data in read_jsonl(path, required=("customer_id",)):
            profiles[data["customer_id"]] = CustomerProfile(**data)
    return profiles
