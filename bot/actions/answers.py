"""The answer to a banking service intent, with rating and suggestion buttons.

Every service intent is answered by the domain response ``utter_<intent>``;
this action adds the buttons that let the customer rate the answer and, where
the recommender allows, suggestions for what to look at next.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from core.review import try_enqueue
from core.settings import get_settings

from bot.actions.suggestions import suggestion_buttons

logger = logging.getLogger(__name__)

FALLBACK_RESPONSE = "utter_default"


def rating_buttons(answer_id: str) -> List[Dict[str, str]]:
    """Thumbs up and thumbs down buttons whose payloads rate the answer `answer_id`."""
    return [
        {"title": title, "payload": "/rate_answer" + _compact_json({"answer_id": answer_id, "rating": rating})}
        for title, rating in (("👍", "up"), ("👎", "down"))
    ]


def _compact_json(entities: Dict[str, str]) -> str:
    # No spaces and no ASCII escaping, so payloads read the same in every channel.
    return json.dumps(entities, separators=(",", ":"), ensure_ascii=False)


def answer_id_for_intent(intent: str) -> str:
    """The id under which ratings of the answer to `intent` are stored."""
    return f"intent:{intent}"


class ActionAnswerIntent(Action):
    """Answers the latest service intent with ``utter_<intent>`` and buttons."""

    def name(self) -> Text:
        return "action_answer_intent"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[Dict[Text, Any]]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        response = f"utter_{intent}"
        if not intent or response not in domain.get("responses", {}):
            # A rule or TED chose this action for an intent without a written
            # answer: say so honestly rather than send nothing.
            logger.warning("no response %s for intent %r; sending %s", response, intent, FALLBACK_RESPONSE)
            dispatcher.utter_message(response=FALLBACK_RESPONSE)
            return []

        confidence = (tracker.latest_message.get("intent") or {}).get("confidence") or 0.0
        if confidence < get_settings().review_confidence:
            try_enqueue(tracker.sender_id, tracker.latest_message.get("text") or "", "low_confidence", intent, confidence)
        buttons = rating_buttons(answer_id_for_intent(intent))
        try:
            buttons += suggestion_buttons(tracker, topic=intent)
        except Exception:  # the answer matters more than the suggestions
            logger.exception("suggestions for topic %r failed; answering without them", intent)
        dispatcher.utter_message(response=response, buttons=buttons)
        return []
