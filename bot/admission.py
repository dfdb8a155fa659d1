"""Admission: how many customer messages the Rasa server works on at once, who goes next, and when it says "later".

A Rasa server runs every message on one event loop. Offered more messages
than it can answer (a burst), it starts them all: each one's work is spread
over more and more interleaved steps, every message gets slower, and past
the clients' timeouts messages fail without a word. `FairGate` puts a gate
in front of the desk's routing (`bot.handoff.intake`):

- at most ``concurrency`` messages are inside at once; the others wait;
- waiting messages are served one customer at a time, round-robin: each
  customer with waiting messages has its own first-in-first-out line, and the
  next free place goes to the customer at the head of the rotation, who then
  moves to its back. A customer sending ten messages at once gets one in per
  round, so a chatty customer cannot starve the others;
- a customer never has two messages inside at once (their second would only
  wait for the conversation's lock while holding a place);
- at most ``max_waiting`` messages wait, and a new message waits only if its
  expected wait is at most ``max_wait_s``: the customers ahead of it in the
  rotation divided by the server's pace, ``concurrency`` places over the
  mean time the latest messages spent inside (measured, so the bound holds on
  a slow CPU as on a fast one, and stretches with the work a burst brings).
  Past either, a message is refused at once with a polite notice to send it
  again (`BUSY_TEXT`; REST: HTTP 503 with ``Retry-After``) rather than
  waiting into a timeout. A refused message is not stored; it was never read.

Few places inside (8 by default) is what keeps a burst's wait at the gate,
where it is bounded and fair, rather than in front of it. Every message
inside takes turns on the one event loop with every request not yet at the
gate; with 16 inside, a burst of 150 msg/s left requests 9.5 s (p95)
between arriving and reaching the gate, where nothing could refuse them;
with 8, 71 ms (docs/benchmarks.md, "Bursts").

Settings: ``admission_concurrency``, ``admission_queue`` and
``admission_max_wait_s`` (``ASSISTANT_ADMISSION_CONCURRENCY``,
``ASSISTANT_ADMISSION_QUEUE``, ``ASSISTANT_ADMISSION_MAX_WAIT_S``); a
concurrency of 0 turns the gate off, a maximum wait of 0 leaves only the
count. The gate lives in one server process; each replica has its own.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from typing import AsyncIterator, Callable, Deque, Dict, Optional

BUSY_TEXT = (
    "I'm answering a lot of customers right now and couldn't read your last message. "
    "Please send it again in a few seconds."
)
# What REST callers are told to wait before sending again, in seconds.
RETRY_AFTER_S = 2
# The pace is measured over the last `PACE_WINDOW` messages' times inside, once there are `PACE_MIN_COUNT`.
PACE_WINDOW = 64
PACE_MIN_COUNT = 8


class FairGate:
    """At most `concurrency` messages inside; the rest wait in per-customer lines served round-robin (see module doc)."""

    def __init__(self, concurrency: int, max_waiting: int, max_wait_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.concurrency = max(0, int(concurrency))
        self.max_waiting = max(0, int(max_waiting))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self._clock = clock
        self._inside: Dict[str, float] = {}  # customers with a message inside -> when it went in
        self._lines: "OrderedDict[str, Deque[asyncio.Future]]" = OrderedDict()  # rotation order
        self._waiting = 0
        self._durations: Deque[float] = deque(maxlen=PACE_WINDOW)  # seconds the latest messages spent inside
        self.refused = 0  # messages refused since start (also counted in core.metrics)

    @property
    def enabled(self) -> bool:
        return self.concurrency > 0

    @property
    def inside(self) -> int:
        return len(self._inside)

    @property
    def waiting(self) -> int:
        return self._waiting

    def pace(self) -> Optional[float]:
        """Messages the server answers per second with every place taken: `concurrency` over the mean time
        the latest messages spent inside; None until `PACE_MIN_COUNT` have left."""
        if len(self._durations) < PACE_MIN_COUNT:
            return None
        mean = sum(self._durations) / len(self._durations)
        return self.concurrency / max(mean, 1e-6)

    def expected_wait(self, sender: str) -> float:
        """Seconds a new message of `sender` would wait: the customers ahead of it in the rotation at the pace.

        Served one customer at a time, a new message waits for one round of
        the others waiting (and for its own earlier messages, if it has some).
        """
        pace = self.pace()
        if pace is None:
            return 0.0
        line = self._lines.get(sender)
        ahead = len(self._lines) * (len(line) + 1) if line else len(self._lines) + 1
        return ahead / pace

    def _full(self, sender: str) -> bool:
        if self._waiting >= self.max_waiting:
            return True
        return self.max_wait_s > 0 and self.expected_wait(sender) > self.max_wait_s

    @contextlib.asynccontextmanager
    async def admit(self, sender: str) -> AsyncIterator[bool]:
        """``async with gate.admit(sender) as admitted``: True once inside (kept until the block ends), False if refused."""
        if not self.enabled:
            yield True
            return
        if not self._lines and sender not in self._inside and len(self._inside) < self.concurrency:
            self._inside[sender] = self._clock()
        else:
            if self._full(sender):
                self.refused += 1
                yield False
                return
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self._lines.setdefault(sender, deque()).append(future)
            self._waiting += 1
            self._dispatch()  # room may be free, held back only for customers whose message is inside
            try:
                await future  # `_dispatch` has put `sender` inside when this returns
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._leave(sender)  # admitted, then cancelled before it ran
                else:
                    self._forget(sender, future)
                raise
        try:
            yield True
        finally:
            self._leave(sender)

    def _forget(self, sender: str, future: asyncio.Future) -> None:
        """A waiting message gave up (its request was cancelled): out of its line."""
        line = self._lines.get(sender)
        if line is not None and future in line:
            line.remove(future)
            self._waiting -= 1
            if not line:
                del self._lines[sender]

    def _leave(self, sender: str) -> None:
        entered = self._inside.pop(sender, None)
        if entered is not None:
            self._durations.append(self._clock() - entered)
        self._dispatch()

    def _dispatch(self) -> None:
        """Let waiting messages in, one customer at a time in rotation, while there is room."""
        skipped = 0
        while self._lines and len(self._inside) < self.concurrency and skipped < len(self._lines):
            sender, line = next(iter(self._lines.items()))
            if sender in self._inside:  # their previous message is still inside: next customer
                self._lines.move_to_end(sender)
                skipped += 1
                continue
            future = line.popleft()
            self._waiting -= 1
            if line:
                self._lines.move_to_end(sender)  # back of the rotation
            else:
                del self._lines[sender]
            if future.done():  # cancelled while waiting
                continue
            self._inside[sender] = self._clock()
            future.set_result(None)
            skipped = 0


def from_settings(settings) -> FairGate:
    return FairGate(settings.admission_concurrency, settings.admission_queue, settings.admission_max_wait_s)
