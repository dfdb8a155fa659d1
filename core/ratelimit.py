"""Per-sender rate limits: a token bucket for each conversation id.

Each sender has a bucket of ``burst`` tokens that refills at ``per_minute``
tokens a minute; a message takes one token. A person typing never notices
(a burst of quick messages or button presses passes); a script flooding the
assistant from one id is slowed to ``per_minute``. Other senders are never
affected.

A refused message is not dropped silently: the handoff desk answers it with
`RATE_LIMITED_TEXT` (REST: HTTP 429 with ``Retry-After``), telling the
customer that it was not read and to send it again.

The limiter lives in one process's memory (the Rasa server runs one); with
several Rasa servers behind a balancer, each enforces its own limit, so route
a conversation to one server (sticky sessions) or divide the limits.
Memory stays bounded: at most ``max_senders`` buckets, the least recently
seen dropped first (a dropped bucket was full or nearly so).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, List, Optional

RATE_LIMITED_TEXT = (
    "You're sending messages faster than I can read them, so I didn't read your last one. "
    "Please wait a few seconds and send it again."
)


class RateLimiter:
    """Token buckets keyed by sender id; `acquire` says whether a message may pass now."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_senders: int = 100_000,
        notice_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = max(0.0, float(per_minute)) / 60.0  # tokens per second
        self.burst = max(1, int(burst))
        self.max_senders = max(1, int(max_senders))
        self.notice_every_s = notice_every_s
        self.clock = clock
        # sender -> [tokens, time of last refill, time of last notice]
        self._buckets: "OrderedDict[str, List[float]]" = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when the limit is off (``per_minute`` is 0)."""
        return self.rate > 0

    def acquire(self, sender: str) -> float:
        """Take a token for a message from `sender`: 0.0 when it may pass, else seconds until it could."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(sender, None)
            if bucket is None:
                bucket = [float(self.burst), now, float("-inf")]
            else:
                bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
                bucket[1] = now
            self._buckets[sender] = bucket  # most recently seen last
            if len(self._buckets) > self.max_senders:
                self._buckets.popitem(last=False)
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.rate

    def should_notify(self, sender: str) -> bool:
        """Whether to tell `sender` now that a message was refused (at most once per ``notice_every_s``).

        Channels that push replies (widget, Slack, Telegram) use it so that a
        flood of refused messages does not become a flood of notices.
        """
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(sender)
            if bucket is None:
                return True
            if now - bucket[2] >= self.notice_every_s:
                bucket[2] = now
                return True
            return False

    def __len__(self) -> int:
        return len(self._buckets)


def limiter_from_settings(settings: Optional[object] = None) -> RateLimiter:
    """The limiter configured by ``rate_limit_per_minute`` and ``rate_limit_burst``."""
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    return RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
