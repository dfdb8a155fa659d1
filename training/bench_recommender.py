"""Benchmark the recommender against the peers a user would otherwise pick, in one run.

    python -m training.bench_recommender --data ../shared/data/movielens-small

Protocol: every rating of ``ratings.csv`` is an implicit interaction (the
rating value is ignored); each user's last interaction by time (ties kept in
file order) is held out; every item the user has not interacted with in
training is ranked. Reported per system: HR@10 and NDCG@10 on the held-out
item, catalogue coverage (share of items appearing in any top 10), training
time, and p50 / p99 latency of one `recommend` call on the CPU.

Systems, all measured here in the same process:

- peers: popularity; `implicit` ALS (64 factors, regularization 0.05,
  15 iterations) and BPR (128 factors), each with its library defaults
  otherwise, trained with ``--peer-seeds`` seeds (3) and averaged, since
  one seed moves ALS's NDCG@10 by about 0.005 here;
- ours: `recommender.Recommender` fitted once with every part, then
  measured under several blends (which parts, which weights); a blend's
  training time is the sum of the times of the parts it uses.

``--users N`` measures on a random sample of N users (all users are still
trained on) for a quick check while developing.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

# The peers use BLAS; one BLAS thread per process keeps timings comparable on a shared CPU.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from training.gates import ndcg_at_k  # noqa: E402

K = 10

# Our blends: name -> RecommenderConfig weights (and other serve-time settings).
BLENDS: Dict[str, Dict[str, float]] = {
    "ours: collaborative (item-item, recency)": dict(collaborative_weight=1.0, sequence_weight=0, content_weight=0, popularity_weight=0, diversity=1.0),
    "ours: sequence (SASRec)": dict(collaborative_weight=0, sequence_weight=1.0, content_weight=0, popularity_weight=0, diversity=1.0),
    "ours: content (MiniLM item text)": dict(collaborative_weight=0, sequence_weight=0, content_weight=1.0, popularity_weight=0, diversity=1.0),
    "ours: SASRec + collaborative": dict(collaborative_weight=0.7, sequence_weight=0.3, content_weight=0, popularity_weight=0, diversity=1.0),
    "ours: SASRec + collaborative + popularity": dict(collaborative_weight=0.7, sequence_weight=0.3, content_weight=0, popularity_weight=0.05, diversity=1.0),
    "ours: SASRec + collaborative + content": dict(collaborative_weight=0.7, sequence_weight=0.3, content_weight=0.1, popularity_weight=0, diversity=1.0),
    "ours: SASRec + collaborative, MMR 0.8": dict(collaborative_weight=0.7, sequence_weight=0.3, content_weight=0, popularity_weight=0, diversity=0.8),
}
# Which trained parts each weight needs (for the training time of a blend).
PART_OF = {"collaborative_weight": "collaborative", "sequence_weight": "sequence", "content_weight": "content", "popularity_weight": "popularity"}


@dataclasses.dataclass
class Split:
    """Training interactions, each user's held-out item and the ids in play."""

    train: pd.DataFrame
    held_out: Dict[str, str]
    items: pd.DataFrame


@dataclasses.dataclass
class Result:
    name: str
    hr: float
    ndcg: float
    coverage: float
    train_s: float
    p50_ms: float
    p99_ms: float


def leave_last_out(data: Path) -> Split:
    """Read MovieLens ratings (and movie titles/genres) and hold out each user's last interaction by time."""
    ratings_path = data / "ratings.csv"
    if not ratings_path.is_file():
        raise SystemExit(f"{ratings_path} does not exist; pass --data the MovieLens folder (ratings.csv, movies.csv)")
    ratings = pd.read_csv(ratings_path)
    missing = {"userId", "movieId", "timestamp"} - set(ratings.columns)
    if missing:
        raise SystemExit(f"{ratings_path} lacks column(s) {', '.join(sorted(missing))}")
    ratings = ratings.sort_values(["userId", "timestamp"], kind="stable")
    last = ratings.groupby("userId").cumcount(ascending=False) == 0
    frame = pd.DataFrame({
        "customer_id": ratings["userId"].astype(str), "item_id": ratings["movieId"].astype(str),
        "timestamp": ratings["timestamp"].astype(float), "kind": "rating", "weight": 1.0,
    })
    train, test = frame[~last.to_numpy()], frame[last.to_numpy()]
    # Only the items that appear in the ratings are ranked, as the peers see them.
    rated = set(frame["item_id"])
    movies_path = data / "movies.csv"
    if movies_path.is_file():
        movies = pd.read_csv(movies_path)
        movies = movies[movies["movieId"].astype(str).isin(rated)]
        items = pd.DataFrame({"item_id": movies["movieId"].astype(str), "title": movies["title"],
                              "tags": movies["genres"].fillna("").str.replace("(no genres listed)", "", regex=False)})
    else:
        items = pd.DataFrame({"item_id": sorted(rated), "title": sorted(rated)})
    return Split(train, dict(zip(test["customer_id"], test["item_id"])), items)


def measure(name: str, users: Sequence[str], held_out: Dict[str, str], n_items: int,
            top10: Callable[[str], Sequence[str]], train_s: float) -> Result:
    """HR@10, NDCG@10, coverage and latency of `top10` over `users`."""
    hits, gain, shown, latencies = 0, 0.0, set(), []
    for user in tqdm(users, desc=name, leave=False, file=sys.stderr):
        started = time.perf_counter()
        ranked = list(top10(user))
        latencies.append(time.perf_counter() - started)
        shown.update(ranked)
        if held_out[user] in ranked:
            hits += 1
            gain += ndcg_at_k(ranked, {held_out[user]}, k=len(ranked))
    ms = np.asarray(latencies) * 1000
    return Result(name, hits / len(users), gain / len(users), len(shown) / n_items, train_s,
                  float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))


def peer_results(split: Split, users: Sequence[str], seed: int, seeds: int = 3) -> List[Result]:
    """Popularity, implicit ALS and implicit BPR under the same protocol; the learnt peers averaged over `seeds` seeds."""
    import scipy.sparse as sp

    train = split.train
    user_codes, user_ids = pd.factorize(train["customer_id"])
    item_ids = list(split.items["item_id"])
    item_index = {item: i for i, item in enumerate(item_ids)}
    item_codes = train["item_id"].map(item_index).to_numpy()
    matrix = sp.csr_matrix((np.ones(len(train), np.float32), (user_codes, item_codes)), shape=(len(user_ids), len(item_ids)))
    matrix.data[:] = 1.0  # a user who rated an item twice still counts once
    row_of = {user: i for i, user in enumerate(user_ids)}
    results = []

    started = time.perf_counter()
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    order = np.argsort(-counts, kind="stable")
    train_s = time.perf_counter() - started

    def popular(user: str) -> List[str]:
        seen = set(matrix[row_of[user]].indices)
        return [item_ids[i] for i in order[: K + len(seen)] if i not in seen][:K]

    results.append(measure("popularity", users, split.held_out, len(item_ids), popular, train_s))

    try:
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking
    except ImportError:
        print("implicit is not installed (pip install -c requirements/constraints.txt implicit==0.7.2): peers skipped", file=sys.stderr)
        return results
    peers = {
        "implicit ALS (64 factors, reg 0.05, 15 it)":
            lambda seed: AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, random_state=seed),
        "implicit BPR (128 factors)": lambda seed: BayesianPersonalizedRanking(factors=128, random_state=seed),
    }
    for name, make in peers.items():
        runs = []
        for peer_seed in range(seed, seed + seeds):
            model = make(peer_seed)
            started = time.perf_counter()
            model.fit(matrix, show_progress=False)
            train_s = time.perf_counter() - started

            def top(user: str, model=model) -> List[str]:
                row = row_of[user]
                ids, _ = model.recommend(row, matrix[row], N=K, filter_already_liked_items=True)
                return [item_ids[i] for i in ids]

            runs.append(measure(f"{name}, seed {peer_seed}", users, split.held_out, len(item_ids), top, train_s))
            print(f"  {runs[-1].name}: HR@10 {runs[-1].hr:.4f} NDCG@10 {runs[-1].ndcg:.4f}", file=sys.stderr)
        label = f"{name}, mean of {len(runs)} seeds (NDCG {min(r.ndcg for r in runs):.4f}-{max(r.ndcg for r in runs):.4f})" if len(runs) > 1 else name
        results.append(Result(label, *(float(np.mean([getattr(r, f) for r in runs])) for f in ("hr", "ndcg", "coverage", "train_s", "p50_ms", "p99_ms"))))
    return results


def our_results(split: Split, users: Sequence[str], seed: int, blends: Dict[str, Dict[str, float]], epochs: int) -> List[Result]:
    """Our recommender, fitted once with every part a blend needs, measured per blend."""
    from recommender import Recommender

    needed = {PART_OF[key] for blend in blends.values() for key, value in blend.items() if key in PART_OF and value > 0}
    fit_config = dict(
        context_weight=0.0, seed=seed, sequence_epochs=epochs, show_progress=True,
        collaborative_weight=1.0 if "collaborative" in needed else 0.0,
        sequence_weight=1.0 if "sequence" in needed else 0.0,
        content_weight=1.0 if "content" in needed else 0.0,
    )
    print(f"training our recommender ({', '.join(sorted(needed))}) on {len(split.train):,} interactions", file=sys.stderr)
    model = Recommender.fit(split.train, split.items, **fit_config)
    base = model.config
    results = []
    for name, blend in blends.items():
        model.config = dataclasses.replace(base, **blend)
        parts = ["data"] + [PART_OF[key] for key, value in blend.items() if key in PART_OF and value > 0]
        train_s = sum(model.fit_seconds.get(part, 0.0) for part in parts)

        def top(user: str) -> List[str]:
            return [s.item_id for s in model.recommend(user, k=K, exclude_seen=True)]

        top(users[0])  # the first call pays one-off costs (allocations) that later calls do not
        results.append(measure(name, users, split.held_out, len(model.item_ids), top, train_s))
    model.config = base
    return results


def table(results: List[Result]) -> str:
    """The results as a Markdown table."""
    lines = ["| system | HR@10 | NDCG@10 | coverage | training (s) | p50 recommend (ms) | p99 (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.hr:.4f} | {r.ndcg:.4f} | {r.coverage:.3f} | {r.train_s:.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="MovieLens folder with ratings.csv (and movies.csv)")
    parser.add_argument("--users", type=int, default=0, help="measure on a random sample of this many users (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30, help="SASRec training epochs")
    parser.add_argument("--blends", default="all", help="comma-separated blend numbers (1-based) to measure, or 'all'")
    parser.add_argument("--peer-seeds", type=int, default=3, help="seeds each learnt peer is trained with (results averaged)")
    parser.add_argument("--no-peers", action="store_true", help="measure only our recommender")
    args = parser.parse_args(argv)

    split = leave_last_out(args.data)
    users = sorted(split.held_out)
    if args.users and args.users < len(users):
        users = list(np.random.default_rng(args.seed).choice(users, size=args.users, replace=False))
    blends = BLENDS if args.blends == "all" else {
        name: blend for number, (name, blend) in enumerate(BLENDS.items(), start=1) if str(number) in args.blends.split(",")
    }
    print(f"{len(split.train):,} training interactions, {len(split.held_out)} users, {len(split.items):,} items; "
          f"measuring {len(users)} users", file=sys.stderr)
    results = [] if args.no_peers else peer_results(split, users, args.seed, args.peer_seeds)
    results += our_results(split, users, args.seed, blends, args.epochs)
    print(table(results))
    peers = [r for r in results if not r.name.startswith("ours")]
    if peers:
        best = max(peers, key=lambda r: r.ndcg)
        ours = max((r for r in results if r.name.startswith("ours")), key=lambda r: r.ndcg)
        print(f"\nbest peer: {best.name} NDCG@10 {best.ndcg:.4f}; best of ours: {ours.name} NDCG@10 {ours.ndcg:.4f} "
              f"({ours.ndcg / best.ndcg:.2f}x), p50 {ours.p50_ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
