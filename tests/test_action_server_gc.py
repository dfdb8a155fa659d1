"""The action server keeps what it loaded at start out of the garbage collector's sight, as the Rasa server does.

Without it each full collection of the action server walked the recommender's,
the encoder's and the SDK's long-lived objects (about 470,000, 225 ms on an AMD
EPYC) while every action call waited (docs/benchmarks.md, "Bursts").
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

from bot import action_server
from core.settings import PROJECT_ROOT

# One Sanic server per process (Sanic 21.12 does not start a second app's server in the same one).
PROBE = textwrap.dedent("""
    import asyncio, gc, json
    from sanic import Sanic
    from bot.action_server import settle_after_start
    from core import metrics
    from core.serving import SERVING_FULL_COLLECTION_EVERY

    from sanic import response

    app = Sanic("gc_probe")

    @app.get("/health")
    async def health(_request):
        return response.json({"status": "ok"})

    settle_after_start(app)
    kept = [object() for _ in range(1000)]  # loaded before the start, like the models

    async def started():
        before = gc.get_freeze_count()
        server = await app.create_server(host="127.0.0.1", port=0, return_asyncio_server=True)
        await server.startup()
        await server.after_start()
        try:
            gc.collect(0)
            return {"frozen_before": before, "frozen_after": gc.get_freeze_count(),
                    "full_every": gc.get_threshold()[2], "wanted": SERVING_FULL_COLLECTION_EVERY,
                    "timed": metrics._gc_callback in gc.callbacks,
                    "young_pauses": metrics.GC_PAUSE_SECONDS.labels("0")._sum.get() > 0}
        finally:
            server.close()
            await server.wait_closed()

    print(json.dumps(asyncio.run(started())))
""")


def test_after_start_the_heap_is_frozen_and_the_pauses_are_timed():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=str(PROJECT_ROOT), capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["frozen_before"] == 0
    assert seen["frozen_after"] > 1000
    assert seen["full_every"] == seen["wanted"]
    assert seen["timed"] and seen["young_pauses"]


def test_a_recommender_switched_in_is_frozen_too(monkeypatch):
    from bot.actions import suggestions

    switched = []
    monkeypatch.setattr(suggestions, "loaded_recommender", lambda: object())
    monkeypatch.setattr(suggestions, "_load_recommender", lambda: "the new recommender")
    monkeypatch.setattr(suggestions, "use_recommender", switched.append)
    switch = action_server.recommender_loader()(None)
    gc.unfreeze()
    try:
        switch()
        assert switched == ["the new recommender"]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_gc_benchmark_times_both_states_and_leaves_the_collector_as_it_was():
    from bot.bench_gc import bench

    kept = []
    threshold = gc.get_threshold()
    results = bench(load=lambda: kept.extend({"n": i} for i in range(20000)), repeats=1)
    assert set(results) == {"as loaded", "after settle_heap"}
    assert results["as loaded"]["tracked"] > 20000 > results["after settle_heap"]["tracked"]
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold


def test_the_gc_benchmark_command_prints_its_table(capsys):
    """`python -m bot.bench_gc`, as docs/benchmarks.md runs it (the real warm-up)."""
    from bot.bench_gc import main

    assert main(["--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| as loaded |" in printed and "| after settle_heap | " in printed
    assert gc.get_freeze_count() == 0
