"""Rasa's Redis lock store with atomic ticket operations, for several Rasa servers.

Rasa keeps one "ticket lock" per conversation so that its messages are
processed one at a time, in the order they arrived. Its `RedisLockStore`
changes a lock with a plain GET, a change in Python and a SET. That is safe
inside one server (the event loop runs one change at a time) but not between
servers: two replicas that get a message of the same conversation at the
same moment both read the same lock, both hand out the same ticket number,
and both go ahead, so the conversation is processed twice at once; a cleanup
can also delete a lock that the other replica has just queued on (its
message then fails with a LockError). Two processes and three simultaneous
messages each were enough to lose updates in a test.

`AtomicRedisLockStore` makes each change of a lock one Redis transaction
(WATCH the key, read, change, MULTI/SET or DEL/EXEC, retry when another
server changed it in between), so ticket numbers are unique and the queue is
never lost. Named in endpoints.yml as
``type: bot.lock_store.AtomicRedisLockStore`` with the same keys as Rasa's
``type: redis`` (url, port, db, password, key_prefix, use_ssl...).

Both lock stores of the project (that one, and `PromptInMemoryLockStore` for
one server, named in bot/endpoints.yml) let a message that waits behind
another of its conversation re-check its ticket every `LOCK_POLL_S` (20 ms)
instead of Rasa's once a second, so a customer who sends twice quickly does
not wait up to a second for nothing: a dictionary lookup in memory, one GET
on Redis. Rasa's `LockStore.lock` takes the interval as an argument; these
classes only change its default (`PromptLock`).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Optional, Text, Tuple, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, InMemoryLockStore, RedisLockStore

logger = logging.getLogger(__name__)

T = TypeVar("T")
# A change gets the stored lock (None when there is none) and returns the lock
# to store (None: delete it) and the value for the caller.
Change = Callable[[Optional[TicketLock]], Tuple[Optional[TicketLock], T]]

LOCK_POLL_S = 0.02  # how often a waiting message re-checks its ticket (Rasa: 1 s)


class PromptLock:
    """Mixin for a Rasa `LockStore`: a waiting message re-checks its ticket every `LOCK_POLL_S`."""

    def lock(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME, wait_time_in_seconds: float = LOCK_POLL_S):
        return super().lock(conversation_id, lock_lifetime, wait_time_in_seconds)  # type: ignore[misc]


class PromptInMemoryLockStore(PromptLock, InMemoryLockStore):
    """Rasa's in-memory lock store (one Rasa server) with the prompt re-check (see the module doc).

    Named in endpoints.yml as ``type: bot.lock_store.PromptInMemoryLockStore`` (no other keys).
    """

    def __init__(self, endpoint_config: Any = None) -> None:
        # Rasa builds a lock store named by module path with `endpoint_config=`; nothing to read from it.
        super().__init__()


class AtomicRedisLockStore(PromptLock, RedisLockStore):
    """`RedisLockStore` whose ticket changes are Redis transactions (see the module doc)."""

    def __init__(self, endpoint_config: Any = None, **kwargs: Any) -> None:
        # Rasa builds a lock store named by module path with `endpoint_config=`.
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)

    def _change(self, conversation_id: Text, change: Change) -> T:
        import redis

        key = self.key_prefix + conversation_id
        with self.red.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    lock = TicketLock.from_dict(json.loads(raw)) if raw else None
                    new, result = change(lock)
                    pipe.multi()
                    if new is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, new.dumps())
                    pipe.execute()
                    return result
                except redis.WatchError:  # another server changed this lock: read it again
                    continue

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        """Queue a new ticket for `conversation_id` and return its number (unique across servers)."""

        def issue(lock: Optional[TicketLock]) -> Tuple[TicketLock, int]:
            lock = lock or TicketLock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        return self._change(conversation_id, issue)

    def update_lock(self, conversation_id: Text) -> None:
        """Drop the expired tickets of `conversation_id`'s lock."""

        def update(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is not None:
                lock.remove_expired_tickets()
            return lock, None

        self._change(conversation_id, update)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove ticket `ticket_number` from the lock."""

        def finish(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is not None:
                lock.remove_ticket_for(ticket_number)
            return lock, None

        self._change(conversation_id, finish)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove ticket `ticket_number`, and the lock with it when nobody else is queued (in one step)."""

        def clean(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            return (lock if lock.is_someone_waiting() else None), None

        self._change(conversation_id, clean)
