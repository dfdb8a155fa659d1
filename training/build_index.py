"""Build the answer index from the history of answered questions.

    python -m training.build_index                       # bot/history/ -> artifacts/index
    python -m training.build_index exports/*.jsonl transcripts/ --out artifacts/index \\
        --index HNSW32 --search-param efSearch=64

Reads question/answer files (JSONL, CSV) and transcripts (TXT, JSONL; a
customer turn followed by the agent's reply becomes a pair), redacts personal
data before anything is embedded or stored, merges near-duplicate questions
keeping the newest answer, reports every skipped line with the reason, and
writes the index folder that `retrieval.AnswerRetriever` loads. The serving
Rasa server picks a rebuilt index up when it restarts.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from core.settings import PROJECT_ROOT, get_settings

DEFAULT_HISTORY = PROJECT_ROOT / "bot" / "history"


def _search_params(pairs: List[str]) -> Dict[str, float]:
    params = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--search-param takes name=number (e.g. efSearch=64 or nprobe=16), got {pair!r}")
    return params


def main(argv: Optional[List[str]] = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", type=Path, default=[DEFAULT_HISTORY],
                        help="question/answer files, transcripts, or folders of them (default: bot/history/)")
    parser.add_argument("--out", type=Path, default=Path(settings.index_dir), help="index folder to write")
    parser.add_argument("--index", default="Flat", help="FAISS factory string: Flat (exact), HNSW32, IVF1024,Flat ...")
    parser.add_argument("--search-param", action="append", default=[], metavar="NAME=VALUE",
                        help="FAISS search parameter kept with the index, e.g. efSearch=64 or nprobe=16")
    parser.add_argument("--encoder", default=settings.encoder, help="'bundled' or a sentence-transformers folder")
    parser.add_argument("--dedup-threshold", type=float, default=0.95,
                        help="questions at least this similar (cosine) are merged, keeping the newest answer")
    parser.add_argument("--dry-run", action="store_true", help="read, redact and merge, but write nothing")
    args = parser.parse_args(argv)

    from retrieval.index import AnswerIndex, IndexConfigError
    from retrieval.ingest import merge_near_duplicates, read_history

    started = time.time()
    report = read_history(args.inputs, progress=True)
    print(report.summary())
    if not report.records:
        print("no question/answer pairs to index; nothing written", file=sys.stderr)
        return 1

    try:
        index = AnswerIndex(encoder=args.encoder, index=args.index, search_params=_search_params(args.search_param))
    except FileNotFoundError as exc:  # the encoder loader explains what is missing
        print(exc, file=sys.stderr)
        return 2
    vectors = index.encode([r.question for r in report.records], progress=True)
    kept, merges = merge_near_duplicates(report.records, vectors, threshold=args.dedup_threshold)
    for merge in merges:
        print(f"merged: {merge.dropped.source} {merge.dropped.question!r} -> newer {merge.kept.question!r} "
              f"(similarity {merge.similarity:.2f})")
    records = [report.records[i] for i in kept]
    print(f"{len(records)} pairs after merging {len(merges)} near duplicates")
    if args.dry_run:
        return 0

    try:
        index = AnswerIndex.build(records, index=args.index, encoder=index.encoder_spec,
                                  search_params=index.search_params, vectors=vectors[kept])
    except (IndexConfigError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    index.save(args.out)
    print(f"answer index with {len(index)} pairs ({args.index}, encoder {index.encoder_spec}) written to "
          f"{args.out} in {time.time() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
