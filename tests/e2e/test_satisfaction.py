"""The satisfaction rating, for real: the served assistant asks it, stores it, and the report counts it.

Also the demo run of docs/analytics.md ("Satisfaction"): a handful of REST
customers with known segments end their conversations and tap a score; one
is served by a person from the inbox and handed back; one complains. The
CSAT table ``python -m bot.insight.analytics`` prints is shown with ``pytest -s``.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Dict, List

import pytest
import sqlalchemy as sa

from core import db
from tests.e2e.inbox_client import InboxClient
from bot.insight import analytics

pytestmark = pytest.mark.e2e

RATE = "/rate_service"


def rating_buttons(replies: List[Dict[str, Any]]) -> List[str]:
    return [b["payload"] for m in replies for b in m.get("buttons") or [] if b["payload"].startswith(RATE)]


def stored(db_url: str, conversation_id: str) -> List[Dict[str, Any]]:
    with db.connect(db_url).connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(db.satisfaction).where(db.satisfaction.c.conversation_id == conversation_id)).mappings()]


def test_a_goodbye_is_asked_once_the_rating_stored_and_a_complaint_never_asked(assistant, tmp_path, capsys):
    run = uuid.uuid4().hex[:6]
    # Demo customers with known segments (REST customers are verified as their sender id).
    demo = [  # (customer, segment, question, score)
        (f"csat-{run}-1", "everyday", "my new card still hasn't arrived, where is it?", 5),
        (f"csat-{run}-2", "everyday", "how much does a transfer abroad cost?", 4),
        (f"csat-{run}-3", "travellers", "what exchange rate do you use for card payments abroad?", 2),
        (f"csat-{run}-4", "travellers", "my card was declined in a shop", 4),
        (f"csat-{run}-5", "savers", "how do I get a statement?", 3),
    ]
    with db.connect(assistant.db_url).begin() as conn:
        for customer, segment, _, _ in demo:
            conn.execute(db.customers.insert().values(id=customer, segment=segment, synthetic=True))

    first, _, question, score = demo[0]
    assistant.send(first, question)
    replies = assistant.send(first, "bye")
    buttons = rating_buttons(replies)
    assert buttons == ['/rate_service{"score": %d}' % n for n in range(1, 6)], replies
    assert rating_buttons(assistant.send(first, "goodbye")) == []  # at most once per conversation
    thanks = assistant.send(first, buttons[score - 1])
    assert [m.get("text") for m in thanks] == ["Thank you for rating us, it helps us improve."]
    [row] = stored(assistant.db_url, assistant.conversation_of(first))
    assert (row["score"], row["customer_id"], row["intent"], row["handled_by"], row["segment"]) == (
        5, first, "card_arrival", "assistant", "everyday")

    for customer, _, question, score in demo[1:]:
        assistant.send(customer, question)
        buttons = rating_buttons(assistant.send(customer, "goodbye"))
        assert len(buttons) == 5, customer
        assistant.send(customer, buttons[score - 1])

    # "No more questions" gets no rating.
    done = f"csat-{run}-done"
    assistant.send(done, "how do I top up my account?")
    assert rating_buttons(assistant.send(done, "no more questions, bye")) == []

    # A complaint is never asked: not while it waits for a person, not after a person hands it back.
    complainer = f"csat-{run}-complaint"
    replies = assistant.send(complainer, "I want to make a complaint, this service is terrible")
    assert rating_buttons(replies) == []
    username, password = assistant.inbox_account("agent", display_name="Robin")
    robin = InboxClient(assistant.url)
    assert robin.login(username, password)[0] == 200
    conversation = assistant.conversation_of(complainer)
    quoted = conversation.replace(":", "%3A")
    assert robin.post(f"api/conversations/{quoted}/take")[0] == 200
    assert robin.post(f"api/conversations/{quoted}/reply", {"text": "I've logged your complaint."})[0] == 200
    assert robin.post(f"api/conversations/{quoted}/handback")[0] == 200
    assert rating_buttons(assistant.send(complainer, "bye")) == []
    texts = [e.get("text") or "" for e in assistant.tracker(complainer)["events"] if e.get("event") == "bot"]
    assert not any("how satisfied" in t for t in texts)
    assert stored(assistant.db_url, conversation) == []

    # A person who hands a conversation back: the rating is offered (kept for a REST customer's next turn).
    helped = f"csat-{run}-person"
    assistant.send(helped, "I want to speak to a human")
    conversation = assistant.conversation_of(helped)
    quoted = conversation.replace(":", "%3A")
    assert robin.post(f"api/conversations/{quoted}/take")[0] == 200
    assert robin.post(f"api/conversations/{quoted}/reply", {"text": "Your card is on its way."})[0] == 200
    assert robin.post(f"api/conversations/{quoted}/handback")[0] == 200
    events = assistant.tracker(helped)["events"]
    offered = [e for e in events if e.get("event") == "bot" and rating_buttons([e.get("data") or {}])]
    assert len(offered) == 1
    assistant.send(helped, '/rate_service{"score": 5}')
    [row] = stored(assistant.db_url, conversation)
    assert (row["score"], row["handled_by"]) == (5, "person")
    status, _, detail = robin.get(f"api/conversations/{quoted}")
    assert status == 200 and detail["satisfaction"]["score"] == 5  # shown per conversation in the inbox

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    out = tmp_path / "report"
    assert analytics.main(["--since", today, "--until", today, "--tracker", assistant.env["ASSISTANT_TRACKER_DB"],
                           "--db", assistant.db_url, "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + printed)  # the CSAT table of the demo run (docs/analytics.md)
    figures = json.loads((out / "figures.json").read_text())["satisfaction"]
    assert figures["overall"]["count"] >= 6
    handled = {g["handled_by"]: g for g in figures["by_handled_by"]}
    assert handled["person"]["count"] >= 1 and handled["assistant"]["count"] >= 5
    assert "Satisfaction (CSAT)" in (out / "report.html").read_text()
