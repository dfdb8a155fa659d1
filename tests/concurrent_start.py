"""Processes that open one fresh database at the same moment, as replicas and the action server do at start."""
import multiprocessing
from typing import List


def _connect_after(url: str, barrier, results) -> None:
    from core import db as process_db

    barrier.wait()
    try:
        process_db.connect(url)
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}"[:300])


def open_together(url: str, count: int) -> List[str]:
    """Start `count` fresh interpreters that call `core.db.connect(url)` together; 'ok' or the error of each."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    processes = [context.Process(target=_connect_after, args=(url, barrier, results)) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    return [results.get(timeout=5) for _ in processes]
