"""What the customer is told around a handoff: the response names, and texts to fall back on.

The texts are the domain's responses (bot/domain/handoff.yml), so a project
words them its own way; the ones here are used when the loaded model's domain
lacks one (a model trained before the response existed). Each such message is
marked ``notice: <response name>`` in its metadata, so the transcript and the
channels can tell it from the assistant's answers. Plain data: the action
server and the Rasa server both read it.
"""
from __future__ import annotations

# Texts used when the domain lacks the response (e.g. a model trained before bot/domain/handoff.yml).
NOTICES = {
    "utter_handoff_queued": "You're number {position} in the queue for one of our advisers. "
    "Anything you write now is kept for them.",
    "utter_handoff_frustrated": "I'm sorry this has been frustrating. I'm bringing in one of our advisers: "
    "you're number {position} in the queue.",
    "utter_handoff_after_fallbacks": "I'm not getting this right, so I'm passing you to one of our advisers: "
    "you're number {position} in the queue.",
    "utter_handoff_still_waiting": "Thanks, I've added that for the adviser. You're number {position} in the queue.",
    "utter_handoff_agent_joined": "{agent} from Northwind Bank has joined the conversation.",
    "utter_handoff_returned": "You're back with the Northwind Bank assistant. How else can I help?",
    "utter_handoff_cancelled": "OK, you've left the queue and you're back with the Northwind Bank assistant. "
    "How can I help?",
    "utter_handoff_message_kept": "Please write your message here: an adviser will read it and reply in this conversation.",
    # When a part of the assistant is down (see `HandoffDesk._guarded_turn`).
    "utter_action_unavailable": "I can't do that right now, please try again in a minute; nothing you said was lost.",
    "utter_storage_unavailable": "I can't save our conversation right now, so I won't take new requests; "
    "please try again shortly.",
}
NOTICE_FOR_REASON = {
    "frustration": "utter_handoff_frustrated",
    "fallbacks": "utter_handoff_after_fallbacks",
}
# Desk messages that are not an answer to the customer's latest message; a
# channel that cannot push (REST) gets them with the customer's next message.
UNPROMPTED = ("utter_handoff_agent_joined", "utter_handoff_returned")
