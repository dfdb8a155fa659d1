"""Who a conversation belongs to, and which conversations belong to a customer.

Thin wrappers over the identity layer (`bot.actions.identity`,
`bot.security.identity`) so that privacy code works the same before and after
that layer exists: without it, a customer is their conversation id.
"""
from __future__ import annotations

import logging
from typing import Any, List

logger = logging.getLogger(__name__)


def customer_id_of(tracker: Any) -> str:
    """The verified customer id of the conversation behind `tracker` (its sender id when none is known)."""
    try:
        from bot.actions.identity import customer_id_of as verified
    except ImportError:
        return str(tracker.sender_id)
    return str(verified(tracker) or tracker.sender_id)


def conversations_of(customer_id: str) -> List[str]:
    """Every conversation id linked to `customer_id` (all channels), the customer id itself included."""
    found: List[str] = []
    try:
        from bot.security.identity import conversations_of as linked
    except ImportError:
        linked = None
    if linked is not None:
        found = [str(c) for c in linked(customer_id) or []]  # a database error propagates: the worker retries
    return list(dict.fromkeys([customer_id, *found]))
