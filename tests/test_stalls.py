"""The event-loop stall watch (core/stalls.py): a loop held too long is reported with what held it."""
from __future__ import annotations

import asyncio
import logging
import time

from core.stalls import StallWatch


def _hold_the_loop_in_a_named_function(seconds: float) -> None:
    time.sleep(seconds)  # synchronous work on the loop: nothing else runs meanwhile


def test_a_held_loop_is_reported_once_with_the_function_that_held_it(caplog):
    reports = []

    async def main():
        watch = StallWatch(0.1, "test", on_stall=lambda late, lines: reports.append((late, lines)))
        watch.start()
        await asyncio.sleep(0.2)  # idle: no report
        assert reports == []
        _hold_the_loop_in_a_named_function(0.5)
        await asyncio.sleep(0.2)  # the loop comes back; the watcher logs the end
        await watch.stop()
        return watch

    with caplog.at_level(logging.WARNING, logger="core.stalls"):
        watch = asyncio.run(main())
    assert len(reports) == 1 and watch.stalls == 1
    late, lines = reports[0]
    assert late > 0.1
    assert any("_hold_the_loop_in_a_named_function" in line for line in lines)
    text = caplog.text
    assert "event loop held for over" in text and "_hold_the_loop_in_a_named_function" in text
    assert "stall above ended after about" in text


def test_a_loop_that_keeps_yielding_is_never_reported():
    reports = []

    async def main():
        watch = StallWatch(0.1, "test", on_stall=lambda late, lines: reports.append(late))
        watch.start()
        for _ in range(30):
            _hold_the_loop_in_a_named_function(0.01)
            await asyncio.sleep(0)
        await watch.stop()

    asyncio.run(main())
    assert reports == []


def test_the_rasa_server_starts_and_stops_the_watch_with_its_settings(monkeypatch):
    """bot/channels/ops.py: after the server starts, a StallWatch at `loop_stall_ms`; none at 0."""
    from types import SimpleNamespace

    import bot.channels.ops as ops
    import core.serving
    from core.settings import Settings

    monkeypatch.setattr(core.serving, "settle_heap", lambda: None)
    monkeypatch.setattr(ops, "ReleaseWatcher", lambda *a, **k: SimpleNamespace(start=lambda: None, stop=_nothing))

    def listeners(channel):
        blueprint = channel.blueprint(lambda message: None)
        return {future.event: future.listener for future in blueprint._future_listeners}

    for stall_ms, expected in ((150.0, 0.15), (0.0, None)):
        monkeypatch.setattr(ops, "get_settings", lambda: Settings(loop_stall_ms=stall_ms))
        channel = ops.OpsChannel()
        started = listeners(channel)
        app = SimpleNamespace(ctx=SimpleNamespace(agent=None))

        async def serve():
            await started["after_server_start"](app, None)
            watch = channel.stall_watch
            await started["before_server_stop"](app, None)
            return watch

        watch = asyncio.run(serve())
        assert (watch.threshold_s if watch else None) == expected


async def _nothing():
    return None
