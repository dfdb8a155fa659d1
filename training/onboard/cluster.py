"""Clustering customers' requests into candidate intents without being told how many there are.

1. **Embed** every request with the sentence encoder (the bundled
   all-MiniLM-L6-v2 by default).
2. **Adapt the encoder to this history, unsupervised** (`refine`): the top
   layers are tuned so that each request comes closer to its nearest
   neighbours than to the other requests of a batch (a contrastive loss over
   neighbour pairs, with in-batch neighbours masked out as negatives), for a
   few short epochs; the neighbours are found again after each epoch. The
   lower layers stay frozen and their output is computed once, which keeps
   an epoch over 10,000 requests to about a minute on two CPU cores. Nothing
   here reads a label.
3. **Estimate the number of intents** (`estimate_k`): k-means for a range of
   k, each scored by the silhouette on the adapted embeddings; the estimate
   is the best k, and its uncertainty the range of best k over resamples of
   the requests (80 % each).
4. **Cluster** with k-means at the estimate.

`training.bench_discovery` measures it on BANKING77 with the labels hidden.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Clusters:
    """The result: a cluster label for each request and how the number of clusters was chosen."""

    labels: np.ndarray
    vectors: np.ndarray  # the adapted, normalised embeddings the clusters were made on
    k: int
    low: int
    high: int
    scores: List[Tuple[int, float]]  # (k, silhouette) of the sweep
    seconds: float
    method: str


def _neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype="float32"))
    _, ids = index.search(np.ascontiguousarray(vectors, dtype="float32"), k + 1)
    out = np.empty((len(vectors), k), dtype=np.int64)
    for row, found in enumerate(ids):  # drop the request itself wherever it landed (duplicates tie)
        others = [j for j in found if j != row and j >= 0][:k]
        out[row, : len(others)] = others
        out[row, len(others):] = row
    return out


class _TopLayers:
    """The encoder split at its top `top_layers` blocks, the frozen part's output computed once."""

    def __init__(self, model_path: str, texts: Sequence[str], top_layers: int, max_length: int = 64) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from nlu.base_models import layer_runner

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.base = AutoModel.from_pretrained(model_path)
        self.base.eval()
        self.runner = layer_runner(self.base)
        if not self.runner.split:
            raise ValueError(f"the encoder's family ({self.base.config.model_type}) cannot be split into layers")
        blocks = len(self.runner.blocks(self.base))
        self.start = max(0, blocks - top_layers)
        ids = [self.tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
        self.order = np.argsort([len(i) for i in ids], kind="stable")  # batches of like lengths pad little
        self.hidden: List = [None] * len(texts)
        with torch.no_grad():
            for batch in _batches(self.order, 256):
                width = max(len(ids[j]) for j in batch)
                tokens = torch.zeros(len(batch), width, dtype=torch.long)
                mask = torch.zeros(len(batch), width, dtype=torch.long)
                for row, j in enumerate(batch):
                    tokens[row, : len(ids[j])] = torch.tensor(ids[j])
                    mask[row, : len(ids[j])] = 1
                out = self.runner.run(self.base, self.runner.embed(self.base, tokens), mask, 0, self.start)
                for row, j in enumerate(batch):
                    self.hidden[j] = out[row, : len(ids[j])].clone()
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.params = [p for block in self.runner.blocks(self.base)[self.start:] for p in block.parameters()]
        for p in self.params:
            p.requires_grad_(True)

    def embed(self, rows) -> "object":
        torch = self.torch
        width = max(self.hidden[j].shape[0] for j in rows)
        hidden = torch.zeros(len(rows), width, self.hidden[rows[0]].shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, j in enumerate(rows):
            n = self.hidden[j].shape[0]
            hidden[r, :n], mask[r, :n] = self.hidden[j], 1
        out = self.runner.run(self.base, hidden, mask, self.start)
        weights = mask.unsqueeze(-1).float()
        return torch.nn.functional.normalize((out * weights).sum(1) / weights.sum(1), dim=-1)

    def embed_all(self) -> np.ndarray:
        self.base.eval()
        out = None
        with self.torch.no_grad():
            for batch in _batches(self.order, 256):
                vectors = self.embed(batch).numpy()
                if out is None:
                    out = np.zeros((len(self.hidden), vectors.shape[1]), dtype="float32")
                out[batch] = vectors
        return out


def _batches(order: np.ndarray, size: int):
    for i in range(0, len(order), size):
        yield order[i:i + size]


def refine(texts: Sequence[str], model_path: str, epochs: int = 3, top_layers: int = 2, neighbours: int = 10,
           batch_size: int = 128, learning_rate: float = 5e-5, seed: int = 0, progress: bool = True) -> np.ndarray:
    """Normalised embeddings of `texts` from the encoder's top layers tuned on neighbour pairs (see the module)."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    model = _TopLayers(model_path, texts, top_layers)
    vectors = model.embed_all()
    if epochs <= 0 or len(texts) < 2 * batch_size:
        return vectors
    optimiser = torch.optim.AdamW(model.params, lr=learning_rate)
    rng = np.random.default_rng(seed)
    k = min(neighbours, len(texts) - 1)
    for epoch in range(epochs):
        near = _neighbours(vectors, k)
        model.base.train()
        order = rng.permutation(len(texts))
        bar = tqdm(list(_batches(order, batch_size)), desc=f"adapting the encoder, epoch {epoch + 1}/{epochs}",
                   disable=not progress, unit="batch")
        for anchors in bar:
            positives = near[anchors, rng.integers(0, k, len(anchors))]
            a, p = model.embed(anchors), model.embed(positives)
            logits = a @ p.T * 20.0
            # Another anchor's neighbour (or the anchor itself) is no negative: mask it out.
            related = (near[anchors][:, :, None] == positives[None, None, :]).any(axis=1) | \
                (positives[None, :] == anchors[:, None])
            np.fill_diagonal(related, False)
            logits = logits.masked_fill(torch.from_numpy(related), -1e4)
            target = torch.arange(len(anchors))
            loss = (torch.nn.functional.cross_entropy(logits, target) +
                    torch.nn.functional.cross_entropy(logits.T, target)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        vectors = model.embed_all()
    return vectors


def kmeans(vectors: np.ndarray, k: int, seed: int = 0, n_init: int = 3) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(vectors).labels_


def _silhouette(vectors: np.ndarray, labels: np.ndarray, sample: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    if len(set(labels[sample])) < 2:
        return -1.0
    return float(silhouette_score(vectors[sample], labels[sample], metric="cosine"))


def candidate_ks(n: int, low: int = 2, high: Optional[int] = None) -> List[int]:
    """The k values the sweep tries: about 8 % apart from 2 up to n/5 (at least 5 requests a cluster)."""
    high = max(low, min(high or 400, n // 5))
    ks, k = [], max(2, low)
    while k <= high:
        ks.append(k)
        k = max(k + 1, int(round(k * 1.08)))
    return ks


def estimate_k(vectors: np.ndarray, ks: Sequence[int], seed: int = 0, resamples: int = 4,
               sample_size: int = 3000) -> Tuple[int, int, int, List[Tuple[int, float]]]:
    """(best k, low, high, sweep scores): silhouette of k-means over `ks`, its range over resamples."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    scores = []
    for k in ks:
        labels = kmeans(vectors, k, seed, n_init=1)
        sample = rng.choice(n, min(n, sample_size), replace=False)
        scores.append((k, _silhouette(vectors, labels, sample)))
    best = max(scores, key=lambda s: s[1])[0]
    picks = []
    near_best = [k for k in ks if best / 1.6 <= k <= best * 1.6]
    for r in range(resamples):
        rows = rng.choice(n, int(0.8 * n), replace=False)
        sub = vectors[rows]
        sweep = []
        for k in near_best:
            labels = kmeans(sub, k, seed + r + 1, n_init=1)
            sample = rng.choice(len(sub), min(len(sub), sample_size), replace=False)
            sweep.append((k, _silhouette(sub, labels, sample)))
        picks.append(max(sweep, key=lambda s: s[1])[0])
    return best, min(picks + [best]), max(picks + [best]), scores


def cluster_requests(texts: Sequence[str], model_path: str, epochs: int = 3, top_layers: int = 2,
                     k: Optional[int] = None, min_k: int = 2, max_k: Optional[int] = None, seed: int = 0,
                     progress: bool = True) -> Clusters:
    """Adapt, estimate the number of intents (unless `k` is given), cluster."""
    started = time.perf_counter()
    vectors = refine(texts, model_path, epochs=epochs, top_layers=top_layers, seed=seed, progress=progress)
    if k is None:
        best, low, high, scores = estimate_k(vectors, candidate_ks(len(texts), min_k, max_k), seed)
        method = "silhouette of k-means over a sweep of k; range over 80 % resamples"
    else:
        best, low, high, scores, method = k, k, k, [], "given"
    labels = kmeans(vectors, best, seed)
    return Clusters(labels=labels, vectors=vectors, k=best, low=low, high=high, scores=scores,
                    seconds=time.perf_counter() - started, method=method)
