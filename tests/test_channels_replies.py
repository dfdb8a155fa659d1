"""How each channel draws the assistant's messages: ratings as thumbs, suggestions as buttons."""
from __future__ import annotations

import json

from rasa.shared.core.events import BotUttered, ConversationResumed, SessionStarted, UserUttered

from bot.channels.replies import BotReply, parse_payload
from bot.channels.slack import slack_message
from bot.channels.telegram import callback_data, inline_keyboard, payload_for_callback, telegram_text
from bot.channels.transcript import transcript
from bot.policies import recent_typed_messages

UP = '/rate_answer{"answer_id":"intent:card_arrival","rating":"up"}'
DOWN = '/rate_answer{"answer_id":"intent:card_arrival","rating":"down"}'
SUGGESTION = '/select_suggestion{"item_id":"product:virtual-card-with-a-long-identifier"}'
ANSWER = {
    "text": "Cards arrive within 3 to 5 working days.",
    "buttons": [
        {"title": "👍", "payload": UP},
        {"title": "👎", "payload": DOWN},
        {"title": "Get a virtual card now", "payload": SUGGESTION},
        {"title": "No thanks", "payload": "/no_suggestions"},
    ],
}


def test_payloads_split_into_intent_and_values():
    assert parse_payload(UP) == ("rate_answer", {"answer_id": "intent:card_arrival", "rating": "up"})
    assert parse_payload("/request_human") == ("request_human", {})
    assert parse_payload('/select_suggestion{"item_id": broken}') == ("select_suggestion", {})
    assert parse_payload("where is my card?") is None
    assert parse_payload("/ nothing") is None


def test_rating_buttons_become_the_answer_s_thumbs_and_the_rest_stay_buttons():
    reply = BotReply.from_message(ANSWER)
    assert reply.rating.answer_id == "intent:card_arrival"
    assert (reply.rating.up, reply.rating.down) == (UP, DOWN)
    assert [b.title for b in reply.buttons] == ["Get a virtual card now", "No thanks"]
    event = reply.as_widget_event()
    assert event["rating"] == {"answer_id": "intent:card_arrival", "up": UP, "down": DOWN}
    assert [b["payload"] for b in event["buttons"]] == [SUGGESTION, "/no_suggestions"]


def test_slack_draws_suggestions_and_thumbs_as_block_kit_buttons():
    message = slack_message(BotReply.from_message(ANSWER))
    section, choices, context, rating = message["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": ANSWER["text"]}}
    assert [e["value"] for e in choices["elements"]] == [SUGGESTION, "/no_suggestions"]
    assert [e["value"] for e in rating["elements"]] == [UP, DOWN]
    assert len({e["action_id"] for e in choices["elements"] + rating["elements"]}) == 4
    assert message["text"] == ANSWER["text"]


def test_slack_names_the_agent_and_escapes_control_characters():
    message = slack_message(BotReply.from_message({"text": "1 < 2 & <@U1>", "agent": "Alex"}))
    assert message["text"] == "*Alex* (Northwind Bank): 1 &lt; 2 &amp; &lt;@U1&gt;"


def test_telegram_keyboards_carry_short_digests_that_find_the_offered_payload():
    reply = BotReply.from_message(ANSWER)
    rows = inline_keyboard(reply).inline_keyboard
    assert [[b.text for b in row] for row in rows] == [["Get a virtual card now"], ["No thanks"], ["👍", "👎"]]
    datas = [b.callback_data for row in rows for b in row]
    assert all(len(d.encode()) <= 64 for d in datas)  # Telegram's limit
    assert len(SUGGESTION.encode()) > 64  # the payload itself would not fit
    offered = [BotUttered(ANSWER["text"], data={"buttons": ANSWER["buttons"]})]
    assert payload_for_callback(callback_data(SUGGESTION), offered) == SUGGESTION
    assert payload_for_callback(callback_data("/transfer_all_money"), offered) is None  # never offered
    assert payload_for_callback("free text", offered) is None


def test_telegram_text_names_the_agent():
    assert telegram_text(BotReply.from_message({"text": "Hello", "agent": "Sam"})) == "Sam (Northwind Bank): Hello"


def test_transcript_shows_button_titles_and_attaches_ratings_to_their_answer():
    events = [
        UserUttered("where is my card?", intent={"name": "card_arrival"}),
        BotUttered(ANSWER["text"], data={"buttons": ANSWER["buttons"]}),
        UserUttered(UP, intent={"name": "rate_answer"}),
        UserUttered(SUGGESTION, intent={"name": "select_suggestion"}),
        BotUttered("You're number 1 in the queue.", metadata={"notice": "utter_handoff_queued"}),
        BotUttered("Hi, I'm Alex.", metadata={"agent": "Alex"}),
    ]
    entries = transcript(events)
    assert [(e["sender"], e["text"]) for e in entries] == [
        ("customer", "where is my card?"),
        ("assistant", ANSWER["text"]),
        ("customer", "Get a virtual card now"),
        ("system", "You're number 1 in the queue."),
        ("agent", "Hi, I'm Alex."),
    ]
    assert entries[1]["rated"] == "up" and entries[2]["button"] is True
    assert transcript(events, limit=2)[0]["sender"] == "system"


def test_only_typed_messages_since_the_last_handback_count_for_handoff_decisions():
    events = [
        UserUttered("useless!!"),
        ConversationResumed(),
        UserUttered("where is my card"),
        UserUttered(UP),
        UserUttered("and my PIN?"),
    ]
    assert [e.text for e in recent_typed_messages(events)] == ["where is my card", "and my PIN?"]
    assert recent_typed_messages(events + [SessionStarted()]) == []
