"""The action server's metrics: every action's ``run`` timed, and ``GET /metrics`` beside the SDK's ``/health``.

Wired once, when the actions package is imported (bot/actions/__init__.py); the
counters and histograms themselves are `core.metrics`'.
"""
from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any

from rasa_sdk import Action
from sanic import Sanic, response

from core import metrics
from core.logs import conversation

logger = logging.getLogger(__name__)


def instrument_actions(*modules: Any) -> int:
    """Time the ``run`` of every Rasa SDK action defined in `modules`; returns how many were wrapped.

    The wrapper observes ``assistant_action_seconds{action}``, counts an
    exception under ``assistant_errors_total{kind="action"}`` and sets the
    conversation id for the logs (`core.logs`).
    """
    wrapped = 0
    for module in modules:
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and issubclass(cls, Action) and cls.__module__ == module.__name__):
                continue
            original = cls.run
            if getattr(original, "__assistant_timed__", False):
                continue

            @functools.wraps(original)
            async def run(self, dispatcher, tracker, domain, __original=original):
                start = time.perf_counter()
                with conversation(getattr(tracker, "sender_id", None)):
                    try:
                        result = __original(self, dispatcher, tracker, domain)
                        if inspect.isawaitable(result):
                            result = await result
                        return result
                    except Exception:
                        metrics.ERRORS.labels("action").inc()
                        raise
                    finally:
                        metrics.ACTION_SECONDS.labels(self.name()).observe(time.perf_counter() - start)

            run.__assistant_timed__ = True  # type: ignore[attr-defined]
            cls.run = run
            wrapped += 1
    return wrapped


def serve_on_action_server(app_name: str = "rasa_sdk") -> bool:
    """Add ``GET /metrics`` to the action server's Sanic app, if this process is one.

    The Rasa SDK creates its app (named ``rasa_sdk``) before it imports the
    actions package, so the package can add the route while it is imported.
    Returns whether the route is there.
    """
    try:
        app = Sanic.get_app(app_name)
    except Exception:  # not running inside the action server (tests, scripts)
        return False
    if getattr(app.ctx, "assistant_metrics_route", False):
        return True

    async def metrics_route(_request):
        body, content_type = metrics.metrics_response_body()
        return response.raw(body, headers={"Content-Type": content_type})

    try:
        app.add_route(metrics_route, "/metrics", methods=["GET"], name="assistant_metrics")
    except Exception as exc:  # the app already started (auto-reload): keep what is there
        logger.warning("could not add /metrics to the action server: %s", exc)
        return False
    app.ctx.assistant_metrics_route = True
    metrics.count_logged_errors()
    return True
