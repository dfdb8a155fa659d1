"""Prometheus metrics of the Rasa server and the action server.

Both processes define the same metrics (this module); each exposes what it
measured at ``GET /metrics`` on its own port: the Rasa server through the
ops channel (`bot/channels/ops.py`), the action server through a route that
`bot.actions.instrument` adds to the Rasa SDK's Sanic app. Scrape both.

Rasa server:

- ``assistant_messages_total{channel}``: customer messages received;
- ``assistant_message_seconds{channel}``: a message's whole way through the
  handoff desk (NLU, policies, custom actions, sending the answer);
- ``assistant_nlu_seconds``: intent classification
  (`nlu.TransformerIntentClassifier.process`);
- ``assistant_retrieval_seconds``: answer retrieval (`retrieval.AnswerRetriever.process`);
- ``assistant_fallbacks_total{kind}``: ``nlu_fallback`` (the intent was too
  uncertain) and ``action_default_fallback`` (the policies were);
- ``assistant_handoffs_total{reason}``: conversations handed to a person
  (asked, frustration, fallbacks);
- ``assistant_rate_limited_messages_total{channel}``: messages refused by the
  per-sender rate limit;
- ``assistant_gc_pause_seconds{generation}``: the garbage collector's pauses
  (the whole event loop stops for them);
- ``assistant_loop_stalls_total{process}``: times one piece of work held the
  event loop past ``loop_stall_ms`` (core/stalls.py logs what it was).

Action server:

- ``assistant_action_seconds{action}``: each custom action's run;
- ``assistant_recommendation_seconds``: the recommender's ranking for suggestions;
- ``assistant_suggestions_shown_total``, ``assistant_suggestion_clicks_total``
  (click-through = clicks / shown).

Both: ``assistant_release_info{process,version,action}`` (the release served,
`core.hotswap`), ``assistant_reloads_total{process,outcome}``,
``assistant_reload_seconds{process,outcome}`` (loading beside the served
models, then switching) and ``assistant_reload_failed{process}`` (1 while a
new release could not be loaded and the old one is served);
``assistant_errors_total{kind}`` (exceptions in a measured stage: message,
nlu, retrieval, action, recommender) and ``assistant_log_errors_total{logger}``
(log records at ERROR or above), plus the client's process and Python
metrics. Every hook is a counter increment or a histogram observation (about
a microsecond); nothing does I/O per message.
"""
from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info, generate_latest

logger = logging.getLogger(__name__)

# From a millisecond to half a minute: a parse takes milliseconds, a message under load seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

MESSAGES = Counter("assistant_messages", "Customer messages received, by channel.", ["channel"])
MESSAGE_SECONDS = Histogram(
    "assistant_message_seconds", "Time of a customer message through the handoff desk, answer sent.",
    ["channel"], buckets=BUCKETS,
)
NLU_SECONDS = Histogram("assistant_nlu_seconds", "Intent classification of a batch of messages.", buckets=BUCKETS)
RETRIEVAL_SECONDS = Histogram("assistant_retrieval_seconds", "Answer retrieval for a batch of messages.", buckets=BUCKETS)
# The served path: every model of the pipeline (intent and entities, the retriever's encoder, the sentiment
# reader) run on the model thread for a message before the event loop parses it (core.serving.prefetch);
# the stage histograms above then time a component finding its result ready.
MODEL_SECONDS = Histogram(
    "assistant_model_seconds", "The models' work for a batch of messages on the model thread, before Rasa parses them.",
    buckets=BUCKETS,
)
ACTION_SECONDS = Histogram("assistant_action_seconds", "Run time of a custom action.", ["action"], buckets=BUCKETS)
RECOMMENDATION_SECONDS = Histogram(
    "assistant_recommendation_seconds", "Ranking suggestions for a customer.", buckets=BUCKETS
)
FALLBACKS = Counter("assistant_fallbacks", "Turns that fell back, by kind.", ["kind"])
HANDOFFS = Counter("assistant_handoffs", "Conversations handed to a person, by reason.", ["reason"])
SUGGESTIONS_SHOWN = Counter("assistant_suggestions_shown", "Suggestion buttons shown to customers.")
SUGGESTION_CLICKS = Counter("assistant_suggestion_clicks", "Suggestions clicked (or asked about) by customers.")
RATE_LIMITED = Counter(
    "assistant_rate_limited_messages", "Messages refused by the per-sender rate limit, by channel.", ["channel"]
)
ADMISSION_REFUSED = Counter(
    "assistant_admission_refused_messages", "Messages refused because too many were waiting (bot/admission.py).",
    ["channel"],
)
ADMISSION_WAIT_SECONDS = Histogram(
    "assistant_admission_wait_seconds", "Time a customer message waited at the admission gate.", buckets=BUCKETS
)
GC_PAUSE_SECONDS = Histogram(
    "assistant_gc_pause_seconds", "Python garbage collector pauses, by generation.", ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
LOOP_STALLS = Counter(
    "assistant_loop_stalls", "Times the event loop was held past the stall threshold (core/stalls.py), by process.",
    ["process"],
)
RELEASE = Info("assistant_release", "The release (core.releases) this process serves, by process.", ["process"])
RELOADS = Counter("assistant_reloads", "Switches to a new release, by process and outcome (ok, failed).",
                  ["process", "outcome"])
RELOAD_SECONDS = Histogram(
    "assistant_reload_seconds", "Loading a new release beside the served one and switching, by process and outcome.",
    ["process", "outcome"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
RELOAD_FAILED = Gauge("assistant_reload_failed", "1 while the latest release could not be loaded (the old one is served).",
                      ["process"])
TRACKER_EVENTS = Histogram(
    "assistant_tracker_events", "Events in a tracker the tracker store hands to Rasa (session start, summary, window).",
    buckets=(10, 25, 50, 100, 200, 400, 800, 1600, 3200),
)
TRACKER_CACHE = Counter("assistant_tracker_cache", "Tracker retrievals by the store's cache, by result (hit, miss, new).",
                        ["result"])
ERRORS = Counter("assistant_errors", "Exceptions in a measured stage, by kind.", ["kind"])
LOG_ERRORS = Counter("assistant_log_errors", "Log records at ERROR or above, by logger.", ["logger"])

NLU_FALLBACK = "nlu_fallback"
CORE_FALLBACK = "action_default_fallback"

F = TypeVar("F", bound=Callable[..., Any])


def timed(histogram: Histogram, error_kind: str) -> Callable[[F], F]:
    """Decorator: observe the call's duration in `histogram`; count an exception under `error_kind`."""

    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                except Exception:
                    ERRORS.labels(error_kind).inc()
                    raise
                finally:
                    histogram.observe(time.perf_counter() - start)

            return timed_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except Exception:
                ERRORS.labels(error_kind).inc()
                raise
            finally:
                histogram.observe(time.perf_counter() - start)

        return timed_sync  # type: ignore[return-value]

    return decorate


class MessageTimer:
    """Context manager around one customer message: counts it and times it by channel."""

    __slots__ = ("channel", "start")

    def __init__(self, channel: Optional[str]) -> None:
        self.channel = channel or "unknown"
        self.start = 0.0

    def __enter__(self) -> "MessageTimer":
        MESSAGES.labels(self.channel).inc()
        self.start = time.perf_counter()
        return self

    def __exit__(self, kind, _value, _tb) -> None:
        MESSAGE_SECONDS.labels(self.channel).observe(time.perf_counter() - self.start)
        if kind is not None and issubclass(kind, Exception):
            ERRORS.labels("message").inc()


def count_turn(events: Sequence[Any]) -> None:
    """Count the fallbacks of the latest turn, given a tracker's events (Rasa `Event` objects).

    Walks back from the end to the customer's latest message: cheap, no I/O.
    """
    for event in reversed(events):  # a tracker's events are a deque: reversed without copying
        name = type(event).__name__
        if name == "ActionExecuted" and getattr(event, "action_name", None) == CORE_FALLBACK:
            FALLBACKS.labels(CORE_FALLBACK).inc()
        elif name == "UserUttered":
            if (getattr(event, "intent", None) or {}).get("name") == NLU_FALLBACK:
                FALLBACKS.labels(NLU_FALLBACK).inc()
            return


_gc_started = [0.0]


def _gc_callback(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    elif _gc_started[0]:
        GC_PAUSE_SECONDS.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - _gc_started[0])


def watch_gc() -> None:
    """Observe every garbage collection's pause in ``assistant_gc_pause_seconds{generation}`` (once)."""
    import gc

    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)


def metrics_response_body() -> Tuple[bytes, str]:
    """What ``GET /metrics`` answers: the exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# ------------------------------------------------------------- logged errors


class ErrorCountHandler(logging.Handler):
    """Counts records at ERROR or above by logger (its first two name parts); writes nothing."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        LOG_ERRORS.labels(".".join(record.name.split(".")[:2])).inc()


def count_logged_errors() -> None:
    """Attach `ErrorCountHandler` to the root logger (once; again after a logging reconfiguration)."""
    root = logging.getLogger()
    if not any(isinstance(h, ErrorCountHandler) for h in root.handlers):
        root.addHandler(ErrorCountHandler())
