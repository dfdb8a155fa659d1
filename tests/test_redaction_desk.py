"""The desk redacts everything it stores or shows: typed text, payload-shaped text, metadata, agent replies."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

from bot.handoff.desk import HandoffDesk
from bot.handoff.queue import ACTIVE
from core.redaction import redact_message, redact_metadata
from core.settings import Settings

INTENTS = ["greet", "inform", "rate_answer", "select_suggestion"]


def _desk(intents=INTENTS, **settings):
    app = SimpleNamespace(ctx=SimpleNamespace())  # no model loaded: the assistant below stands in for Rasa
    desk = HandoffDesk(app, queue=SimpleNamespace(), settings=Settings(**settings))
    desk._known_intents = lambda: intents  # the loaded domain's intents
    return desk


def test_the_desk_reads_the_intents_of_the_loaded_model():
    agent = SimpleNamespace(is_ready=lambda: True, domain=SimpleNamespace(intents=["greet"]))
    desk = HandoffDesk(SimpleNamespace(ctx=SimpleNamespace(agent=agent)), queue=SimpleNamespace(),
                       settings=Settings())
    assert desk._known_intents() == ["greet"]
    desk.app.ctx.agent = None
    assert desk._known_intents() is None


def _receive(desk, text, metadata=None):
    seen = []

    async def assistant(message):
        seen.append(message)

    async def main():
        await desk.receive(UserMessage(text, CollectingOutputChannel(), "web:c-1", input_channel="web", metadata=metadata), assistant)

    asyncio.run(main())
    return seen[0]


def test_payload_shaped_text_that_no_button_sent_is_redacted():
    desk = _desk()
    assert _receive(desk, "/4539148803436467").text == "/[CARD]"
    assert _receive(desk, '/nosuchintent{"card": "4539148803436467"}').text == '/nosuchintent{"card": "[CARD]"}'
    assert _receive(desk, "/x{broken 4539148803436467").text == "/x{broken [CARD]"
    # a known intent keeps its payload shape (the button still works), its values are redacted
    assert _receive(desk, '/inform{"email": "jo@example.com"}').text == '/inform{"email": "[EMAIL]"}'


def test_real_button_payloads_pass_unchanged():
    desk = _desk()
    for payload in ('/rate_answer{"answer_id": "a-17", "rating": "up"}', '/select_suggestion{"item_id":"item-12345678"}', "/greet"):
        assert _receive(desk, payload).text == payload


def test_metadata_is_redacted_but_the_channels_own_keys_are_kept():
    desk = _desk()
    metadata = {
        "channel": "web", "customer_id": "web:07912345678",
        "page": "https://bank.example/help?email=jo.smith@example.com&tel=07912345678",
        "extra": {"note": "my card 4539148803436467", "list": ["call 07912 345678", 3]},
    }
    seen = _receive(desk, "hello", metadata)
    assert seen.metadata["customer_id"] == "web:07912345678" and seen.metadata["channel"] == "web"
    assert seen.metadata["page"] == "https://bank.example/help?email=[EMAIL]&tel=[PHONE]"
    assert seen.metadata["extra"] == {"note": "my card [CARD]", "list": ["call [PHONE]", 3]}


def test_nothing_is_redacted_when_redaction_is_off():
    desk = _desk(redact_messages=False)
    assert _receive(desk, "/4539148803436467", {"page": "a@b.com"}).metadata == {"page": "a@b.com"}


def test_an_agents_reply_is_stored_and_sent_redacted():
    desk = _desk()
    desk.queue = SimpleNamespace(current=lambda cid: SimpleNamespace(status=ACTIVE, agent="ann"))
    delivered = []

    async def deliver(conversation_id, events):
        delivered.extend(events)
        return True

    desk._deliver = deliver
    asyncio.run(desk.reply("web:c-1", "ann", "Hi Sarah, your card 4539 1488 0343 6467 is blocked; order 55782134 is fine"))
    assert delivered[0].text == "Hi [NAME], your card [CARD] is blocked; order 55782134 is fine"


def test_an_agents_own_name_stays_in_their_reply():
    from core.redaction import redact_agent_reply

    assert redact_agent_reply("Robin here, how can I help?", "agent-7") == "Robin here, how can I help?"
    assert redact_agent_reply("Hello again, Alex here.") == "Hello again, Alex here."
    assert redact_agent_reply("Hi Sarah, this is Tom from Northwind") == "Hi [NAME], this is Tom from Northwind"
    assert redact_agent_reply("Thanks Sarah.\n- Ann Lee", "Ann Lee") == "Thanks [NAME].\n- Ann Lee"
    assert redact_agent_reply("Thanks, Ann Lee", "Ann Lee") == "Thanks, Ann Lee"
    assert redact_agent_reply("Your phone 07912 345678 is updated") == "Your phone [PHONE] is updated"


def test_redact_message_without_a_domain_takes_intent_shaped_names_only():
    assert redact_message("/greet") == "/greet"
    assert redact_message("/07912345678") == "/[PHONE]"
    assert redact_metadata({"users": ["U123"], "page": "x"}) == {"users": ["U123"], "page": "x"}
