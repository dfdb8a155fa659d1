"""core.serving: the other models of the pipeline run beside the classifier's pass for a message nobody prefetched."""
from __future__ import annotations

import threading
import time

import pytest

from core import serving


@pytest.fixture
def registered():
    before = serving.prefetchers()
    yield
    serving.use_prefetchers(before)


def test_the_others_run_on_another_thread_during_the_block_and_are_done_at_its_end(registered):
    seen = {}
    started, release = threading.Event(), threading.Event()

    def slow(texts):
        started.set()
        release.wait(5)  # held until the block has looked: no race with a busy machine's scheduler
        seen["retrieval"] = (threading.current_thread().name, list(texts))

    serving.use_prefetchers({("intent", "c"): lambda texts: seen.setdefault("intent", texts),
                             ("retrieval", "r"): slow,
                             ("frustration", "f"): lambda texts: 1 / 0})  # a failure is logged, never raised
    with serving.others_alongside(["where is my card", "", "/rate_answer{}"], ("intent", "c")):
        assert started.wait(5), "the others did not start while the block ran"
        assert "retrieval" not in seen
        release.set()
    assert seen["retrieval"][0].startswith("models-beside") and seen["retrieval"][1] == ["where is my card"]
    assert "intent" not in seen, "the block's own prefetcher is not run twice"


def test_nothing_runs_beside_when_turned_off_or_when_there_is_nothing_to_read(registered, monkeypatch):
    calls = []
    serving.use_prefetchers({("retrieval", "r"): calls.append})
    with serving.others_alongside(["/greet", "  "], ("intent", "c")):
        pass
    monkeypatch.setenv("ASSISTANT_PARSE_ALONGSIDE", "0")
    with serving.others_alongside(["hello"], ("intent", "c")):
        pass
    assert calls == []


def _observed(histogram) -> float:
    return next(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count"))


def test_the_model_thread_s_work_for_a_message_is_timed_on_metrics(registered):
    from core import metrics

    serving.use_prefetchers({("intent", "c"): lambda texts: time.sleep(0.003), ("retrieval", "r"): lambda texts: None})
    before = _observed(metrics.MODEL_SECONDS)
    serving.prefetch(["where is my card"])
    serving.prefetch(["/greet"])  # nothing for the models to read: not a model pass, not observed
    assert _observed(metrics.MODEL_SECONDS) == before + 1
