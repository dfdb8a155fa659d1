"""Handoff to a person, for real: widget customer, inbox agent, and back to the assistant.

Also the two automatic handoffs (frustration, two fallbacks in a row) and the
rule that nothing a handed-off customer writes is lost or answered by the
assistant, through the REST channel.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest
import sqlalchemy as sa

from core import db
from tests.e2e.test_widget import browser, open_widget, say  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.e2e


def handoff_row(assistant, conversation_id):
    with db.connect(assistant.db_url).connect() as conn:
        return conn.execute(
            sa.select(db.handoffs).where(db.handoffs.c.conversation_id == assistant.conversation_of(conversation_id))
            .order_by(db.handoffs.c.id.desc())
        ).mappings().first()


def user_texts(assistant, sender):
    return [e["text"] for e in assistant.tracker(sender)["events"] if e["event"] == "user"]


def test_a_web_customer_reaches_an_agent_in_the_inbox_and_comes_back_to_the_assistant(assistant, browser):  # noqa: F811
    customer = f"c_handoff_{uuid.uuid4().hex[:8]}"
    customer_page = browser.new_context().new_page()
    widget = open_widget(customer_page, f"{assistant.url}/webhooks/web/?customer={customer}")
    banner = widget.locator(".handoff")

    say(widget, "I want to talk to a human")
    customer_page.wait_for_function(
        "() => document.querySelector('#northwind-chat').shadowRoot.querySelector('.handoff').dataset.status === 'waiting'",
        timeout=60_000,
    )
    assert "in the queue" in banner.inner_text()
    say(widget, "my card was charged twice for one coffee")
    widget.locator(".msg.system", has_text="added that for the adviser").wait_for(timeout=30_000)

    agent_page = browser.new_context().new_page()
    username, password = assistant.inbox_account("agent", display_name="Alex")  # customers see the display name
    agent_page.goto(f"{assistant.url}/webhooks/inbox/")
    agent_page.fill("#username", username)
    agent_page.fill("#password", password)
    agent_page.click("#login button[type=submit]")
    entry = agent_page.locator(f"#list button[data-conversation='web:{customer}']")  # signed in: conversation web:<id>
    entry.wait_for(timeout=15_000)
    assert "waiting" in entry.inner_text()
    entry.click()
    agent_page.locator("#transcript li.customer", has_text="charged twice").wait_for(timeout=15_000)
    assert "I want to talk to a human" in agent_page.locator("#transcript").inner_text()
    assert customer in agent_page.locator("#customer").inner_text()
    assert "charged twice" in agent_page.locator("#guesses").inner_text()  # the assistant's guesses for it

    agent_page.click("#take")
    customer_page.wait_for_function(
        "() => document.querySelector('#northwind-chat').shadowRoot.querySelector('.handoff').dataset.status === 'active'",
        timeout=15_000,
    )
    assert "Alex" in banner.inner_text()
    agent_page.fill("#text", "Hello, I'm Alex. I can see the double charge and I've refunded one of them.")
    agent_page.click("#reply button[type=submit]")
    agent_reply = widget.locator(".msg.agent", has_text="refunded one of them")
    agent_reply.wait_for(timeout=15_000)
    assert "Alex" in agent_reply.inner_text()

    say(widget, "thank you so much")
    agent_page.locator("#transcript li.customer", has_text="thank you so much").wait_for(timeout=15_000)

    agent_page.click("#handback")
    widget.locator(".msg.system", has_text="back with the").wait_for(timeout=15_000)
    customer_page.wait_for_function(
        "() => document.querySelector('#northwind-chat').shadowRoot.querySelector('.handoff').dataset.status === 'none'",
        timeout=15_000,
    )
    assert banner.is_hidden()
    row = handoff_row(assistant, f"web:{customer}")
    assert (row["status"], row["agent"], row["reason"]) == ("closed", "Alex", "asked")
    assert row["customer_id"] == customer

    answered = widget.locator(".msg.bot").count()
    say(widget, "hello")
    widget.locator(".msg.bot").nth(answered).wait_for(timeout=60_000)
    last = widget.locator(".msg.bot").nth(answered)
    assert "system" not in (last.get_attribute("class") or "") and "agent" not in (last.get_attribute("class") or "")
    assert user_texts(assistant, f"web:{customer}")[-4:] == [
        "I want to talk to a human", "my card was charged twice for one coffee", "thank you so much", "hello",
    ]


def test_a_frustrated_customer_is_handed_to_a_person_and_nothing_they_write_is_lost(assistant):
    sender = f"rest-frustrated-{uuid.uuid4().hex[:8]}"
    replies = assistant.send(sender, "This is RIDICULOUS, you are completely useless!!")
    assert [r.get("notice") for r in replies][0] == "utter_handoff_frustrated"
    assert {r.get("notice") for r in replies[1:]} <= {"utter_handoff_nobody_online", "utter_handoff_wait"}, replies
    assert "number" in replies[0]["text"]
    row = handoff_row(assistant, sender)
    assert (row["status"], row["reason"], row["channel"]) == ("waiting", "frustration", "rest")
    assert "useless" in row["summary"]

    replies = assistant.send(sender, "where is my card")
    assert [r.get("notice") for r in replies] == ["utter_handoff_still_waiting"]  # the assistant stays silent
    assert user_texts(assistant, sender)[-2:] == ["This is RIDICULOUS, you are completely useless!!", "where is my card"]


def test_saying_thanks_twice_is_not_asking_again(assistant):
    """A repeated request is frustration; a repeated pleasantry is not (setting repeat_ignored_intents)."""
    sender = f"rest-thanks-{uuid.uuid4().hex[:8]}"
    for text in ["thank you so much for the help", "how do I activate my new card", "thank you so much for the help"]:
        replies = assistant.send(sender, text)
        assert not any(r.get("notice", "").startswith("utter_handoff") for r in replies), (text, replies)
    assert handoff_row(assistant, sender) is None


def test_two_fallbacks_in_a_row_hand_the_customer_to_a_person(assistant):
    sender = f"rest-fallbacks-{uuid.uuid4().hex[:8]}"
    first = assistant.send(sender, "zxq wibble florp quonk")
    assert not any(r.get("notice") for r in first)  # one fallback: the assistant asks again
    second = assistant.send(sender, "grommet snark plib vex")
    assert [r.get("notice") for r in second][0] == "utter_handoff_after_fallbacks"
    assert {r.get("notice") for r in second[1:]} <= {"utter_handoff_nobody_online", "utter_handoff_wait"}, second
    assert handoff_row(assistant, sender)["reason"] == "fallbacks"


def test_a_waiting_customer_can_stop_waiting_and_is_answered_by_the_assistant_again(assistant):
    sender = f"rest-cancel-{uuid.uuid4().hex[:8]}"
    queued = assistant.send(sender, "I want to speak to a real person")
    stop = [b for r in queued for b in r.get("buttons") or [] if b["payload"] == "/cancel_handoff"]
    assert stop and stop[0]["title"] in ("Stop waiting", "Carry on with the assistant"), queued
    assert handoff_row(assistant, sender)["status"] == "waiting"

    left = assistant.send(sender, "/cancel_handoff")  # the button
    assert [r.get("notice") for r in left] == ["utter_handoff_cancelled"], left
    row = handoff_row(assistant, sender)
    assert (row["status"], row["agent"]) == ("closed", None)
    answered = assistant.send(sender, "how do I activate my new card")
    assert answered and not any(r.get("notice") for r in answered), answered  # the assistant answers again

    assistant.send(sender, "can I talk to a person please")
    typed = assistant.send(sender, "never mind, I don't want to wait for an adviser")  # typed works too
    assert [r.get("notice") for r in typed] == ["utter_handoff_cancelled"], typed
    assert assistant.send(sender, "/cancel_handoff")[0]["text"].startswith("You're not waiting")  # nothing to cancel


def test_a_waiting_customer_can_freeze_a_stolen_card_at_once_and_the_agent_sees_it(assistant):
    sender = f"rest-urgent-{uuid.uuid4().hex[:8]}"
    assistant.send(sender, "I want to speak to a real person")
    offer = assistant.send(sender, "I think my card was stolen from my bag")
    assert not any(r.get("notice") == "utter_handoff_still_waiting" for r in offer), offer
    assert any("freeze" in (r.get("text") or "").lower() for r in offer), offer
    for text in ("yes please", "4821", "yes"):
        replies = assistant.send(sender, text)
    assert any("4821" in (r.get("text") or "") for r in replies), replies  # the card ending 4821 is frozen
    events = assistant.tracker(sender)["events"]
    assert any(e["event"] == "action" and e["name"] == "action_freeze_card" for e in events)
    assert handoff_row(assistant, sender)["status"] == "waiting"  # still in the queue for the person
    kept = assistant.send(sender, "and my statement looks wrong too")
    assert [r.get("notice") for r in kept] == ["utter_handoff_still_waiting"], kept  # back to waiting


def test_a_waiting_customer_can_leave_a_message(assistant):
    sender = f"rest-message-{uuid.uuid4().hex[:8]}"
    assistant.send(sender, "I want to speak to a real person")
    replies = assistant.send(sender, "/leave_message")
    assert [r.get("notice") for r in replies] == ["utter_handoff_message_kept"], replies
    assert handoff_row(assistant, sender)["status"] == "waiting"


def post(url, body: bytes, content_type="application/json"):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(
    "path, body, content_type",
    [
        ("/webhooks/rest/webhook", b"{not json", "application/json"),
        ("/webhooks/rest/webhook", b"[]", "application/json"),
        ("/webhooks/rest/webhook", b'{"sender": "x"}', "application/json"),
        ("/webhooks/rest/webhook", b'{"sender": {"a": 1}, "message": "hi"}', "application/json"),
        ("/webhooks/inbox/login", b"{", "application/json"),
        ("/webhooks/inbox/login", b"name=a&password=b", "application/x-www-form-urlencoded"),
        ("/webhooks/inbox/api/conversations/x/reply", b'{"text": "hi"}', "application/json"),  # not signed in
        ("/webhooks/slack/webhook", b"{not json", "application/json"),
        ("/webhooks/telegram/webhook", b"[1]", "application/json"),
    ],
)
def test_malformed_requests_to_every_endpoint_get_a_4xx(assistant, path, body, content_type):
    status = post(assistant.url + path, body, content_type)
    assert 400 <= status < 500, status
