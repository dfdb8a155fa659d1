"""Dialogue actions: the card freeze form and the handoff to a human agent.

The payment dispute and transfer forms, and what the forms share (entities
first, typed text second, values left from an earlier request forgotten when a
form starts), are in `bot/actions/forms.py`.

The handoff queue is the ``handoffs`` table of the project database, written
only through `bot.handoff.queue.HandoffQueue` (here, by the desk and by the
inbox alike).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

import sqlalchemy as sa
from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.forms import FormFromEntities, checked_card_last_four, checked_yes_or_no
from bot.actions.identity import customer_id_of
from bot.handoff.hours import from_settings as opening_hours
from bot.handoff.notices import NOTICE_FOR_REASON
from bot.handoff.queue import WAITING, HandoffQueue
from bot.security.staff import agents_online
from core import db
from core.review import try_enqueue
from core.settings import get_settings

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------ card freeze


class ValidateFreezeCardForm(FormFromEntities):
    """Checks the card's last four digits (the entity, else what was typed) and the customer's yes or no."""

    def name(self) -> Text:
        return "validate_freeze_card_form"

    def validate_card_last_four(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """Keep exactly four digits; otherwise explain and let the form ask again."""
        return {"card_last_four": checked_card_last_four(slot_value, dispatcher, tracker)}

    def validate_freeze_confirmed(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> Dict[Text, Any]:
        """Keep a yes or a no (affirm / deny); anything else is asked again."""
        return checked_yes_or_no("freeze_confirmed", slot_value, dispatcher)


class ActionFreezeCard(Action):
    """Completes the freeze form: confirms the outcome and clears its slots."""

    def name(self) -> Text:
        return "action_freeze_card"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        last_four = tracker.get_slot("card_last_four")
        confirmed = tracker.get_slot("freeze_confirmed")
        if not last_four:
            dispatcher.utter_message(response="utter_freeze_cancelled")
        elif confirmed is True:
            dispatcher.utter_message(response="utter_card_frozen", card_last_four=last_four)
        else:
            dispatcher.utter_message(response="utter_card_not_frozen", card_last_four=last_four)
        # Cleared so that the next freeze asks again instead of reusing an old card.
        events = [SlotSet("card_last_four", None), SlotSet("freeze_confirmed", None)]
        if last_four and confirmed is True:  # resolved: the end-of-conversation rating (bot/actions/satisfaction.py)
            from bot.actions.satisfaction import offer

            events += offer(dispatcher, tracker)
        return events


# --------------------------------------------------------------------- handoff

# What an unreachable or broken database raises on the way to the handoffs table.
HANDOFF_STORAGE_ERRORS = (db.DatabaseUnavailableError, sa.exc.SQLAlchemyError, OSError)
# Set by the dialogue's HandoffPolicy (bot/policies.py) when it hands over: "frustration" | "fallbacks".
REASON_SLOT = "handoff_reason"


class ActionHandoff(Action):
    """Puts the conversation in the queue for a human agent, tells the customer their place, and pauses the dialogue.

    Why it runs decides the reason stored with the handoff and what the customer
    hears: "complaint" after a complaint, "frustration" for a message the NLU read
    as frustrated (intent ``frustrated``) or when `bot.policies.HandoffPolicy` found
    the customer asking again, "fallbacks" after two messages in a row the
    assistant could not answer (the policy's slot ``handoff_reason``), "asked"
    otherwise. The row is written by the one writer of handoffs
    (`bot.handoff.queue`); a conversation already queued keeps its place. The
    returned ``ConversationPaused`` stops the assistant here: from now on the desk
    keeps what the customer writes for the person. When the queue cannot be
    reached the customer is told so, with another way to get help, instead of
    being promised an adviser who will never come, and the dialogue goes on.
    """

    def __init__(self, db_url: Optional[str] = None) -> None:
        self.db_url = db_url  # None: the configured database

    def name(self) -> Text:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        latest = tracker.latest_message or {}
        intent = (latest.get("intent") or {}).get("name")
        reason = handoff_reason(intent, tracker.get_slot(REASON_SLOT))
        try:
            queue = HandoffQueue(db.connect(self.db_url) if self.db_url else None)
            handoff = queue.open(tracker.sender_id, reason, customer_id_of(tracker), tracker.get_latest_input_channel(),
                                 summary_for_agent(reason, latest))
            position = queue.position(tracker.sender_id) if handoff.status == WAITING else None
        except HANDOFF_STORAGE_ERRORS as exc:
            logger.error("could not queue conversation %s for an agent: %s", tracker.sender_id, exc)
            dispatcher.utter_message(response="utter_handoff_unavailable")
            return [SlotSet(REASON_SLOT, None)]
        logger.info("conversation %s queued for an agent (handoff %s, %s)", tracker.sender_id, handoff.id, handoff.reason)
        try_enqueue(tracker.sender_id, latest.get("text") or "", "handoff", intent)
        notice = NOTICE_FOR_REASON.get(reason)
        if intent == "leave_message":
            dispatcher.utter_message(response="utter_handoff_message_kept", notice="utter_handoff_message_kept")
        elif notice is None:  # asked, complaint: an acknowledgement, then the place in the queue
            dispatcher.utter_message(response="utter_handoff_ack")
        notice = notice or "utter_handoff_queued"
        online, hours, wait = availability(queue)
        if position is not None:
            dispatcher.utter_message(response=notice, position=position, notice=notice)
        if not online:  # say so plainly, with the hours; offer to leave a message or carry on with the assistant
            if intent != "leave_message":
                dispatcher.utter_message(response="utter_handoff_nobody_online", hours=hours,
                                         notice="utter_handoff_nobody_online")
        elif wait is not None and position is not None:
            dispatcher.utter_message(response="utter_handoff_wait", minutes=max(1, round(wait / 60)),
                                     notice="utter_handoff_wait")
        return [SlotSet(REASON_SLOT, None), ConversationPaused()]


def availability(queue: HandoffQueue):
    """(someone can answer now, the opening hours in words, the recent median wait in seconds or None).

    Nobody can answer outside `support_hours` or when no staff account used the inbox in the
    last `agent_online_minutes`. A failure to tell is logged and read as "someone is there"
    (the queue notice, as before), never as a reason not to queue.
    """
    settings = get_settings()
    try:
        hours = opening_hours(settings)
        online = hours.is_open() and agents_online(queue.engine, float(settings.agent_online_minutes) * 60) > 0
        return online, hours.describe(), queue.expected_wait_s()
    except Exception as exc:
        logger.warning("could not tell whether anyone is online to answer the queue (%s)", exc)
        return True, "", None


def handoff_reason(intent: Optional[str], decided: Optional[str]) -> str:
    """Why the conversation goes to a person: what the dialogue's policy decided, else what the customer said."""
    if decided in ("frustration", "fallbacks"):
        return decided
    return {"complaint": "complaint", "frustrated": "frustration"}.get(intent or "", "asked")


def summary_for_agent(reason: str, latest: Dict[str, Any]) -> Optional[str]:
    """One line for the agent on why the assistant handed over (the NLU's frustration evidence, if any)."""
    if reason == "fallbacks":
        return "two fallbacks in a row"
    if reason != "frustration":
        return None
    reading = latest.get("frustration") or {}
    evidence = [str(e) for e in reading.get("evidence") or []]
    mood = reading.get("sentiment") or {}
    said = "; ".join(evidence) if evidence else "asked again"
    if mood.get("label"):
        said += f" (reads {mood['label']}, {float(mood.get('confidence') or 0):.2f})"
    return "frustration: " + said
