"""The ops channel's checks and the desk's rate limit, without starting a server."""
from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import pytest
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

from bot.channels import ops
from bot.handoff.desk import HandoffDesk
from core import metrics
from bot.ratelimit import RATE_LIMITED_TEXT
from core.settings import Settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def channel_with(agent) -> ops.OpsChannel:
    channel = ops.OpsChannel()
    channel.app = SimpleNamespace(ctx=SimpleNamespace(agent=agent))
    return channel


def fake_agent(action_url=None):
    return SimpleNamespace(
        is_ready=lambda: True,
        action_endpoint=SimpleNamespace(url=action_url) if action_url else None,
        tracker_store=None,
    )


def test_health_names_the_part_that_failed(monkeypatch):
    monkeypatch.setattr(ops, "_check_database", lambda: None)
    channel = channel_with(fake_agent(f"http://127.0.0.1:{closed_port()}/webhook"))
    status, body = asyncio.run(channel.health())
    assert status == 503
    assert body["failed"] == ["action_server"]
    assert body["checks"]["action_server"].startswith("error:")
    assert body["checks"]["model"] == "ok" and body["checks"]["database"] == "ok"


def test_health_reports_a_database_error_without_personal_data(monkeypatch):
    def broken():
        raise RuntimeError("cannot open postgresql://app:" + "s3cr3t9pass@db/x for jo@example.com")

    monkeypatch.setattr(ops, "_check_database", broken)
    status, body = asyncio.run(channel_with(fake_agent()).health())
    assert status == 503 and body["failed"] == ["database"]
    assert "jo@example.com" not in body["checks"]["database"] and "s3cr3t9pass" not in body["checks"]["database"]
    assert body["checks"]["action_server"] == "not configured"  # nothing to check is not a failure


def test_health_and_ready_without_a_model(monkeypatch):
    monkeypatch.setattr(ops, "_check_database", lambda: None)
    channel = channel_with(None)
    status, body = asyncio.run(channel.health())
    assert status == 503 and "model" in body["failed"]
    assert channel._agent() is None  # /ready answers 503


def test_the_metrics_token_is_required_when_set():
    channel = ops.OpsChannel(token="t0ken")
    assert not channel._authorised(SimpleNamespace(headers={}))
    assert not channel._authorised(SimpleNamespace(headers={"authorization": "Bearer nope"}))
    assert channel._authorised(SimpleNamespace(headers={"authorization": "Bearer t0ken"}))
    assert ops.OpsChannel()._authorised(SimpleNamespace(headers={}))  # open by default


def test_the_channel_is_served_at_the_root():
    assert ops.OpsChannel().url_prefix() == "/"
    from urllib.parse import urljoin

    assert urljoin("/webhooks/", ops.OpsChannel().url_prefix()) == "/"  # how Rasa mounts channels


def test_the_desk_refuses_a_flood_politely_and_lets_others_through():
    settings = Settings(rate_limit_per_minute=6, rate_limit_burst=2)
    app = SimpleNamespace(ctx=SimpleNamespace())  # no model loaded: the desk passes messages straight on
    desk = HandoffDesk(app, queue=SimpleNamespace(), settings=settings)
    passed = []

    async def assistant(message):
        passed.append(message.sender_id)

    async def send(sender):
        output = CollectingOutputChannel()
        await desk.receive(UserMessage("hello", output, sender, input_channel="rest"), assistant)
        return output

    async def main():
        return [await send("flood") for _ in range(4)] + [await send("calm")]

    before = metrics.RATE_LIMITED.labels("rest")._value.get()
    outputs = asyncio.run(main())
    assert passed == ["flood", "flood", "calm"]
    for refused in outputs[2:4]:
        assert [m["text"] for m in refused.messages] == [RATE_LIMITED_TEXT]
        assert refused.retry_after >= 1
    assert not getattr(outputs[4], "retry_after", None)
    assert metrics.RATE_LIMITED.labels("rest")._value.get() == before + 2


def test_the_desk_redacts_a_message_before_the_assistant_sees_it_but_not_button_payloads():
    app = SimpleNamespace(ctx=SimpleNamespace())
    desk = HandoffDesk(app, queue=SimpleNamespace(), settings=Settings())
    seen = []

    async def assistant(message):
        seen.append(message.text)

    async def main():
        for text in ("card 4111 1111 1111 1111 stolen", '/select_suggestion{"item_id":"item-12345678"}'):
            await desk.receive(UserMessage(text, CollectingOutputChannel(), "c-1", input_channel="rest"), assistant)

    asyncio.run(main())
    assert seen == ["card [CARD] stolen", '/select_suggestion{"item_id":"item-12345678"}']


@pytest.mark.parametrize("names, expected", [
    (["ActionExecuted:action_listen", "UserUttered:nlu_fallback", "ActionExecuted:action_answer_from_history"], {"nlu_fallback": 1}),
    (["UserUttered:greet", "ActionExecuted:action_default_fallback"], {"action_default_fallback": 1}),
    (["UserUttered:nlu_fallback", "UserUttered:greet", "ActionExecuted:utter_greet"], {}),
])
def test_fallbacks_of_the_latest_turn_are_counted(names, expected):
    from rasa.shared.core.events import ActionExecuted, UserUttered

    events = []
    for name in names:
        kind, value = name.split(":")
        events.append(ActionExecuted(value) if kind == "ActionExecuted" else UserUttered("x", intent={"name": value}))
    before = {k: metrics.FALLBACKS.labels(k)._value.get() for k in ("nlu_fallback", "action_default_fallback")}
    metrics.count_turn(events)
    after = {k: metrics.FALLBACKS.labels(k)._value.get() - before[k] for k in before}
    assert {k: v for k, v in after.items() if v} == expected
