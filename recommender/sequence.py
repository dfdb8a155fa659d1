"""Sequence-aware model: self-attention over the customer's recent items (SASRec).

Kang and McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018): a
causal transformer reads the customer's last items and predicts the next
one; an item's score is the dot product of the last position's output with
the item's embedding. Trained with a sampled softmax (negatives drawn in
proportion to popularity**0.75, with the logQ correction), which ranks
better than SASRec's original binary loss and keeps training cheap on a CPU.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm


class SASRecNetwork(nn.Module):
    """Item and position embeddings, causal transformer blocks, final layer norm."""

    def __init__(self, n_items: int, dim: int, blocks: int, heads: int, max_len: int, dropout: float):
        super().__init__()
        self.heads, self.max_len = heads, max_len
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)  # index 0 pads short histories
        self.positions = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim, dropout, batch_first=True, norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        # Small initial embeddings keep the first logits near zero, as the softmax expects.
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch, length, dim) for left-padded item indices (batch, length)."""
        length = history.shape[1]
        hidden = self.dropout(self.items(history) + self.positions.weight[-length:][None])
        padded = history == 0
        future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=history.device), 1)
        # A position may look at itself and at earlier real items; every row keeps its
        # diagonal, so no row is fully masked (which would turn into NaN).
        blocked = future[None] | (padded[:, None, :] & ~torch.eye(length, dtype=torch.bool, device=history.device)[None])
        blocked = blocked.repeat_interleave(self.heads, dim=0)
        return self.norm(self.blocks(hidden, mask=blocked))


def _windows(sequences: List[np.ndarray], max_len: int):
    """(inputs, targets) windows of `max_len` steps covering every transition, left-padded with 0."""
    inputs, targets = [], []
    for sequence in sequences:
        shifted = np.asarray(sequence, dtype=np.int64) + 1
        end = len(shifted)
        while end > 1:
            start = max(0, end - max_len - 1)
            window = shifted[start:end]
            x = np.zeros(max_len, np.int64)
            y = np.zeros(max_len, np.int64)
            x[max_len - len(window) + 1:] = window[:-1]
            y[max_len - len(window) + 1:] = window[1:]
            inputs.append(x)
            targets.append(y)
            end = start + 1 if start > 0 else 0
    if not inputs:
        return torch.zeros((0, max_len), dtype=torch.long), torch.zeros((0, max_len), dtype=torch.long)
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))


class SequenceModel:
    """SASRec over item indices 0..n_items-1: `fit` on sequences, `score` a recent history."""

    def __init__(self, n_items: int, dim: int = 64, blocks: int = 2, heads: int = 1, max_len: int = 50, dropout: float = 0.2,
                 seed: int = 0):
        self.shape = {"n_items": n_items, "dim": dim, "blocks": blocks, "heads": heads, "max_len": max_len, "dropout": dropout}
        with torch.random.fork_rng(devices=[]):  # the same seed, the same model; the caller's generator untouched
            torch.manual_seed(seed)
            self.network = SASRecNetwork(n_items, dim, blocks, heads, max_len, dropout)
        self.network.eval()
        self.trained_items = np.zeros(n_items, dtype=bool)
        self._unit_vectors: Optional[np.ndarray] = None

    @property
    def n_items(self) -> int:
        return self.shape["n_items"]

    def fit(self, sequences: List[np.ndarray], epochs: int = 30, batch_size: int = 64, lr: float = 2e-3,
            negatives: int = 1024, seed: int = 0, threads: int = 1, show_progress: bool = False) -> "SequenceModel":
        """Train on customers' item sequences (oldest first) to predict each next item."""
        with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: seed it, then give it back
            torch.manual_seed(seed)
            return self._fit(sequences, epochs, batch_size, lr, negatives, seed, threads, show_progress)

    def _fit(self, sequences, epochs, batch_size, lr, negatives, seed, threads, show_progress) -> "SequenceModel":
        self._unit_vectors = None
        generator = torch.Generator().manual_seed(seed)
        inputs, targets = _windows(sequences, self.shape["max_len"])
        counts = np.bincount(np.concatenate(sequences) if sequences else np.zeros(0, np.int64), minlength=self.n_items)
        self.trained_items = counts > 0
        if len(inputs) == 0:
            return self
        sample_prob = torch.tensor(np.power(counts + 1.0, 0.75), dtype=torch.float32)
        sample_prob /= sample_prob.sum()
        sampled = 0 < negatives < self.n_items
        log_q = torch.log(sample_prob * negatives) if sampled else None
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        optimiser = torch.optim.Adam(self.network.parameters(), lr=lr)
        self.network.train()
        try:
            progress = tqdm(range(epochs), desc="sequence model", disable=not show_progress, leave=False)
            for _ in progress:
                order = torch.randperm(len(inputs), generator=generator)
                total = 0.0
                for start in range(0, len(inputs), batch_size):
                    batch = order[start:start + batch_size]
                    hidden = self.network(inputs[batch])
                    target = targets[batch]
                    real = target > 0
                    hidden, target = hidden[real], target[real]
                    if sampled:
                        drawn = torch.multinomial(sample_prob, negatives, replacement=True, generator=generator) + 1
                        positive = (hidden * self.network.items(target)).sum(-1, keepdim=True) - log_q[target - 1, None]
                        negative = hidden @ self.network.items(drawn).T - log_q[drawn - 1][None, :]
                        negative = negative.masked_fill(drawn[None, :] == target[:, None], -1e9)  # accidental hits
                        logits = torch.cat([positive, negative], dim=1)
                        loss = F.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long))
                    else:
                        logits = hidden @ self.network.items.weight[1:].T
                        loss = F.cross_entropy(logits, target - 1)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    total += loss.item() * len(target)
                progress.set_postfix(loss=f"{total / max(int((targets > 0).sum()), 1):.3f}")
        finally:
            self.network.eval()
            torch.set_num_threads(previous_threads)
        return self

    def resize(self, n_items: int) -> None:
        """Make room for items added after training (untrained: they score nothing here)."""
        grow = n_items - self.n_items
        if grow <= 0:
            return
        old = self.network.items.weight.data
        self.network.items = nn.Embedding(n_items + 1, old.shape[1], padding_idx=0)
        with torch.no_grad():
            self.network.items.weight.zero_()
            self.network.items.weight[: old.shape[0]] = old
        self.trained_items = np.concatenate([self.trained_items, np.zeros(grow, dtype=bool)])
        self.shape["n_items"] = n_items

    @torch.inference_mode()
    def score(self, recent: np.ndarray) -> Optional[np.ndarray]:
        """Next-item scores for a history of item indices (oldest first); None without history."""
        recent = np.asarray(recent, dtype=np.int64)[-self.shape["max_len"]:]
        if len(recent) == 0 or not self.trained_items.any():
            return None
        history = torch.from_numpy(recent + 1)[None]
        # One short sequence is too little work to share out: extra threads only wait on each other.
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            last = self.network(history)[0, -1]
        finally:
            torch.set_num_threads(previous)
        scores = (self.network.items.weight[1:] @ last).numpy().astype(np.float64)
        # Items never seen in training have untrained embeddings: this model knows nothing of them.
        if not self.trained_items.all():
            scores[~self.trained_items] = scores[self.trained_items].min()
        return scores

    def item_vectors(self) -> np.ndarray:
        """Unit-length item embeddings (items x dim), for the diversity re-rank; computed once per model state."""
        if self._unit_vectors is None or len(self._unit_vectors) != self.n_items:
            vectors = self.network.items.weight[1:].detach().numpy().astype(np.float32)
            self._unit_vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
        return self._unit_vectors

    def save(self, folder: Path) -> None:
        """Write the weights (safetensors) and shape (JSON) to `folder`."""
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in self.network.state_dict().items()}
        state["trained_items"] = torch.from_numpy(self.trained_items.astype(np.uint8))
        save_file(state, str(folder / "sequence.safetensors"))
        (folder / "sequence.json").write_text(json.dumps(self.shape, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "SequenceModel":
        """Read what `save` wrote."""
        from safetensors.torch import load_file

        shape = json.loads((folder / "sequence.json").read_text())
        model = cls(**shape)
        state = load_file(str(folder / "sequence.safetensors"))
        model.trained_items = state.pop("trained_items").numpy().astype(bool)
        model.network.load_state_dict(state)
        model.network.eval()
        return model
