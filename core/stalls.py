"""Event-loop stalls: when one piece of synchronous work holds a server's event loop too long, say what it was.

Every customer message of a Rasa server (and every action call of the
action server) runs on one event loop. Work that holds the loop without
yielding (a slow database commit, a big tracker replay, a garbage
collection) delays every other conversation at once, and shows only as a
bump in everyone's latency. `StallWatch` finds it:

- a task on the loop notes the time every `interval_s`;
- a watcher thread looks a little more often; when the loop has not noted the
  time for longer than `threshold_s`, it takes the loop thread's Python stack
  at that moment and logs it once for that stall (a warning in
  ``core.stalls``, code locations only: file, line and function, never a
  variable's value, so no customer data reaches the log), and counts it in
  ``assistant_loop_stalls_total{process}``;
- when the loop comes back, the stall's length is logged as well.

Setting ``loop_stall_ms`` (``ASSISTANT_LOOP_STALL_MS``); 0, the default, turns
it off. Its cost: one thread waking every few tens of milliseconds, which
needs the interpreter's lock each time; what that costs a loaded server has
not been measured, so it is off unless an operator turns it on to look for a
stall.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from typing import Callable, List, Optional

from core import metrics
from core.serving import cancel_and_wait

logger = logging.getLogger("core.stalls")

# The deepest frames of the stack are the ones that say what held the loop.
STACK_FRAMES = 12


class StallWatch:
    """Watch the running event loop from a thread; log its stack when it stalls past `threshold_s` (module doc)."""

    def __init__(self, threshold_s: float, process: str = "rasa",
                 on_stall: Optional[Callable[[float, List[str]], None]] = None) -> None:
        self.threshold_s = float(threshold_s)
        self.interval_s = max(0.005, min(0.05, self.threshold_s / 4))
        self.process = process
        self.on_stall = on_stall  # tests: (seconds stalled so far, stack lines)
        self.stalls = 0
        self._beat = time.monotonic()
        self._loop_thread: Optional[int] = None
        self._stop = threading.Event()
        self._task: Optional[asyncio.Task] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start on the running loop (from a coroutine on it); once."""
        if self._task is not None:
            return
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat(), name="loop-stall-heartbeat")
        self._thread = threading.Thread(target=self._watch, name="loop-stall-watch", daemon=True)
        self._thread.start()
        logger.info("%s event loop: stalls over %.0f ms are logged with the loop's stack", self.process,
                    self.threshold_s * 1000)

    async def stop(self) -> None:
        self._stop.set()
        await cancel_and_wait(self._task)
        self._task = None

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.interval_s)

    def _watch(self) -> None:
        reported_beat = None
        while not self._stop.wait(self.interval_s / 2):
            beat = self._beat
            late = time.monotonic() - beat - self.interval_s
            if late > self.threshold_s and beat != reported_beat:
                reported_beat = beat
                self._report(late)
            elif reported_beat is not None and beat != reported_beat:
                logger.warning("%s event loop: the stall above ended after about %.0f ms",
                               self.process, (beat - reported_beat - self.interval_s) * 1000)
                reported_beat = None

    def _report(self, late_s: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        lines = [] if frame is None else [
            f"{summary.filename}:{summary.lineno} in {summary.name}"
            for summary in traceback.extract_stack(frame)[-STACK_FRAMES:]
        ]
        self.stalls += 1
        metrics.LOOP_STALLS.labels(self.process).inc()
        logger.warning("%s event loop held for over %.0f ms (threshold %.0f ms); it was in:\n  %s",
                       self.process, late_s * 1000, self.threshold_s * 1000, "\n  ".join(lines) or "(no stack)")
        if self.on_stall is not None:
            self.on_stall(late_s, lines)
