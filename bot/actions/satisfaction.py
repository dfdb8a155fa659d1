"""The end-of-conversation satisfaction rating: offering it and storing the answer.

``action_ask_satisfaction`` runs after a goodbye (bot/data/rules.yml) and
`offer` is called by ``action_freeze_card`` when the form completes; the
desk offers it when a person hands a conversation back (bot/handoff/desk.py).
The offer is ``utter_ask_satisfaction`` with five buttons; whether to make it is
`core.satisfaction.reason_not_to_ask`. ``action_rate_service``
stores the tapped score (``/rate_service{"score": N}``) and thanks the customer,
nothing else.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.identity import customer_id_of
from core import satisfaction

logger = logging.getLogger(__name__)


def _score_entity(tracker: Tracker) -> Any:
    for entity in (tracker.latest_message or {}).get("entities") or []:
        if entity.get("entity") == "score":
            return entity.get("value")
    return None


def offer(dispatcher: CollectingDispatcher, tracker: Tracker) -> List[Dict[Text, Any]]:
    """Offer the 1-5 buttons when `reason_not_to_ask` allows it; the events to return."""
    events = list(tracker.events or [])
    try:
        rated = satisfaction.of_conversation(tracker.sender_id) is not None
        upset = satisfaction.upset_handoff(tracker.sender_id, satisfaction.session_start(events))
    except satisfaction.STORAGE_ERRORS as exc:  # no database: ask on what the conversation shows
        logger.warning("could not read the satisfaction state of %s: %s", tracker.sender_id, exc)
        rated, upset = False, False
    reason = satisfaction.reason_not_to_ask(events, bool(tracker.get_slot(satisfaction.ASKED_SLOT)), upset, rated)
    if reason:
        logger.debug("satisfaction not asked in %s: %s", tracker.sender_id, reason)
        return []
    dispatcher.utter_message(response=satisfaction.ASK_RESPONSE, buttons=satisfaction.buttons())
    return [SlotSet(satisfaction.ASKED_SLOT, True)]


class ActionAskSatisfaction(Action):
    """Offers the 1-5 rating at the end of a conversation, at most once."""

    def name(self) -> Text:
        return "action_ask_satisfaction"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        return offer(dispatcher, tracker)


class ActionRateService(Action):
    """Stores the customer's 1-5 rating of the conversation and thanks them."""

    def name(self) -> Text:
        return "action_rate_service"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        score = satisfaction.parse_score(_score_entity(tracker))
        if score is None:  # typed "I'd like to rate you": the buttons
            dispatcher.utter_message(response=satisfaction.ASK_RESPONSE, buttons=satisfaction.buttons())
            return [SlotSet(satisfaction.ASKED_SLOT, True)]
        events = list(tracker.events or [])
        customer = customer_id_of(tracker)
        try:
            satisfaction.record(
                tracker.sender_id, score, customer_id=customer,
                intent=satisfaction.conversation_intent(events),
                handled=satisfaction.handled_by(tracker.sender_id, satisfaction.session_start(events)),
                segment=satisfaction.segment_of(customer),
            )
        except satisfaction.STORAGE_ERRORS as exc:
            logger.error("could not store the satisfaction rating of %s: %s", tracker.sender_id, exc)
        dispatcher.utter_message(response="utter_satisfaction_thanks")
        return [SlotSet(satisfaction.ASKED_SLOT, True)]
