"""Benchmark answer retrieval: quality against BM25 and TF-IDF, and FAISS at scale.

Quality (one run, every system measured on the same machine in the same process)::

    python -m training.bench_retrieval --history ../shared/data/banking77/train.csv \\
        --queries ../shared/data/banking77/test.csv [--encoder bundled --encoder artifacts/encoder]

Each history row (``text,category``) is a past question whose answer is its
category; each query row is a new question. For every system: precision@1
(the top hit's answer is the query's), recall@5 (the right answer is in the
top 5), MRR over the top 10, and p50/p99 latency of one query on its own,
encoding included. Systems: `AnswerIndex` (exact search) with each encoder,
plain and with hits grouped by answer (`retrieval.rerank.group_by_answer`),
BM25 (rank-bm25, Okapi) and TF-IDF (scikit-learn, cosine). Without
``--encoder`` the bundled encoder is measured, and the adapted one in
``artifacts/encoder`` too when it exists.

Scale::

    python -m training.bench_retrieval --scale 1000000

indexes N synthetic clustered vectors of size 384 and reports, for exact
search and for approximate indexes (HNSW at several efSearch, IVF at several
nprobe, IVF-PQ), the build time, the memory the index takes, p50/p99 latency
of one query on one thread, and recall@10 against exact search, on 1,000
queries drawn from the same distribution.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from core.language import words
from core.settings import PROJECT_ROOT

ADAPTED_ENCODER = PROJECT_ROOT / "artifacts" / "encoder"


# ----------------------------------------------------------------------------- quality


def _read_labelled(path: Path, limit: Optional[int] = None, seed: int = 0):
    import pandas as pd

    if not path.exists():
        raise SystemExit(f"{path} does not exist")
    frame = pd.read_csv(path)
    if not {"text", "category"} <= set(frame.columns):
        raise SystemExit(f"{path} needs text and category columns; found {list(frame.columns)}")
    frame = frame.dropna(subset=["text", "category"])
    if limit and limit < len(frame):
        frame = frame.sample(n=limit, random_state=seed)
    return frame["text"].astype(str).tolist(), frame["category"].astype(str).tolist()


def rank_metrics(ranked_answers: Sequence[Sequence[str]], truth: Sequence[str]) -> Dict[str, float]:
    """precision@1, recall@5 and MRR@10 of ranked answer lists against the true answers."""
    p1 = r5 = rr = 0.0
    for answers, expected in zip(ranked_answers, truth):
        answers = list(answers)[:10]
        p1 += bool(answers) and answers[0] == expected
        r5 += expected in answers[:5]
        rr += 1.0 / (answers.index(expected) + 1) if expected in answers else 0.0
    n = max(1, len(truth))
    return {"precision@1": p1 / n, "recall@5": r5 / n, "mrr@10": rr / n}


def latency(fn: Callable[[str], object], queries: Sequence[str]) -> Dict[str, float]:
    """p50 and p99 milliseconds of `fn` on each query alone (after two warm-up calls).

    Wall-clock time is the latency; the CPU time this process spent is given
    beside it, because on a shared machine the wall clock also counts the time
    spent waiting for a core that another process holds. numpy's BLAS gets
    as many threads as torch has (``--threads``), as in a serving process
    (`core.serving.limit_numeric_threads`, `bot/serve.py`).
    """
    import torch
    from threadpoolctl import threadpool_limits

    from core.encoder import clear_embedding_cache

    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        for query in queries[:2]:
            fn(query)
        wall, cpu = [], []
        for query in queries:
            clear_embedding_cache()  # every timed query is encoded, even one asked before
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(query)
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
    return {"p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)),
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p99_ms": float(np.percentile(cpu, 99))}


def bench_quality(args) -> List[Dict]:
    import torch
    from rank_bm25 import BM25Okapi
    from sklearn.feature_extraction.text import TfidfVectorizer

    from retrieval.index import AnswerIndex
    from retrieval.rerank import group_by_answer

    all_threads = torch.get_num_threads()
    history, history_answers = _read_labelled(args.history)
    queries, truth = _read_labelled(args.queries, limit=args.sample)
    rng = np.random.default_rng(0)
    timed = [queries[i] for i in rng.permutation(len(queries))[: args.latency_queries]]
    print(f"history: {len(history)} questions, {len(set(history_answers))} answers; queries: {len(queries)} "
          f"(latency on {len(timed)}, {args.threads} thread(s))", flush=True)
    records = [{"id": str(i), "question": q, "answer": a} for i, (q, a) in enumerate(zip(history, history_answers))]
    rows = []

    encoders = args.encoder or (["bundled"] + ([str(ADAPTED_ENCODER)] if ADAPTED_ENCODER.exists() else []))
    for encoder in encoders:
        name = "bundled" if encoder == "bundled" else f"adapted ({os.path.relpath(encoder, PROJECT_ROOT)})"
        print(f"encoding the history with encoder '{encoder}'", flush=True)
        torch.set_num_threads(all_threads)  # bulk encoding uses every core; timed queries use --threads
        start = time.perf_counter()
        index = AnswerIndex.build(records, encoder=encoder, progress=True)
        build_s = time.perf_counter() - start
        torch.set_num_threads(args.threads)
        # Queries as the server encodes them: one message at a time, in the serving
        # precision (core.encoder.inference_precision), not the bulk float32 path.
        vectors = np.vstack([index.encode([q]) for q in queries])
        plain = index.search_vectors(vectors, k=10)
        candidates = index.search_vectors(vectors, k=args.candidates)
        grouped = [group_by_answer(h, sharpness=args.vote_sharpness)[:10] for h in candidates]
        rows.append({
            "system": f"AnswerIndex Flat, {name} encoder",
            **rank_metrics([[h.answer for h in hits] for hits in plain], truth),
            **latency(lambda q: index.search(q, k=5), timed),
            "build_s": build_s,
        })
        rows.append({
            "system": f"AnswerIndex Flat, {name} encoder, grouped by answer",
            **rank_metrics([[h.answer for h in hits] for hits in grouped], truth),
            **latency(lambda q: group_by_answer(index.search(q, k=args.candidates), args.vote_sharpness)[:5], timed),
            "build_s": build_s,
        })
        print(json.dumps(rows[-2:], indent=1), flush=True)
        del index
        gc.collect()

    start = time.perf_counter()
    bm25 = BM25Okapi([words(t) for t in history])
    build_s = time.perf_counter() - start
    answers_arr = np.asarray(history_answers, dtype=object)

    def bm25_top(query: str, k: int = 10):
        scores = bm25.get_scores(words(query))
        top = np.argpartition(-scores, k)[:k]
        return answers_arr[top[np.argsort(-scores[top])]]

    rows.append({"system": "BM25 (rank-bm25 Okapi)", **rank_metrics([bm25_top(q) for q in queries], truth),
                 **latency(lambda q: bm25_top(q, 5), timed), "build_s": build_s})
    print(json.dumps(rows[-1], indent=1), flush=True)

    start = time.perf_counter()
    tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
    matrix = tfidf.fit_transform(history)
    build_s = time.perf_counter() - start

    def tfidf_top(query: str, k: int = 10):
        scores = (matrix @ tfidf.transform([query]).T).toarray().ravel()
        top = np.argpartition(-scores, k)[:k]
        return answers_arr[top[np.argsort(-scores[top])]]

    rows.append({"system": "TF-IDF (scikit-learn, 1-2 grams, cosine)", **rank_metrics([tfidf_top(q) for q in queries], truth),
                 **latency(lambda q: tfidf_top(q, 5), timed), "build_s": build_s})
    print(json.dumps(rows[-1], indent=1), flush=True)
    return rows


def quality_table(rows: List[Dict]) -> str:
    """The quality results as a Markdown table."""
    lines = ["| system | precision@1 | recall@5 | MRR@10 | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms | build s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['precision@1']:.3f} | {r['recall@5']:.3f} | {r['mrr@10']:.3f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_p50_ms']:.1f} | {r['cpu_p99_ms']:.1f} | {r['build_s']:.1f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- scale


def synthetic_vectors(n: int, dim: int, seed: int, centers: np.ndarray, spread: float, chunk: int = 100_000) -> np.ndarray:
    """`n` normalised vectors around `centers`, with a decaying spectrum like sentence embeddings have."""
    rng = np.random.default_rng(seed)
    # Variance falling with the dimension's rank: most of the spread lies in a few directions.
    scale = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype("float32")
    out = np.empty((n, dim), dtype="float32")
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        owner = rng.integers(0, len(centers), stop - start)
        noise = rng.standard_normal((stop - start, dim), dtype="float32") * scale * spread
        block = centers[owner] + noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_scale(args) -> List[Dict]:
    import faiss
    from tqdm import tqdm

    n, dim, n_queries = args.scale, 384, args.scale_queries
    build_threads = max(1, os.cpu_count() or 1) if args.build_threads is None else args.build_threads
    rng = np.random.default_rng(1)
    n_centers = max(16, n // 1000)
    scale = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype("float32")
    centers = rng.standard_normal((n_centers, dim), dtype="float32") * scale
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    start = time.perf_counter()
    base = synthetic_vectors(n, dim, 2, centers, args.spread)
    queries = synthetic_vectors(n_queries, dim, 3, centers, args.spread)
    print(f"{n} vectors ({base.nbytes / 2**20:.0f} MB) and {n_queries} queries generated in "
          f"{time.perf_counter() - start:.1f}s", flush=True)

    faiss.omp_set_num_threads(build_threads)
    start = time.perf_counter()
    _, truth = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"exact top-10 of the queries in {time.perf_counter() - start:.1f}s", flush=True)

    def measure(name: str, build: Callable[[], "faiss.Index"], settings: List[Dict[str, float]], timed_queries: int) -> List[Dict]:
        gc.collect()
        faiss.omp_set_num_threads(build_threads)
        start = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - start
        memory_mb = index_bytes(index) / 2**20
        print(f"{name}: built in {build_s:.1f}s, {memory_mb:.0f} MB", flush=True)
        results = []
        space = faiss.ParameterSpace()
        for params in settings:
            for key, value in params.items():
                space.set_index_parameter(index, key, value)
            faiss.omp_set_num_threads(build_threads)
            _, found = index.search(queries, 10)
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
            # Latency of one query at a time on one thread: what one server worker sees.
            faiss.omp_set_num_threads(1)
            times = []
            for row in queries[:timed_queries]:
                t0 = time.perf_counter()
                index.search(row[None, :], 10)
                times.append((time.perf_counter() - t0) * 1000)
            result = {"index": name, "params": ", ".join(f"{k}={int(v)}" for k, v in params.items()) or "-",
                      "build_s": build_s, "memory_mb": memory_mb, "recall@10": recall,
                      "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
            print(json.dumps(result), flush=True)
            results.append(result)
        return results

    def flat():
        index = faiss.IndexFlatIP(dim)
        index.add(base)
        return index

    def hnsw():
        index = faiss.index_factory(dim, "HNSW32", faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        for start in tqdm(range(0, n, 50_000), desc="HNSW32 add", unit="chunk"):
            index.add(base[start:start + 50_000])
        return index

    nlist = args.nlist or max(64, 2 ** int(round(np.log2(2 * np.sqrt(n)))))
    trained = {}

    def ivf(kind: str):
        def build():
            if "quantizer" not in trained:
                # k-means on a sample gives the lists; the IVF variants below share them.
                sample = base[np.random.default_rng(4).choice(n, size=min(n, nlist * 40), replace=False)]
                trained["quantizer"] = faiss.IndexFlatIP(dim)
                kmeans = faiss.Clustering(dim, nlist)
                kmeans.niter = 20
                kmeans.train(sample, trained["quantizer"])
                trained["sample"] = sample
            quantizer = faiss.IndexFlatIP(dim)
            quantizer.add(trained["quantizer"].reconstruct_n(0, nlist))
            if kind == "Flat":
                index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                      faiss.METRIC_INNER_PRODUCT)
            index.train(trained["sample"])  # lists are already trained; this fits the scalar quantizer only
            for start in tqdm(range(0, n, 100_000), desc=f"IVF{nlist},{kind} add", unit="chunk"):
                index.add(base[start:start + 100_000])
            index.own_fields = True
            quantizer.this.disown()
            return index
        return build

    rows = []
    rows += measure("Flat (exact)", flat, [{}], timed_queries=min(100, n_queries))
    rows += measure("HNSW32", hnsw, [{"efSearch": e} for e in (16, 32, 64, 128, 256)], n_queries)
    rows += measure(f"IVF{nlist},Flat", ivf("Flat"), [{"nprobe": p} for p in (4, 8, 16, 32, 64)], n_queries)
    rows += measure(f"IVF{nlist},SQ8", ivf("SQ8"), [{"nprobe": p} for p in (8, 16, 32, 64)], n_queries)
    print(f"peak memory of the process: {_peak_rss_mb():.0f} MB", flush=True)
    return rows


def index_bytes(index) -> int:
    """Bytes of the data an index keeps in memory (vectors or codes, ids, graph links, centroids)."""
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        hnsw = index.hnsw
        links = hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4
        return links + index_bytes(faiss.downcast_index(index.storage))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        lists = ivf.invlists
        entries = sum(lists.list_size(i) for i in range(ivf.nlist))
        return entries * (ivf.code_size + 8) + index_bytes(faiss.downcast_index(ivf.quantizer))
    return index.ntotal * index.code_size


def scale_table(rows: List[Dict]) -> str:
    """The scale results as a Markdown table."""
    lines = ["| index | search params | build s | memory MB | recall@10 | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['index']} | {r['params']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | "
                     f"{r['recall@10']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=Path, help="CSV text,category of past questions")
    parser.add_argument("--queries", type=Path, help="CSV text,category of new questions")
    parser.add_argument("--encoder", action="append", help="'bundled' or a model folder; repeat to compare")
    parser.add_argument("--sample", type=int, default=None, help="use only this many queries (quick runs)")
    parser.add_argument("--latency-queries", type=int, default=1000, help="queries timed one by one")
    parser.add_argument("--candidates", type=int, default=20, help="hits grouped by answer")
    parser.add_argument("--vote-sharpness", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for encoding (one server worker)")
    parser.add_argument("--scale", type=int, default=None, help="index this many synthetic vectors instead")
    parser.add_argument("--scale-queries", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5, help="synthetic noise around cluster centres")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: the power of 2 nearest 2*sqrt(N))")
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--build-threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    if args.scale:
        rows = bench_scale(args)
        print("\n" + scale_table(rows))
    else:
        if not (args.history and args.queries):
            parser.error("--history and --queries are needed (or --scale N)")
        rows = bench_quality(args)
        print("\n" + quality_table(rows))
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
