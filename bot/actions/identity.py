"""The verified customer behind a conversation, as custom actions see it.

A conversation id (``tracker.sender_id``) is not a customer id: it is
namespaced by channel (``web:...``, ``rest:<caller>:<id>``, ``slack:...``,
``telegram:...``, see `bot.security.identity`). Profiles, interactions,
ratings, opt-outs and erasure are keyed on the customer the channel verified.
"""
from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def customer_id_of(tracker: Any) -> str:
    """The verified customer id of `tracker`'s conversation.

    The ``customer_id`` the channel put in the latest user message's metadata
    (channels drop any the client sent), else the identity table's link, else
    the conversation id itself.
    """
    for event in reversed(getattr(tracker, "events", None) or []):
        if isinstance(event, dict) and event.get("event") == "user":
            customer = (event.get("metadata") or {}).get("customer_id")
            if isinstance(customer, str) and customer:
                return customer
            break
    try:
        from bot.security.identity import customer_of

        linked = customer_of(tracker.sender_id)
    except Exception as exc:  # the database is down: the conversation id is still this customer's own
        logger.warning("could not read the customer of %s: %s", tracker.sender_id, exc)
        linked = None
    return linked or tracker.sender_id
