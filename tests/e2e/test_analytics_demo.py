"""Analytics over conversations held with the real demo assistant.

A few customers talk to the served assistant (a greeting, a service
question, a question nobody can answer, a request for a person, a thumbs
up); the analytics command then reads the tracker store Rasa wrote and the
project database the actions wrote, and its figures must show those
conversations.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from bot.insight import analytics

pytestmark = pytest.mark.e2e


def test_analytics_reads_what_the_running_assistant_recorded(assistant, tmp_path, capsys):
    run = uuid.uuid4().hex[:6]
    customers = [f"demo-{run}-{i}" for i in range(3)]
    answer = assistant.send(customers[0], "hello")
    assert answer
    replies = assistant.send(customers[0], "my new card still hasn't arrived, where is it?")
    rate = next((b["payload"] for m in replies for b in m.get("buttons") or [] if '"rating":"up"' in b["payload"]), None)
    if rate:
        assistant.send(customers[0], rate)
    assistant.send(customers[1], "what colour socks do penguins wear on tuesdays")
    assistant.send(customers[2], "I want to speak to a human")

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    out = tmp_path / "report"
    code = analytics.main(["--since", today, "--until", today, "--tracker", assistant.env["ASSISTANT_TRACKER_DB"],
                           "--db", assistant.db_url, "--out", str(out), "--json"])
    assert code == 0
    printed = capsys.readouterr().out
    print(printed)  # the headline figures, for the record (pytest -s)
    figures = json.loads((out / "figures.json").read_text())
    assert figures["conversations"] >= 3
    assert figures["typed_messages"] >= 4
    assert figures["handed_off_conversations"] >= 1 and "asked" in figures["handoff_reasons"]
    assert 0 < figures["containment"] < 1
    assert any(name == "card_arrival" for name, _ in figures["top_intents"])
    if rate:
        assert figures["ratings"]["up"] >= 1
    assert (out / "report.html").exists()
