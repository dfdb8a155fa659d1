"""Collaborative filtering for implicit feedback: items that the same customers engage with.

An item-to-item model in the spirit of implicit's ItemItemRecommender: the
cosine similarity of two items' customer sets, pruned to each item's nearest
neighbours. A customer's scores are the similarities to their recent items,
more recent items counting more, so what they did last weighs most.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

# Rows of the co-occurrence matrix computed at once (memory: block x items floats).
_BLOCK = 1024


class ItemNeighbours:
    """Item-item cosine similarities, `neighbours` kept per item (a sparse matrix)."""

    def __init__(self, n_items: int, neighbours: int = 200, shrinkage: float = 0.0):
        self.n_items, self.neighbours, self.shrinkage = n_items, neighbours, shrinkage
        self.similarity = sp.csr_matrix((n_items, n_items), dtype=np.float32)

    def fit(self, customer_items: sp.csr_matrix, show_progress: bool = False) -> "ItemNeighbours":
        """Learn from a customers x items matrix whose non-zeros mark an engagement."""
        engaged = customer_items.copy().tocsr()
        engaged.data[:] = 1.0
        engaged = engaged.astype(np.float32)
        counts = np.asarray(engaged.sum(axis=0)).ravel()
        root = np.sqrt(np.maximum(counts, 1.0)).astype(np.float32)
        by_item = engaged.T.tocsr()
        keep = min(self.neighbours, max(self.n_items - 1, 1))
        rows, cols, vals = [], [], []
        blocks = range(0, self.n_items, _BLOCK)
        for start in tqdm(blocks, desc="item neighbours", disable=not show_progress, leave=False):
            stop = min(start + _BLOCK, self.n_items)
            co = (by_item[start:stop] @ engaged).toarray()
            sim = co / (root[start:stop, None] * root[None, :] + self.shrinkage)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0  # an item is not its own neighbour
            if keep < self.n_items:
                top = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
            else:
                top = np.tile(np.arange(self.n_items), (stop - start, 1))
            picked = np.take_along_axis(sim, top, axis=1)
            local, which = np.nonzero(picked > 0)
            rows.append(local + start)
            cols.append(top[local, which])
            vals.append(picked[local, which])
        if rows:
            self.similarity = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(self.n_items, self.n_items), dtype=np.float32,
            )
        return self

    def resize(self, n_items: int) -> None:
        """Make room for items added after training (they have no neighbours yet)."""
        if n_items > self.n_items:
            self.similarity = sp.csr_matrix(
                (self.similarity.data, self.similarity.indices, np.concatenate(
                    [self.similarity.indptr, np.full(n_items - self.n_items, self.similarity.indptr[-1])])),
                shape=(n_items, n_items),
            )
            self.n_items = n_items

    def score(self, recent: np.ndarray, weights: np.ndarray) -> Optional[np.ndarray]:
        """Scores of every item for a customer whose recent items are `recent` with `weights`; None without history."""
        if len(recent) == 0:
            return None
        return np.asarray(self.similarity[recent].T @ weights).ravel()

    def strongest_links(self, recent: np.ndarray, weights: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For each of `items`, the recent item giving it most of its score (for the reason), or -1."""
        if len(recent) == 0 or len(items) == 0:
            return np.full(len(items), -1, dtype=np.int64)
        contributions = self.similarity[recent][:, items].toarray() * weights[:, None]
        best = contributions.argmax(axis=0)
        return np.where(contributions[best, np.arange(len(items))] > 0, recent[best], -1)

    def pair_similarity(self, a: Iterable[int], b: Iterable[int]) -> np.ndarray:
        """Similarities between items `a` (rows) and `b` (columns), for the diversity re-rank."""
        sub = self.similarity[np.asarray(list(a))][:, np.asarray(list(b))].toarray()
        return np.maximum(sub, sub.T) if sub.shape[0] == sub.shape[1] else sub

    def save(self, folder: Path) -> None:
        """Write the similarity matrix to `folder`/neighbours.npz."""
        sp.save_npz(folder / "neighbours.npz", self.similarity.tocsr())

    @classmethod
    def load(cls, folder: Path, neighbours: int = 200, shrinkage: float = 0.0) -> "ItemNeighbours":
        """Read what `save` wrote."""
        similarity = sp.load_npz(folder / "neighbours.npz").tocsr()
        model = cls(similarity.shape[0], neighbours, shrinkage)
        model.similarity = similarity
        return model
