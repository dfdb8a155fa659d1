"""Model calls for serving: compiled, off the event loop, once per message.

Why this exists (measured with py-spy and `training.bench_load` on the
2-core machine):

- The Rasa server runs one event loop. Every millisecond of model work on
  it is a millisecond no other customer is served, so the models run on a
  worker thread instead (the handoff desk hands it each message before Rasa
  sees it; see `prefetch`).
- An eager PyTorch forward pass on a thread next to a busy event loop is
  starved: each of its ~100 operators gives the GIL back and waits up to
  the interpreter's switch interval to get it again. A 4 ms MiniLM pass
  took over 50 ms that way. `compile_for_serving` traces the model with
  TorchScript, so the whole forward pass is one call that holds the GIL
  only to start and to return: 4.3 ms with the event loop at 100 %.
- `SERVING_SWITCH_INTERVAL_S` shortens how long a thread waits for the GIL,
  for the same reason.

Components that can analyse a message ahead of Rasa's pipeline register a
prefetcher (`register_prefetch`); their `process` then finds the result in
their own cache. Anything that calls the component directly (Rasa's HTTP
API, another project) simply computes it inline, as before.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Callable, Dict, Hashable, Iterator, Optional, Sequence

from core import metrics
from core.payloads import is_payload

logger = logging.getLogger(__name__)

# The GIL switch interval of a serving process (Python's default is 5 ms).
SERVING_SWITCH_INTERVAL_S = 0.001
# Collections of the middle generation between two full collections in a serving process
# (CPython's default is 10; see `settle_heap`).
SERVING_FULL_COLLECTION_EVERY = 100


def _switched_on(variable: str) -> bool:
    """Whether the environment leaves `variable` on (unset counts as on; 0, false, no, off turn it off)."""
    return os.environ.get(variable, "1").strip().lower() not in ("0", "false", "no", "off")


def tracing_enabled() -> bool:
    """Whether to serve TorchScript traces (ASSISTANT_TRACE_MODELS=0 turns it off)."""
    return _switched_on("ASSISTANT_TRACE_MODELS")


def compile_for_serving(module, example: Sequence, checks: Sequence[Sequence] = (), name: str = "model",
                        tolerance: float = 2e-2) -> Callable:
    """A frozen TorchScript trace of `module(*example)`, or `module` itself when that is not possible.

    The trace is checked against the eager module on `checks` (other shapes:
    lengths and batch sizes); if any output differs by more than `tolerance`
    the eager module is served and a warning says why. Tracing is only
    valid for modules whose control flow does not depend on their inputs'
    values, which holds for BERT-style encoders.
    """
    if not tracing_enabled():
        return module
    import warnings

    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python: checked below
            traced = torch.jit.trace(module.eval(), tuple(example), strict=False, check_trace=False)
            traced = torch.jit.freeze(traced.eval())
            for inputs in [example, *checks]:
                want, got = module(*inputs), traced(*inputs)
                pairs = zip(want, got) if isinstance(want, tuple) else [(want, got)]
                for w, g in pairs:
                    if w.shape != g.shape or float((w.float() - g.float()).abs().max()) > tolerance:
                        raise ValueError(f"trace disagrees with the model on inputs of shape {tuple(inputs[0].shape)}")
    except Exception as exc:  # unsupported operator, shape-dependent branch, ...
        logger.warning("%s is served without TorchScript (%s: %s); it will be slower under load",
                       name, type(exc).__name__, exc)
        return module
    logger.info("%s is served as a TorchScript trace", name)
    return traced


class LRUCache:
    """A small thread-safe least-recently-used map (model outputs per message text)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: "OrderedDict" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


_prefetchers: Dict[Hashable, Callable[[Sequence[str]], object]] = {}
_prefetch_lock = threading.Lock()


def register_prefetch(key: Hashable, fn: Callable[[Sequence[str]], object]) -> None:
    """Have `prefetch` call `fn(texts)`; a later registration under the same key replaces it.

    Components register at load time, keyed by what they are (a newly
    loaded model replaces the one it succeeds).
    """
    with _prefetch_lock:
        _prefetchers[key] = fn


def prefetchers() -> Dict[Hashable, Callable[[Sequence[str]], object]]:
    """A copy of the registered prefetchers (`bot.model_swap` keeps the served model's while a new one loads)."""
    with _prefetch_lock:
        return dict(_prefetchers)


def use_prefetchers(registered: Dict[Hashable, Callable[[Sequence[str]], object]]) -> None:
    """Make `registered` (from `prefetchers`) the whole set: a model swap installs the new model's in one step."""
    with _prefetch_lock:
        _prefetchers.clear()
        _prefetchers.update(registered)


def prefetch(texts: Sequence[str]) -> None:
    """Run every registered model on `texts` now (on the caller's thread), filling their caches.

    A failing prefetcher is logged and skipped: the component will compute
    inline when Rasa calls it, and report the error there.
    """
    texts = _readable(texts)
    if not texts:
        return
    with _prefetch_lock:
        todo = list(_prefetchers.items())
    if not todo:
        return
    started = time.perf_counter()
    _run_prefetchers(todo, texts)
    metrics.MODEL_SECONDS.observe(time.perf_counter() - started)


def _readable(texts: Sequence[str]) -> list:
    return [t for t in texts if t and t.strip() and not is_payload(t)]


def _run_prefetchers(todo, texts: Sequence[str]) -> None:
    for key, fn in todo:
        try:
            fn(texts)
        except Exception as exc:  # pragma: no cover - logged, the inline path reports it
            logger.warning("prefetch by %s failed (%s: %s)", key, type(exc).__name__, exc)


_beside = None


@contextlib.contextmanager
def others_alongside(texts: Sequence[str], own: Hashable) -> Iterator[None]:
    """Run the prefetchers other than `own` on `texts` on a second thread while the block runs; wait for them at its end.

    For a message nothing prefetched: one parsed through Rasa's HTTP API
    (``/model/parse``), or by a pipeline the handoff desk did not see. The
    first component of the pipeline (the intent classifier) computes its own
    pass in the block, the answer retriever's encoder and the frustration
    reader run beside it on the other core (the compiled passes let go of
    the GIL), and the components after it find their results cached, as
    they do for a chat message the desk prefetched. The Rasa server parses
    one message at a time on its event loop, so one helper thread is enough.
    ``ASSISTANT_PARSE_ALONGSIDE=0`` turns it off (each component computes in
    turn).
    """
    global _beside
    texts = _readable(texts)
    with _prefetch_lock:
        todo = [(key, fn) for key, fn in _prefetchers.items() if key != own]
    if not texts or not todo or not _switched_on("ASSISTANT_PARSE_ALONGSIDE"):
        yield
        return
    with _executor_lock:
        if _beside is None:
            from concurrent.futures import ThreadPoolExecutor

            _beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="models-beside")
        future = _beside.submit(_run_prefetchers, todo, texts)
    try:
        yield
    finally:
        future.result()  # never raises: each prefetcher's failure is logged, and its component computes inline


_executor = None
_executor_lock = threading.Lock()


def model_executor():
    """The process's single model thread: model work is queued there, one call at a time.

    One thread, because the machine's other core is what it is for; more
    threads would only fight over it and over the GIL.
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            from concurrent.futures import ThreadPoolExecutor

            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="models")
        return _executor


def limit_numeric_threads(threads: int) -> None:
    """Give torch and numpy's BLAS `threads` threads each, for the whole process (a serving process).

    A served message is a few small matrix products (the classifier's
    centroids, the frustration examples, the retriever's ratings) beside one
    transformer pass. With OpenBLAS's default of a thread per core, each
    small product wakes a second thread, which on a server whose other core
    is busy waits for it: a 272 x 384 product took 0.7 ms instead of 9 us
    here (and up to 3.5 ms with a training job on the other core). `bot/serve.py`
    sets the same through the environment for the servers it starts; this
    is for a Rasa server started any other way (``rasa run`` naming the
    component in its config.yml).
    """
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn, which Rasa needs
        logger.warning("threadpoolctl is not installed: numpy's BLAS keeps its own thread count")
        return
    threadpool_limits(limits=threads, user_api="blas")  # not a context: it stays for the process


def tune_for_serving() -> None:
    """Process settings for a serving process (called by the Rasa server's channels at import)."""
    import sys

    sys.setswitchinterval(SERVING_SWITCH_INTERVAL_S)


async def cancel_and_wait(task: Optional["asyncio.Task"]) -> None:
    """Cancel a server's background task (a poller, a heartbeat) and wait until it has stopped; None is fine."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def settle_heap() -> None:
    """Move everything alive now (models, Rasa's graph, modules) out of the garbage collector's sight.

    Called once a serving process has loaded its model. Without it each
    full collection walks millions of long-lived objects while the event
    loop waits; `gc.freeze` is made for exactly this (see its documentation).
    """
    import gc

    gc.collect()
    gc.freeze()
    # CPython starts a full collection after `threshold2` collections of the middle generation, once
    # the objects promoted since the last full one exceed a quarter of those that survived it. After
    # the freeze "those that survived" are only the few not frozen, so once the first full collection
    # has run, a full collection (90 ms here, the event loop stopped) came every few seconds: in the
    # load benchmark at 50 msg/s that cascade alone took p95 from ~120 ms to ~1 s. Fewer, same-sized
    # full collections: still one every few minutes, so garbage in cycles is still freed.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, SERVING_FULL_COLLECTION_EVERY)
    logger.info("%d long-lived objects frozen out of garbage collection", gc.get_freeze_count())


def cached_rows(cache: Optional[LRUCache], owner: Hashable, texts: Sequence[str], compute: Callable):
    """Rows of `compute(missing_texts)` for `texts`, through `cache` keyed by (owner, text).

    Returns a list with one row per text; rows are read-only numpy arrays.
    """
    import numpy as np

    rows = [cache.get((owner, t)) if cache is not None else None for t in texts]
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        fresh = compute([texts[i] for i in missing])
        for row, i in enumerate(missing):
            value = np.ascontiguousarray(fresh[row])
            value.setflags(write=False)
            rows[i] = value
            if cache is not None:
                cache.put((owner, texts[i]), value)
    return rows


class WriteBehind:
    """Rows a serving process stores after the answer, written in batches by one background thread.

    `put` only appends to a list (no thread hop, no SQL on the caller's
    thread); the thread wakes on the first row, waits `max_delay_s` for more
    (or until `max_rows`), then hands the batch to `write(rows)` in one call,
    so 50 messages a second cost a few transactions a second instead of 50.
    A failing `write` is logged and its rows dropped, as a failed
    fire-and-forget write was (these are derived rows, never what a customer
    gave). `flush` waits until everything put so far is written (tests, and
    the server's stop).
    """

    def __init__(self, name: str, write: Callable[[list], None], max_rows: int = 64, max_delay_s: float = 0.2) -> None:
        self.name = name
        self._write = write
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self._rows: list = []
        self._pending = 0  # put and not yet written (or dropped)
        self._hurry = 0  # flushes waiting: write now, without waiting for more rows
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    def put(self, row) -> None:
        with self._cond:
            self._rows.append(row)
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"write-behind-{self.name}", daemon=True)
                self._thread.start()
            if len(self._rows) == 1 or len(self._rows) >= self.max_rows:
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row put so far is written or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
            try:
                self._cond.notify_all()
                while self._pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, 0.05))
            finally:
                self._hurry -= 1
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._rows:
                    self._cond.wait()
                due = time.monotonic() + self.max_delay_s
                while len(self._rows) < self.max_rows and not self._hurry and (left := due - time.monotonic()) > 0:
                    self._cond.wait(left)
                rows, self._rows = self._rows[:self.max_rows], self._rows[self.max_rows:]
            try:
                self._write(rows)
            except Exception as exc:  # noqa: BLE001 - logged; the customer's answer never waits on this
                logger.warning("%d %s rows not stored (%s: %s)", len(rows), self.name, type(exc).__name__, exc)
            with self._cond:
                self._pending -= len(rows)
                self._cond.notify_all()
