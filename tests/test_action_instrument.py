"""The action server's metrics wiring (bot/actions/instrument.py): timed actions and GET /metrics."""
from __future__ import annotations

import asyncio
import types

from rasa_sdk import Action
from sanic import Sanic

from bot.actions.instrument import instrument_actions, serve_on_action_server


def test_every_action_is_timed_and_the_action_server_app_serves_metrics():
    module = types.ModuleType("fake_actions")

    class Hello(Action):
        def name(self):
            return "action_hello"

        async def run(self, dispatcher, tracker, domain):
            return []

    Hello.__module__ = module.__name__
    module.Hello = Hello
    assert instrument_actions(module) == 1 and instrument_actions(module) == 0  # wrapped once
    assert asyncio.run(Hello().run(None, types.SimpleNamespace(sender_id="c"), {})) == []

    import logging

    from core.metrics import ErrorCountHandler

    root = logging.getLogger()
    had = list(root.handlers)
    try:
        app = Sanic("instrument_test_app")
        assert serve_on_action_server("instrument_test_app") and serve_on_action_server("instrument_test_app")
        assert any(route.path.strip("/") == "metrics" for route in app.router.routes)
        assert any(isinstance(h, ErrorCountHandler) for h in root.handlers)  # logged errors are counted there
        assert not serve_on_action_server("no_such_app")
    finally:  # the root logger as it was: other tests count errors with their own handler
        for handler in [h for h in root.handlers if h not in had]:
            root.removeHandler(handler)
