"""Benchmark: intent discovery on labelled requests used as history with the labels hidden.

    python -m training.bench_discovery --data ../shared/data/banking77/train.csv

Ours (`training.onboard.cluster`: embeddings smoothed over each request's
neighbours, the number of intents estimated) beside k-means on the
frozen bundled encoder *given* the true number of intents, in the same run.
Neither reads a label; the labels only score the result: NMI, ARI and
clustering accuracy (each cluster matched to one intent by the Hungarian
method), the number of intents found and its range over resamples, and the
wall time (encoding included). Writes a table and the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from core.encoder import cpu_description, load_encoder
from core.files import write_text_atomically
from core.records import read_csv
from training.onboard import cluster as clustering


def clustering_accuracy(truth: np.ndarray, found: np.ndarray) -> float:
    """The share of requests in a cluster matched (one to one, Hungarian) to their true intent."""
    from scipy.optimize import linear_sum_assignment

    size = int(max(found.max(), truth.max())) + 1
    weights = np.zeros((size, size))
    for f, t in zip(found, truth):
        weights[f, t] += 1
    rows, cols = linear_sum_assignment(-weights)
    return float(weights[rows, cols].sum() / len(truth))


def scores(truth: np.ndarray, found: np.ndarray) -> Dict[str, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"nmi": float(normalized_mutual_info_score(truth, found)),
            "ari": float(adjusted_rand_score(truth, found)),
            "acc": clustering_accuracy(truth, found)}


def read_labelled(path: Path, limit: Optional[int], seed: int):
    rows = [(str(r["text"]), str(r["category"])) for _, r in read_csv(path, required=["text", "category"])]
    if limit and limit < len(rows):
        keep = np.random.default_rng(seed).choice(len(rows), limit, replace=False)
        rows = [rows[i] for i in sorted(keep)]
    names = {c: i for i, c in enumerate(sorted({c for _, c in rows}))}
    return [t for t, _ in rows], np.array([names[c] for _, c in rows]), len(names)


def table(rows: Sequence[Dict]) -> str:
    lines = ["| system | intents found (range) | NMI | ARI | accuracy | wall time |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        found = f"{r['k']}" + (f" ({r['low']}-{r['high']})" if r.get("low") != r.get("high") else " (given)")
        lines.append(f"| {r['system']} | {found} | {r['nmi']:.3f} | {r['ari']:.3f} | {r['acc']:.3f} | "
                     f"{r['seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking77/train.csv"))
    parser.add_argument("--limit", type=int, default=None, help="a seeded sample of this many requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/discovery"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    texts, truth, true_k = read_labelled(args.data, args.limit, args.seed)
    print(f"{len(texts)} requests of {true_k} hidden intents from {args.data}; {cpu_description()}", flush=True)
    rows = []

    # Both systems cluster the same embeddings: encoded once, the encoding time counted in each one's wall time.
    started = time.perf_counter()
    vectors = np.asarray(load_encoder().encode(texts, batch_size=64, normalize_embeddings=True,
                                               show_progress_bar=not args.quiet), dtype="float32")
    encoding = time.perf_counter() - started

    started = time.perf_counter()
    labels = clustering.kmeans(vectors, true_k, args.seed)
    rows.append({"system": "k-means, frozen encoder, true number of intents", "k": true_k, "low": true_k,
                 "high": true_k, "seconds": encoding + time.perf_counter() - started, **scores(truth, labels)})
    print(table(rows[-1:]).splitlines()[-1], flush=True)

    started = time.perf_counter()
    found = clustering.cluster_requests(vectors, seed=args.seed)
    seconds = encoding + time.perf_counter() - started
    rows.append({"system": "ours (neighbour-smoothed, number estimated)", "k": found.k, "low": found.low,
                 "high": found.high, "seconds": seconds, **scores(truth, found.labels), "cuts": found.scores})
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    ours_true_k = clustering.kmeans(found.vectors, true_k, args.seed)
    rows.append({"system": "ours, given the true number of intents (for reference)", "k": true_k, "low": true_k,
                 "high": true_k, "seconds": seconds, **scores(truth, ours_true_k)})

    report = table(rows)
    print("\n" + report)
    error = abs(found.k - true_k) / true_k
    print(f"\nnumber of intents: estimated {found.k} ({found.low}-{found.high}) against {true_k} "
          f"({error:.0%} off)")
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out / "discovery.md", report + "\n")
    write_text_atomically(args.out / "discovery.json", json.dumps(
        {"data": str(args.data), "requests": len(texts), "true_intents": true_k, "cpu": cpu_description(),
         "python": platform.python_version(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
