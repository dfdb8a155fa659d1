"""What one full garbage collection costs the action server, without and with `core.serving.settle_heap`.

    python -m bot.bench_gc [--repeats 3]

Loads what the action server loads before it answers (`bot.action_server.warm_up`:
the recommender, its sentence encoder, the domain's topics, the SDK), then
times `gc.collect()` (a full collection, what CPython runs every so often on its
own while the server's event loop waits) a few times as the process stands,
then again after `settle_heap` (what the action server now does once started:
`gc.freeze` moves everything alive out of the collector's sight). Prints the
objects the collector tracks and the median pause of each.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional


def full_collection_ms(repeats: int) -> float:
    """Median milliseconds of `repeats` full collections."""
    pauses = []
    for _ in range(repeats):
        started = time.perf_counter()
        gc.collect()
        pauses.append(1000 * (time.perf_counter() - started))
    return statistics.median(pauses)


def bench(load: Optional[Callable[[], None]] = None, repeats: int = 3) -> Dict[str, Dict[str, float]]:
    """{"as loaded"|"after settle_heap": {"tracked": objects, "pause_ms": median}}; the process's freeze undone after."""
    from core.serving import settle_heap

    if load is None:
        from bot.action_server import warm_up

        load = warm_up
    threshold = gc.get_threshold()
    load()
    gc.collect()  # what the loading left as garbage goes first: the figures are the steady state's
    results = {"as loaded": {"tracked": float(len(gc.get_objects())), "pause_ms": full_collection_ms(repeats)}}
    try:
        settle_heap()
        results["after settle_heap"] = {"tracked": float(len(gc.get_objects())), "pause_ms": full_collection_ms(repeats)}
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.bench_gc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="full collections timed in each state (default 3)")
    args = parser.parse_args(argv)
    results = bench(repeats=args.repeats)
    print(f"Action server after its warm-up: one full garbage collection (median of {args.repeats})")
    print("| state | objects a full collection walks | full collection, ms |")
    print("|---|---:|---:|")
    for state, row in results.items():
        print(f"| {state} | {row['tracked']:,.0f} | {row['pause_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
