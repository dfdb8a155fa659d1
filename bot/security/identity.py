"""Which verified customer each conversation belongs to: the one writer and its readers.

Conversation ids (Rasa sender ids) are namespaced by channel, so no channel
can claim another's customers:

==========================  ==============================  ===================
conversation id             customer id                     vouched for by
==========================  ==============================  ===================
``web:anon-<32 hex>``       the conversation id itself      the server (issued)
``web:<sub>``               ``<sub>``                       the website's token
``rest:<caller>:<id>``      ``<id>``                        the REST caller
``slack:<user>``            ``slack:<user>``                Slack's signature
``telegram:<chat>``         ``telegram:<user>``             Telegram's secret
==========================  ==============================  ===================

Customer ids vouched for by the website or a REST caller match `CUSTOMER_ID`,
which has no ``:``, so they can never name a Slack, Telegram or anonymous
widget customer. Channels call `link` at ingress for every message; a
conversation stays with the first customer linked to it (`IdentityConflict`
otherwise). Erasure reads `conversations_of` to reach every channel.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Dict, List, Optional, Tuple

import sqlalchemy as sa

from core import db

logger = logging.getLogger(__name__)

# A customer id the website or a REST caller may vouch for: no ':' (the channels' namespaces).
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
# An anonymous widget conversation: issued by the server, 128 random bits.
ANONYMOUS_CONVERSATION = re.compile(r"^web:anon-[0-9a-f]{32}$")
CHANNELS = ("web", "rest", "slack", "telegram")

# conversation id -> (customer id, time the entry expires). Links never change once made,
# so the cache only saves the database a write per message; entries expire so that a link
# removed by erasure on another replica is written again within this many seconds.
_CACHE_S = 300.0
_CACHE_MAX = 100_000
_linked: Dict[str, Tuple[str, float]] = {}
_lock = threading.Lock()


class IdentityConflict(ValueError):
    """The conversation already belongs to another customer."""


def current_mode() -> str:
    """``local``, ``demo`` or ``production`` (`bot.security.mode` where present, else ASSISTANT_ENV)."""
    try:
        from bot.security.mode import current_mode as mode
    except ImportError:  # the modes module is written by another part of the work
        return (os.environ.get("ASSISTANT_ENV") or "local").strip().lower()
    return mode()


def is_demo() -> bool:
    """Whether the demo relaxations apply (never in production: the servers refuse to start)."""
    return current_mode() == "demo"


def _engine(engine):
    return engine if engine is not None else db.connect()


def link(conversation_id: str, customer_id: str, channel: str, verified_by: str, engine=None) -> None:
    """Record that `conversation_id` belongs to `customer_id` (idempotent; cheap when already known).

    Raises `IdentityConflict` when the conversation is linked to another customer,
    `ValueError` for an empty id or an unknown channel.
    """
    if not conversation_id or not customer_id:
        raise ValueError("a link needs a conversation id and a customer id")
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
    now = time.monotonic()
    known = _linked.get(conversation_id)
    if known is not None and known[1] > now:
        if known[0] != customer_id:
            raise IdentityConflict(f"conversation {conversation_id} belongs to another customer")
        return
    engine = _engine(engine)
    table = db.identities
    with engine.begin() as conn:
        existing = conn.execute(
            sa.select(table.c.customer_id).where(table.c.conversation_id == conversation_id)
        ).scalar()
        if existing is None:
            try:
                with conn.begin_nested():  # a concurrent writer may insert first (another replica)
                    conn.execute(table.insert().values(
                        conversation_id=conversation_id, customer_id=customer_id, channel=channel,
                        verified_by=verified_by, created_at=time.time(),
                    ))
                existing = customer_id
            except sa.exc.IntegrityError:
                existing = conn.execute(
                    sa.select(table.c.customer_id).where(table.c.conversation_id == conversation_id)
                ).scalar()
    if existing != customer_id:
        raise IdentityConflict(f"conversation {conversation_id} belongs to another customer")
    with _lock:
        if len(_linked) >= _CACHE_MAX:
            _linked.clear()
        _linked[conversation_id] = (customer_id, now + _CACHE_S)


def link_at_ingress(conversation_id: str, customer_id: str, channel: str, verified_by: str) -> None:
    """`link` for a channel's hot path: a database fault is logged, not raised (the message still
    goes on, and the desk tells the customer if the conversation cannot be stored); a conflict is raised."""
    try:
        link(conversation_id, customer_id, channel, verified_by)
    except IdentityConflict:
        raise
    except (sa.exc.SQLAlchemyError, db.DatabaseUnavailableError) as exc:
        logger.error("could not record the customer of %s: %s", conversation_id, exc)


def is_linked(conversation_id: str, engine=None) -> bool:
    """Whether `conversation_id` has been linked (issued anonymous widget ids are linked at their first message)."""
    return customer_of(conversation_id, engine) is not None


def customer_of(conversation_id: str, engine=None) -> Optional[str]:
    """The verified customer of `conversation_id`, or None if it was never linked."""
    known = _linked.get(conversation_id)
    if known is not None and known[1] > time.monotonic():
        return known[0]
    with _engine(engine).connect() as conn:
        return conn.execute(
            sa.select(db.identities.c.customer_id).where(db.identities.c.conversation_id == conversation_id)
        ).scalar()


def conversations_of(customer_id: str, engine=None) -> List[str]:
    """Every conversation linked to `customer_id`, on every channel, oldest first."""
    with _engine(engine).connect() as conn:
        return list(conn.execute(
            sa.select(db.identities.c.conversation_id)
            .where(db.identities.c.customer_id == customer_id)
            .order_by(db.identities.c.created_at, db.identities.c.conversation_id)
        ).scalars())


def forget(customer_id: str, engine=None) -> int:
    """Remove every link of `customer_id` (erasure); returns how many were removed."""
    with _engine(engine).begin() as conn:
        removed = conn.execute(db.identities.delete().where(db.identities.c.customer_id == customer_id)).rowcount
    with _lock:
        for conversation_id in [c for c, (customer, _) in _linked.items() if customer == customer_id]:
            _linked.pop(conversation_id, None)
    return removed


def clear_cache() -> None:
    """Forget the in-process cache (tests; a process that must re-read the table)."""
    with _lock:
        _linked.clear()
