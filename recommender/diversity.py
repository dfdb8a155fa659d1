"""Diversity re-rank: Maximal Marginal Relevance (Carbonell and Goldstein, 1998).

Picks suggestions one at a time, each time taking the candidate with the best
trade-off between its relevance and its similarity to what is already picked,
so that three suggestions are not three versions of the same card.
"""
from __future__ import annotations

import numpy as np


def mmr(relevance: np.ndarray, similarity: np.ndarray, k: int, tradeoff: float = 0.8) -> np.ndarray:
    """Positions of `k` candidates in pick order.

    `relevance` (n,) scores the candidates, `similarity` (n, n) compares them;
    `tradeoff` 1.0 keeps the relevance order, lower values favour variety.
    """
    n = len(relevance)
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if tradeoff >= 1.0 or n == 1:
        return np.argsort(-relevance, kind="stable")[:k]
    picked = [int(np.argmax(relevance))]
    closest = similarity[picked[0]].astype(np.float64).copy()  # max similarity to anything picked
    available = np.ones(n, dtype=bool)
    available[picked[0]] = False
    for _ in range(k - 1):
        gain = tradeoff * relevance - (1.0 - tradeoff) * closest
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        closest = np.maximum(closest, similarity[best])
    return np.asarray(picked, dtype=np.int64)
