"""`bot.ratelimit`: token buckets per sender."""
from __future__ import annotations

import pytest

from bot.ratelimit import RateLimiter, limiter_from_settings
from core.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_sender_waits_for_the_refill():
    clock = Clock()
    limiter = RateLimiter(per_minute=30, burst=5, clock=clock)  # one token every 2 s
    assert [limiter.acquire("a") for _ in range(5)] == [0.0] * 5
    wait = limiter.acquire("a")
    assert wait == pytest.approx(2.0)
    clock.now += 1.0
    assert limiter.acquire("a") == pytest.approx(1.0)  # still short, and the refusal took nothing
    clock.now += 1.0
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0


def test_other_senders_are_not_affected():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    assert limiter.acquire("flood") == 0.0 and limiter.acquire("flood") == 0.0
    assert limiter.acquire("flood") > 0
    assert limiter.acquire("calm") == 0.0


def test_a_quiet_sender_gets_the_whole_burst_back_but_no_more():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire("a")
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(3)] == [0.0] * 3
    assert limiter.acquire("a") > 0


def test_zero_per_minute_turns_the_limit_off():
    limiter = RateLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.acquire("a") == 0.0 for _ in range(1000))
    assert len(limiter) == 0


def test_memory_is_bounded_and_the_least_recently_seen_go_first():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=1, max_senders=3, clock=clock)
    for sender in "abc":
        limiter.acquire(sender)
    limiter.acquire("a")  # a is seen again: b is now the oldest
    limiter.acquire("d")
    assert len(limiter) == 3
    assert limiter.acquire("b") == 0.0  # forgotten, so a fresh bucket
    assert limiter.acquire("a") > 0  # remembered: still empty


def test_notices_for_push_channels_come_at_most_once_per_interval():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=1, notice_every_s=10, clock=clock)
    limiter.acquire("a")
    assert limiter.acquire("a") > 0
    assert limiter.should_notify("a") is True
    assert limiter.should_notify("a") is False
    clock.now += 10
    assert limiter.should_notify("a") is True


def test_the_limits_come_from_the_settings():
    settings = load_settings(environ={"ASSISTANT_RATE_LIMIT_PER_MINUTE": "12", "ASSISTANT_RATE_LIMIT_BURST": "4"}, path="/nonexistent.yml")
    limiter = limiter_from_settings(settings)
    assert (limiter.rate * 60, limiter.burst) == (pytest.approx(12), 4)
    defaults = load_settings(environ={}, path="/nonexistent.yml")
    assert defaults.rate_limit_per_minute > 0 and defaults.rate_limit_burst >= 5
