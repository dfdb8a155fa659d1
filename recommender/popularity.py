"""Popularity: what most customers (of the same segment, when known) engage with.

What a customer with no history gets, and a weak prior for everyone else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np


class Popularity:
    """Weighted interaction counts per item, overall and per customer segment."""

    def __init__(self, n_items: int):
        self.n_items = n_items
        self.counts = np.zeros(n_items, dtype=np.float64)
        self.segment_counts: Dict[str, np.ndarray] = {}

    def fit(self, items: np.ndarray, weights: np.ndarray, segments: Optional[np.ndarray] = None) -> "Popularity":
        """Count interactions: `items` are item indices, `weights` their weights, `segments` each row's segment or None."""
        self.counts = np.bincount(items, weights=weights, minlength=self.n_items).astype(np.float64)
        self.segment_counts = {}
        if segments is not None:
            for segment in {s for s in segments if s}:
                mask = segments == segment
                self.segment_counts[segment] = np.bincount(items[mask], weights=weights[mask], minlength=self.n_items)
        return self

    def resize(self, n_items: int) -> None:
        """Make room for items added after training (with no interactions yet)."""
        grow = n_items - self.n_items
        if grow > 0:
            self.counts = np.concatenate([self.counts, np.zeros(grow)])
            self.segment_counts = {s: np.concatenate([c, np.zeros(grow)]) for s, c in self.segment_counts.items()}
            self.n_items = n_items

    def score(self, segment: Optional[str] = None) -> np.ndarray:
        """log-scaled popularity in [0, 1]; half overall, half the segment's when it is known."""
        overall = np.log1p(np.maximum(self.counts, 0))
        overall = overall / overall.max() if overall.max() > 0 else overall
        if segment and segment in self.segment_counts:
            seg = np.log1p(np.maximum(self.segment_counts[segment], 0))
            if seg.max() > 0:
                return 0.5 * overall + 0.5 * seg / seg.max()
        return overall

    def save(self, folder: Path) -> None:
        """Write the counts to `folder`/popularity.npz."""
        np.savez(folder / "popularity.npz", counts=self.counts,
                 segments=np.array(list(self.segment_counts), dtype=str),
                 segment_counts=np.array(list(self.segment_counts.values())).reshape(len(self.segment_counts), self.n_items))

    @classmethod
    def load(cls, folder: Path) -> "Popularity":
        """Read what `save` wrote."""
        data = np.load(folder / "popularity.npz")
        model = cls(len(data["counts"]))
        model.counts = data["counts"]
        model.segment_counts = {str(s): c for s, c in zip(data["segments"], data["segment_counts"])}
        return model
