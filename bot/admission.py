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
- at most ``max_waiting`` messages wait. Past that, a message is refused at
  once with a polite notice to send it again (`BUSY_TEXT`; REST: HTTP 503 with
  ``Retry-After``) rather than waiting into a timeout. A refused message is
  not stored; it was never read.

Settings: ``admission_concurrency`` and ``admission_queue``
(``ASSISTANT_ADMISSION_CONCURRENCY``, ``ASSISTANT_ADMISSION_QUEUE``); a
concurrency of 0 turns the gate off. The gate lives in one server process;
each replica has its own.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from typing import AsyncIterator, Deque, Dict, Optional, Set

BUSY_TEXT = (
    "I'm answering a lot of customers right now and couldn't read your last message. "
    "Please send it again in a few seconds."
)
# What REST callers are told to wait before sending again, in seconds.
RETRY_AFTER_S = 2


class FairGate:
    """At most `concurrency` messages inside; the rest wait in per-customer lines served round-robin (see module doc)."""

    def __init__(self, concurrency: int, max_waiting: int) -> None:
        self.concurrency = max(0, int(concurrency))
        self.max_waiting = max(0, int(max_waiting))
        self._inside: Set[str] = set()  # customers with a message inside
        self._lines: "OrderedDict[str, Deque[asyncio.Future]]" = OrderedDict()  # rotation order
        self._waiting = 0
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

    @contextlib.asynccontextmanager
    async def admit(self, sender: str) -> AsyncIterator[bool]:
        """``async with gate.admit(sender) as admitted``: True once inside (kept until the block ends), False if refused."""
        if not self.enabled:
            yield True
            return
        if not self._lines and sender not in self._inside and len(self._inside) < self.concurrency:
            self._inside.add(sender)
        else:
            if self._waiting >= self.max_waiting:
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
        self._inside.discard(sender)
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
            self._inside.add(sender)
            future.set_result(None)
            skipped = 0


def from_settings(settings) -> FairGate:
    return FairGate(settings.admission_concurrency, settings.admission_queue)
