"""Rate limits: token buckets, in this process (`RateLimiter`) or shared through Redis (`SharedRateLimiter`).

`RateLimiter` is the per-customer limit of the handoff desk (one bucket per
verified, channel-namespaced conversation id); `SharedRateLimiter` holds the
ingress limits per client address and per credential (bot/channels/ingress.py)
in Redis, so every replica counts against the same buckets.

Each sender has a bucket of ``burst`` tokens that refills at ``per_minute``
tokens a minute; a message takes one token. A person typing never notices
(a burst of quick messages or button presses passes); a script flooding the
assistant from one id is slowed to ``per_minute``. Other senders are never
affected.

A refused message is not dropped silently: the handoff desk answers it with
`RATE_LIMITED_TEXT` (REST: HTTP 429 with ``Retry-After``), telling the
customer that it was not read and to send it again.

`RateLimiter` lives in one process's memory (the Rasa server runs one); with
several Rasa servers behind a balancer, each enforces its own per-customer
limit, while the limits at the door are shared.
Memory stays bounded: at most ``max_senders`` buckets, the least recently
seen dropped first (a dropped bucket was full or nearly so).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, List, Optional

from core.settings import get_settings

logger = logging.getLogger(__name__)

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
        settings = get_settings()
    return RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)


# ------------------------------------------------------------ shared buckets (Redis)
# One atomic step of a token bucket kept in a Redis hash: refill by the time
# passed (Redis's own clock, so replicas' clocks need not agree), take a token
# if there is one, and say how long until the next one. One script call, so
# two replicas never both take the last token.
_TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1])
local at = tonumber(saved[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedRateLimiter:
    """Token buckets in Redis, shared by every replica; `acquire` is a coroutine with `RateLimiter.acquire`'s answer.

    A bucket is a Redis hash under ``<prefix>:<key>`` that expires once it
    would be full again. When Redis cannot be reached the limiter falls back
    to an in-process bucket for the key (each replica then limits on its own)
    and logs that, at most once a minute.
    """

    def __init__(self, client, per_minute: float, burst: int, prefix: str, fallback: Optional[RateLimiter] = None) -> None:
        self.client = client  # redis.asyncio.Redis
        self.rate = max(0.0, float(per_minute)) / 60.0
        self.burst = max(1, int(burst))
        self.prefix = prefix
        self.fallback = fallback or RateLimiter(per_minute, burst)
        self._script = client.register_script(_TAKE_TOKEN)
        self._warned_at = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def acquire(self, key: str) -> float:
        """0.0 when a request for `key` may pass now, else seconds until it could."""
        if not self.enabled:
            return 0.0
        try:
            wait = await self._script(keys=[f"{self.prefix}:{key}"], args=[repr(self.rate), self.burst])
            return float(wait)
        except Exception as exc:  # Redis down or unreachable: limit in this process meanwhile
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                logger.warning(
                    "ingress limits: Redis unavailable (%s); limiting in this process only until it is back", exc)
            return self.fallback.acquire(key)
