"""The customer's privacy requests in the dialogue.

- ``action_export_my_data`` ("send me a copy of my data"): writes a JSON export
  of everything held about the verified customer (`bot.privacy.export`) and
  gives this conversation a download link valid ``EXPORT_HOURS`` hours.

"Delete my data" is ``action_forget_me`` (bot/actions/suggestions.py), which
records an erasure request that the privacy worker carries out.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

import sqlalchemy as sa
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.privacy import export
from bot.privacy.identity import conversations_of, customer_id_of
from core import db
from core.settings import get_settings

logger = logging.getLogger(__name__)


def download_link(token: str) -> str:
    """The link a customer opens to fetch their export: ``public_url`` + the download path + token."""
    return get_settings().public_url.rstrip("/") + export.DOWNLOAD_PATH + token


class ActionExportMyData(Action):
    """Writes a copy of the customer's data and offers it through a private link."""

    def name(self) -> Text:
        return "action_export_my_data"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        customer = customer_id_of(tracker)
        try:
            engine = db.connect()
            conversations = conversations_of(customer)
            if tracker.sender_id not in conversations:
                conversations.append(tracker.sender_id)
            token, _ = export.create_export(engine, customer, conversation_id=tracker.sender_id, conversations=conversations)
        except (db.DatabaseUnavailableError, sa.exc.SQLAlchemyError, OSError):
            logger.exception("could not export the data of a customer")
            dispatcher.utter_message(response="utter_data_export_failed")
            return []
        dispatcher.utter_message(response="utter_data_export_ready", link=download_link(token), hours=export.EXPORT_HOURS)
        return []
