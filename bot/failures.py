"""When a part of the assistant fails during a customer's turn: noticed, never silent.

Installed once, when the server starts (`bot.rasa_shim.install`): Rasa's
`FailSafeTrackerStore` gets `tracker_store_failed` as its error hook and the
agent's action endpoint becomes a `WatchedActionEndpoint`. While the desk
handles a message (`watching_turn`), both note what failed in that turn:

- the tracker store or the project's database fails: `StorageUnavailable` is
  raised, so the message is refused with a plain notice instead of being
  answered out of context and forgotten (`is_storage_error` recognises it);
- a custom action fails: the failure is noted in the `Turn`, and the desk
  tells the customer to try again (Rasa would only log it).

Outside a turn (Rasa's HTTP API, reading transcripts) Rasa's own behaviour stands.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import aiohttp
import sqlalchemy as sa
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from core.db import DatabaseUnavailableError

logger = logging.getLogger(__name__)


class StorageUnavailable(RuntimeError):
    """The tracker store or the project's database failed during a customer's message."""


@dataclass
class Turn:
    """What went wrong while the assistant handled one customer message."""

    failed_actions: List[str] = field(default_factory=list)


# The customer message (or agent's write, `HandoffDesk._deliver`) being handled in this task, whose store
# failures must not pass silently; None elsewhere (Rasa's HTTP API, reading transcripts).
_TURN: contextvars.ContextVar[Optional[Turn]] = contextvars.ContextVar("desk_turn", default=None)


@contextlib.contextmanager
def watching_turn() -> Iterator[Turn]:
    """Note the failures of what runs inside (this task only) in the `Turn` it gives."""
    turn = Turn()
    token = _TURN.set(turn)
    try:
        yield turn
    finally:
        _TURN.reset(token)


def _storage_errors() -> tuple:
    errors: tuple = (StorageUnavailable, DatabaseUnavailableError, sa.exc.DBAPIError, sa.exc.TimeoutError, sqlite3.Error)
    try:
        import redis  # the lock store, when it is Redis

        errors += (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    except ImportError:
        pass
    return errors


STORAGE_ERRORS = _storage_errors()


def is_storage_error(exc: Optional[BaseException]) -> bool:
    """Whether `exc`, or an exception it came from, says a database or store could not be used."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, STORAGE_ERRORS):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def tracker_store_failed(error: Exception) -> None:
    """Rasa's `FailSafeTrackerStore` hook (given to it by `bot.rasa_shim`): refuse the customer's message rather than answer and forget it.

    Without it Rasa logs the error and carries on with an empty conversation
    kept in memory, so the customer is answered out of context and the turn
    is lost at the next restart.
    """
    if _TURN.get() is not None:
        raise StorageUnavailable(f"the tracker store failed: {error}") from error
    logger.error("the tracker store failed (Rasa falls back to memory for this request): %s", error)


def _dumps(body: Dict[str, Any]) -> bytes:
    """JSON of an action call: ujson where it can write the body, else the standard library."""
    try:
        import ujson

        return ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False).encode("utf-8")
    except (ImportError, TypeError, OverflowError, ValueError):
        return json.dumps(body).encode("utf-8")


_KEPT_SESSIONS: List[aiohttp.ClientSession] = []


class _Borrowed:
    """`async with` a kept session without closing it at the end."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def __aenter__(self) -> aiohttp.ClientSession:
        return self._session

    async def __aexit__(self, *exc: Any) -> bool:
        return False


async def close_kept_sessions() -> None:
    """Close the action server sessions kept alive by `WatchedActionEndpoint` (at server stop)."""
    while _KEPT_SESSIONS:
        session = _KEPT_SESSIONS.pop()
        if not session.closed:
            await session.close()


class WatchedActionEndpoint(EndpointConfig):
    """The action server's endpoint, noting in the customer's turn when a call fails.

    Rasa logs a failed custom action and goes on without its events, so the
    customer would get no answer at all; the desk reads the note after the
    turn and tells the customer instead (`HandoffDesk._guarded_turn`).
    """

    @classmethod
    def wrap(cls, endpoint: EndpointConfig) -> "WatchedActionEndpoint":
        watched = cls.__new__(cls)
        watched.__dict__.update(endpoint.__dict__)
        watched._kept = None
        return watched

    def session(self) -> Any:
        """One kept-alive client session per event loop, instead of Rasa's new one per request.

        Rasa opens a session, resolves the host, connects, sends one request
        and closes again for every custom action: a tenth of the Rasa
        server's time per message under load (py-spy). Same headers, auth
        and timeout as Rasa's session; idle connections are dropped after
        3 s, before the action server's own 5 s keep-alive ends them.
        """
        loop = asyncio.get_running_loop()
        kept = getattr(self, "_kept", None)
        if kept is None or kept[0] is not loop or kept[1].closed:
            from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT

            auth = aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"]) if self.basic_auth else None
            session = aiohttp.ClientSession(  # as Rasa configures it, with a kept-alive connector
                headers=self.headers,
                auth=auth,
                timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=3, ttl_dns_cache=300),
            )
            self._kept = kept = (loop, session)
            _KEPT_SESSIONS.append(session)
        return _Borrowed(kept[1])

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        sent = kwargs.get("json")
        if isinstance(sent, dict):
            # The whole conversation goes with every action call; ujson writes it in
            # 40 % of json's time (same JSON).
            kwargs["data"] = _dumps(kwargs.pop("json"))
        try:
            return await super().request(*args, **kwargs)
        except ClientResponseError as exc:
            if exc.status != 400:  # 400: the action rejected itself (e.g. a form's validation), not a failure
                self._note(sent, f"the action server answered {exc.status}")
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._note(sent, f"the action server at {self.url} is unreachable ({type(exc).__name__})")
            raise

    @staticmethod
    def _note(sent: Optional[Dict[str, Any]], problem: str) -> None:
        turn = _TURN.get()
        if turn is not None:
            action = sent.get("next_action") if isinstance(sent, dict) else None
            turn.failed_actions.append(f"{action or 'a custom action'}: {problem}")
