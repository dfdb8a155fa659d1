"""Content side: items described by their text, embedded with the project's sentence encoder.

It lets an item that nobody has touched yet be suggested: to customers whose
history reads like it, and in conversations about one of its topics. The
encoder is the one of `core.encoder.load_encoder`, loaded only when text
must be embedded (training, new items, a context term no item is tagged with).
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np


def humanise(term: str) -> str:
    """'card_payment_fee' -> 'card payment fee'."""
    return re.sub(r"[_\-]+", " ", str(term)).strip()


def item_text(title: str, description: str, tags: Sequence[str]) -> str:
    """The text an item is embedded from: title, description and its tags in words."""
    topics = ", ".join(humanise(t) for t in tags)
    return ". ".join(part for part in (title, description, f"Topics: {topics}" if topics else "") if part)


class ContentModel:
    """Unit-length text embeddings of the items and of their tags."""

    def __init__(self, encoder_name: Optional[str] = None):
        self.encoder_name = encoder_name
        self.item_vectors = np.zeros((0, 0), dtype=np.float32)
        self.term_vectors: Dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _encode(self, texts: List[str], show_progress: bool = False) -> np.ndarray:
        from core.encoder import load_encoder

        encoder = load_encoder(self.encoder_name)
        return np.asarray(
            encoder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=show_progress),
            dtype=np.float32,
        )

    def fit(self, texts: List[str], tags: List[Sequence[str]], show_progress: bool = False) -> "ContentModel":
        """Embed every item's text and every tag that appears on an item."""
        self.item_vectors = self._encode(texts, show_progress) if texts else np.zeros((0, 0), np.float32)
        all_tags = sorted({t for item in tags for t in item})
        self.term_vectors = {}
        if all_tags:
            for tag, vector in zip(all_tags, self._encode([humanise(t) for t in all_tags])):
                self.term_vectors[tag] = vector
        return self

    def add(self, texts: List[str], tags: List[Sequence[str]]) -> None:
        """Embed items added after training (appended in order)."""
        vectors = self._encode(texts)
        self.item_vectors = vectors if self.item_vectors.size == 0 else np.vstack([self.item_vectors, vectors])
        new_tags = sorted({t for item in tags for t in item} - set(self.term_vectors))
        if new_tags:
            for tag, vector in zip(new_tags, self._encode([humanise(t) for t in new_tags])):
                self.term_vectors[tag] = vector

    def term_vector(self, term: str) -> Optional[np.ndarray]:
        """The embedding of a topic term, embedding (and keeping) it on first use; None if the encoder is missing."""
        vector = self.term_vectors.get(term)
        if vector is None:
            try:
                with self._lock:
                    vector = self._encode([humanise(term)])[0]
            except Exception:  # no encoder here: the term then only matches tags exactly
                return None
            self.term_vectors[term] = vector
        return vector

    def profile_scores(self, recent: np.ndarray, weights: np.ndarray, topics: Iterable[str] = (), topic_weights: Iterable[float] = ()) -> Optional[np.ndarray]:
        """Cosine of each item to the customer's taste (their recent items and known topics); None without history."""
        if self.item_vectors.size == 0:
            return None
        profile = np.zeros(self.item_vectors.shape[1], dtype=np.float32)
        if len(recent):
            profile += weights.astype(np.float32) @ self.item_vectors[recent]
        for topic, weight in zip(topics, topic_weights):
            vector = self.term_vectors.get(topic)  # only known tags: never load the encoder for a profile
            if vector is not None:
                profile += float(weight) * vector
        norm = float(np.linalg.norm(profile))
        if norm == 0.0:
            return None
        return np.maximum(self.item_vectors @ (profile / norm), 0.0).astype(np.float64)

    def similarity_to(self, term: str, cap: float = 0.8) -> Optional[np.ndarray]:
        """How close each item's text is to a topic term, in [0, cap]; None when it cannot be embedded."""
        if self.item_vectors.size == 0:
            return None
        vector = self.term_vector(term)
        if vector is None:
            return None
        # MiniLM cosines below ~0.3 mean "unrelated"; above ~0.7 "the same topic".
        return np.clip((self.item_vectors @ vector - 0.3) / 0.4, 0.0, 1.0).astype(np.float64) * cap

    def save(self, folder: Path) -> None:
        """Write the embeddings to `folder` (npy + JSON)."""
        np.save(folder / "content_items.npy", self.item_vectors)
        names = sorted(self.term_vectors)
        np.save(folder / "content_terms.npy", np.stack([self.term_vectors[n] for n in names]) if names else np.zeros((0, 0), np.float32))
        (folder / "content.json").write_text(json.dumps({"encoder": self.encoder_name, "terms": names}))

    @classmethod
    def load(cls, folder: Path, encoder_name: Optional[str] = None) -> "ContentModel":
        """Read what `save` wrote."""
        meta = json.loads((folder / "content.json").read_text())
        model = cls(encoder_name if encoder_name is not None else meta.get("encoder"))
        model.item_vectors = np.load(folder / "content_items.npy")
        terms = np.load(folder / "content_terms.npy")
        model.term_vectors = {name: terms[i] for i, name in enumerate(meta["terms"])}
        return model
