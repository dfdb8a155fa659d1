"""The handoff desk: where a conversation passes from the assistant to a person and back.

Every message from every channel of this project passes `HandoffDesk.receive`
on its way to Rasa. The desk

- hands the conversation to a human when the customer is frustrated (see
  `frustration.py`) or after two fallbacks in a row, and completes the
  handoff that the dialogue's ``action_handoff`` starts when the customer
  asks for a person;
- while a conversation is handed off, stores what the customer writes in the
  tracker (with its NLU parse, so the agent sees the assistant's guesses) but
  lets the assistant answer nothing; a waiting customer is told their place
  in the queue;
- delivers the agent's messages on the customer's own channel and hands the
  conversation back to the assistant.

Rasa's own events carry the state: ``ConversationPaused`` stops the
assistant's predictions, ``ConversationResumed`` gives the conversation back.
The queue itself is the ``handoffs`` table (`queue.py`). Messages the desk
writes are ordinary ``BotUttered`` events whose metadata says who wrote them
(``agent``: the agent's name; ``notice``: the response the desk sent), so the
transcript shows everything in order.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional

import aiohttp
import sqlalchemy as sa
from rasa.core.channels.channel import CollectingOutputChannel, OutputChannel, UserMessage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from nlu import FrustrationDetector
from nlu import HandoffRule, frustrated
from bot.handoff.queue import ACTIVE, WAITING, Handoff, HandoffQueue
from bot.channels.replies import is_payload
from bot.channels.transcript import customer_texts_since_handback
from core import metrics
from core.db import DatabaseUnavailableError
from core.logs import conversation
from core.ratelimit import RATE_LIMITED_TEXT, limiter_from_settings
from core.serving import model_executor, prefetch
from core.redaction import redact, redact_agent_reply, redact_message, redact_metadata
from core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

REQUEST_HUMAN = "request_human"
REPEAT_WINDOW_S = 15 * 60
FALLBACK_INTENT = "nlu_fallback"

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

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


class HandoffError(ValueError):
    """An agent asked for something the conversation's state does not allow."""


# ----------------------------------------------------- parts of the assistant that fail
class StorageUnavailable(RuntimeError):
    """The tracker store or the project's database failed during a customer's message."""


@dataclass
class _Turn:
    """What went wrong while the assistant handled one customer message."""

    failed_actions: List[str] = field(default_factory=list)


# The customer message (or agent's write, `_deliver`) being handled in this task, whose store
# failures must not pass silently; None elsewhere (Rasa's HTTP API, reading transcripts).
_TURN: contextvars.ContextVar[Optional[_Turn]] = contextvars.ContextVar("desk_turn", default=None)


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


def customer_id_of(message: UserMessage) -> str:
    """The customer behind a message: the id the channel verified, else the conversation id."""
    metadata = message.metadata if isinstance(message.metadata, dict) else {}
    return str(metadata.get("customer_id") or message.sender_id)


def is_fallback(parse_data: Dict[str, Any], retrieval_threshold: float) -> bool:
    """Whether the assistant could not answer: NLU fell back and no past answer scored high enough."""
    if (parse_data.get("intent") or {}).get("name") != FALLBACK_INTENT:
        return False
    best = (parse_data.get("retrieval") or {}).get("best_score")
    return best is None or float(best) < retrieval_threshold


def _unanswered(events, message_id: Optional[str] = None) -> bool:
    """Whether the customer's message `message_id` (else their latest) has had no bot message.

    A bot message answers it when it follows it before the customer's next
    message, or when it says so (``in_reply_to``, set on the desk's
    acknowledgements, which may land after later messages).
    """
    events = list(events)
    start = None
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if isinstance(event, UserUttered) and (message_id is None or event.message_id == message_id):
            start = index
            break
    if start is None:
        return False
    message_id = events[start].message_id
    in_turn = True
    for event in events[start + 1:]:
        if isinstance(event, UserUttered):
            in_turn = False
        elif isinstance(event, BotUttered):
            replying_to = (event.metadata or {}).get("in_reply_to")
            if replying_to == message_id or (in_turn and replying_to is None):
                return False
    return True


def _paused_in_turn(events, message_id: Optional[str]) -> bool:
    """Whether the dialogue paused the conversation while answering the customer's message `message_id`."""
    for event in reversed(list(events)):
        if isinstance(event, ConversationPaused):
            return True
        if isinstance(event, ConversationResumed):
            return False
        if isinstance(event, UserUttered) and (message_id is None or event.message_id == message_id):
            return False
    return False


def desk_for(app: Any) -> "HandoffDesk":
    """The one desk of a Rasa server (`app` is its Sanic app)."""
    desk = getattr(app.ctx, "handoff_desk", None)
    if desk is None:
        desk = HandoffDesk(app)
        app.ctx.handoff_desk = desk
    return desk


class HandoffDesk:
    """Routes customer messages to the assistant or to the human agents."""

    def __init__(
        self,
        app: Any,
        queue: Optional[HandoffQueue] = None,
        detector: Optional[FrustrationDetector] = None,
        settings: Optional[Settings] = None,
        sentiment: Any = None,
    ) -> None:
        self.app = app
        self.queue = queue or HandoffQueue()
        self.settings = settings or get_settings()
        # Word-list detector until the sentence encoder has loaded (see `prepare`).
        self.detector = detector or FrustrationDetector()
        self._detector_given = detector is not None
        # nlu.sentiment.SentimentModel (artifacts/sentiment, loaded in `prepare`); None: the detector decides alone.
        self.sentiment = sentiment
        self.limiter = limiter_from_settings(self.settings)
        # Intents whose repetition is not "asking again" (settings are fixed for the process).
        self._handoff_rule = HandoffRule.from_settings(self.settings)
        self._pleasantries = frozenset(i.strip() for i in self.settings.repeat_ignored_intents.split(",") if i.strip())

    # ------------------------------------------------------------ life cycle
    async def prepare(self) -> None:
        """Load the frustration detector's sentence encoder without blocking the server."""
        if self._detector_given:
            return

        def build() -> FrustrationDetector:
            from core.encoder import load_encoder

            detector = FrustrationDetector(encoder=load_encoder(None))  # None: the same cached encoder as retrieval
            detector.assess("warm up the compiled pass")  # compile now, not on the first customer's message
            return detector

        try:
            self.detector = await asyncio.get_running_loop().run_in_executor(None, build)
            logger.info("frustration detector ready (word list and nearest labelled examples)")
        except Exception as exc:  # the word list alone still works
            logger.warning("frustration detector uses its word list only: the encoder did not load (%s)", exc)
            return
        try:
            from nlu import SENTIMENT_DIR, load_sentiment_model

            self.sentiment = load_sentiment_model(SENTIMENT_DIR)
            if self.sentiment is None:
                logger.info("no sentiment model in %s (python -m training.train_sentiment): the detector decides alone", SENTIMENT_DIR)
            else:
                shared = self.sentiment.share_layers_with(self.detector.encoder)
                self.sentiment.warm()
                logger.info("sentiment model ready: handoffs for frustration need a negative reading too "
                            "(close reading %s)", "from the encoder's shared layers" if shared else "by the whole reader")
        except Exception as exc:  # a broken artifact: keep today's detector
            logger.warning("sentiment model not loaded (%s): the frustration detector decides alone", exc)

    @property
    def agent(self):
        """The Rasa agent, once a model is loaded."""
        agent = getattr(self.app.ctx, "agent", None)
        return agent if agent is not None and agent.is_ready() else None

    # ------------------------------------------------------- customer side
    async def receive(self, message: UserMessage, on_new_message: OnNewMessage) -> None:
        """Every customer message: logged under its conversation id, counted, timed, rate-limited, redacted."""
        with conversation(message.sender_id), metrics.MessageTimer(message.input_channel):
            if not await self._within_rate_limit(message):
                return
            if self.settings.redact_messages:
                # Cut first (redacting a huge text is slow), then redact: Rasa parses, stores and logs only this.
                # Payload-shaped text is redacted too unless it is a payload of a known intent (core.redaction.redact_message).
                if message.text:
                    message.text = redact_message(message.text[: self.settings.max_message_chars + 64], self._known_intents())
                if message.metadata:  # the widget's page, REST callers' metadata: all but the channel's own keys
                    message.metadata = redact_metadata(message.metadata)
            await self._guarded_turn(message, on_new_message)

    def _known_intents(self) -> Optional[List[str]]:
        """The loaded model's intents (what a real button payload names), or None before a model is loaded."""
        domain = getattr(self.agent, "domain", None)
        return list(domain.intents) if domain is not None else None

    async def _within_rate_limit(self, message: UserMessage) -> bool:
        """False, and the customer told so, when the sender is over the rate limit (core/ratelimit.py)."""
        wait = self.limiter.acquire(message.sender_id)
        if wait <= 0:
            return True
        metrics.RATE_LIMITED.labels(message.input_channel or "unknown").inc()
        pull, notify = self._is_pull(message.output_channel), self.limiter.should_notify(message.sender_id)
        if pull:  # the REST channel answers 429 with Retry-After
            message.output_channel.retry_after = max(1, math.ceil(wait))
        if notify:
            logger.warning("messages from %s refused by the rate limit (next in %.1fs)", message.sender_id, wait)
        if pull or notify:  # push channels hear it at most once per 10 s, however fast the flood
            notice = BotUttered(RATE_LIMITED_TEXT, metadata={"notice": "rate_limited"})
            await self._send(message.output_channel, message.sender_id, [notice])
        return False

    async def _guarded_turn(self, message: UserMessage, on_new_message: OnNewMessage) -> None:
        """`_route`, telling the customer plainly when a part of the assistant is down.

        - The tracker store or the project's database fails: the message is
          refused ("I can't save our conversation right now..."), never answered
          and silently forgotten. Found before the assistant answers (the first
          thing a message does is read both), or, if saving the answered turn
          fails, right after the answer.
        - The action server is down or fails: Rasa logs it and the customer
          would hear nothing; they are asked to try again in a minute. The
          turn is stored as usual, and the next message reaches the action
          server again without a restart.
        """
        agent = self.agent
        turn = _Turn()
        token = _TURN.set(turn)
        try:
            await self._route(message, on_new_message)
            if turn.failed_actions and agent is not None:
                await self._apologise(agent, message, turn.failed_actions)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            logger.error("message from %s refused: cannot save the conversation (%s)", message.sender_id, exc)
            notice = BotUttered(NOTICES["utter_storage_unavailable"], metadata={"notice": "utter_storage_unavailable"})
            await self._send(message.output_channel, message.sender_id, [notice])
        finally:
            _TURN.reset(token)

    async def _apologise(self, agent, message: UserMessage, failures: List[str]) -> None:
        """A custom action failed: say so (and keep it in the transcript) unless a person has taken over."""
        cid = message.sender_id
        logger.error("conversation %s: %s; the customer is asked to try again", cid, "; ".join(failures))
        notice = BotUttered(NOTICES["utter_action_unavailable"], metadata={"notice": "utter_action_unavailable"})
        async with agent.lock_store.lock(cid):
            tracker = await agent.processor.get_tracker(cid)
            if tracker.is_paused():  # handed to a person meanwhile (e.g. the desk queued a request_human)
                return
            tracker.update(notice)
            await agent.processor.save_tracker(tracker)
        await self._send(message.output_channel, cid, [notice])

    async def _route(self, message: UserMessage, on_new_message: OnNewMessage) -> None:
        """Pass a customer message to the assistant, or keep it for the agent."""
        agent = self.agent
        if agent is None:  # no model yet: Rasa itself says so
            await on_new_message(message)
            return
        limit = self.settings.max_message_chars
        if message.text and len(message.text) > limit:
            message.text = message.text[:limit]
        # An unreachable database raises here: the message is refused (`_guarded_turn`).
        handoff = self.queue.current(message.sender_id)
        if handoff is not None:
            await self._keep_for_agent(agent, message, handoff)
            return
        # One read serves the frustration check and the catch-up: no agent can write to a
        # conversation that has no open handoff, so nothing for the catch-up arrives meanwhile.
        typed = bool(message.text) and not is_payload(message.text)
        pull = self._is_pull(message.output_channel)
        tracker = await agent.processor.get_tracker(message.sender_id) if typed or pull else None
        reason, summary = await self._reason_to_hand_off(agent, message, tracker) if typed else (None, None)
        if reason:
            await self._hand_off(agent, message, reason, summary)
            return
        if pull:
            await self._catch_up(message, tracker)
        await on_new_message(message)
        await self._complete_requested_handoff(agent, message)

    def _analyse(self, text: str, previous: List[str]):
        """Run every model on the message (see `core.serving`), then judge frustration: (assessment, sentiment)."""
        prefetch([text])
        verdict = self.detector.assess(text, previous)
        # The fine-tuned reader (a few ms) only where its reading can decide a handoff.
        return verdict, self._sentiment_of(text, flagged=verdict.frustrated)

    def _sentiment_of(self, text: str, flagged: bool = False):
        """The message's `nlu.sentiment.Sentiment` (on the model thread), or None without a model or encoder.

        Read closely (the fine-tuned reader too) when the detector `flagged` it or the
        heads' quick reading finds it very negative; otherwise the quick reading."""
        if self.sentiment is None or self.detector.encoder is None or not text:
            return None
        from core.encoder import embed_few  # cached: the detector and the retriever share this vector

        return self.sentiment.read_for_handoff(text, embed_few(self.detector.encoder, [text])[0], flagged,
                                               self._handoff_rule.close_reading_from)

    def _record_sentiment(self, message: UserMessage, sentiment) -> None:
        """Store the message's sentiment (core.db message_sentiment); a failure is logged, never the customer's problem."""
        if sentiment is None:
            return
        from nlu import record_sentiment

        try:
            record_sentiment(self.queue.engine, message.sender_id, message.message_id, sentiment)
        except Exception as exc:
            logger.warning("sentiment of a message in %s not stored (%s)", message.sender_id, exc)

    async def _reason_to_hand_off(self, agent, message: UserMessage, tracker: DialogueStateTracker):
        """('frustration' | 'fallbacks' | None, summary for the agent), decided before the assistant answers."""
        typed = customer_texts_since_handback(tracker.events)
        # Asking again counts only within a burst of conversation, not when the customer comes back later.
        recent = time.time() - REPEAT_WINDOW_S
        previous = [
            e.text for e in typed
            if e.text and e.timestamp >= recent and (e.intent or {}).get("name") not in self._pleasantries
        ][-3:]
        # On the model thread: the frustration check, and the intent model and the
        # retriever's encoder on this message, whose results Rasa's pipeline then reuses.
        verdict, sentiment = await asyncio.get_running_loop().run_in_executor(
            model_executor(), self._analyse, message.text, previous
        )
        self._record_sentiment(message, sentiment)
        if frustrated(verdict, sentiment, self._handoff_rule):
            mood = f" (reads {sentiment.label}, {sentiment.confidence:.2f})" if sentiment is not None else ""
            return "frustration", "frustration: " + "; ".join(verdict.evidence) + mood
        if typed and is_fallback(typed[-1].parse_data or {}, self.settings.retrieval_threshold):
            # The previous message was a fallback: parse this one now (Rasa reuses
            # the parse) to know whether it is the second in a row.
            message.parse_data = await agent.processor.parse_message(message, tracker)
            if is_fallback(message.parse_data, self.settings.retrieval_threshold):
                return "fallbacks", "two fallbacks in a row"
        return None, None

    async def _hand_off(self, agent, message: UserMessage, reason: str, summary: Optional[str]) -> None:
        cid = message.sender_id
        async with agent.lock_store.lock(cid):
            tracker = await agent.processor.log_message(message, should_save_tracker=True)
            self.queue.open(cid, reason, customer_id_of(message), message.input_channel, summary)
            notice = await self._notice(
                agent, tracker, NOTICE_FOR_REASON.get(reason, "utter_handoff_queued"), position=self.queue.position(cid)
            )
            tracker.update(ConversationPaused())
            tracker.update(notice)
            await agent.processor.save_tracker(tracker)
        logger.info("conversation %s handed to the agents (%s)", cid, reason)
        metrics.HANDOFFS.labels(reason).inc()
        await self._send(message.output_channel, cid, [notice])
        await self.push_state(cid, message.output_channel)

    async def _keep_for_agent(self, agent, message: UserMessage, handoff: Handoff) -> None:
        """Store the message for the agent; a waiting customer hears their place in the queue."""
        cid = message.sender_id
        if self.sentiment is not None and message.text and not is_payload(message.text):
            # Scored too while a person has the conversation: the inbox sorts waiting ones by their latest mood.
            mood = await asyncio.get_running_loop().run_in_executor(model_executor(), self._sentiment_of, message.text)
            self._record_sentiment(message, mood)
        async with agent.lock_store.lock(cid):
            # Saved at once: whatever happens next, the customer's words are kept.
            tracker = await agent.processor.log_message(message, should_save_tracker=True)
            outgoing = self._unprompted(list(tracker.events)[:-1]) if self._is_pull(message.output_channel) else []
            if not tracker.is_paused():  # e.g. a new session started while the customer waited
                tracker.update(ConversationPaused())
            if handoff.status == WAITING:
                notice = await self._notice(
                    agent, tracker, "utter_handoff_still_waiting", position=self.queue.position(cid)
                )
                tracker.update(notice)
                outgoing.append(notice)
            await agent.processor.save_tracker(tracker)
        await self._send(message.output_channel, cid, outgoing)
        await self.push_state(cid, message.output_channel)

    async def _acknowledge_kept(self, agent, message: UserMessage, handoff: Handoff) -> None:
        """The customer's message was kept for the agent without a word: say they are still queued."""
        cid = message.sender_id
        async with agent.lock_store.lock(cid):
            tracker = await agent.processor.get_tracker(cid)
            if not _unanswered(tracker.events, message.message_id):
                return  # answered meanwhile
            notice = await self._notice(agent, tracker, "utter_handoff_still_waiting", position=self.queue.position(cid))
            notice.metadata = {**(notice.metadata or {}), "in_reply_to": message.message_id}
            tracker.update(notice)
            await agent.processor.save_tracker(tracker)
        await self._send(message.output_channel, cid, [notice])

    async def _complete_requested_handoff(self, agent, message: UserMessage) -> None:
        """After the assistant answered: show a handoff the dialogue made, or make the one it could not.

        ``action_handoff`` queues the conversation, tells the customer their place
        and pauses the dialogue itself; the desk then only shows the new state.
        When the customer asked for a person but nothing was queued (the action
        server is down), the desk queues them here.
        """
        cid = message.sender_id
        notice = None
        try:
            handoff = self.queue.current(cid)
            tracker = await agent.processor.get_tracker(cid)
            metrics.count_turn(tracker.events)  # fallbacks of the turn just answered (no I/O)
            if handoff is not None and _paused_in_turn(tracker.events, message.message_id):
                metrics.HANDOFFS.labels(handoff.reason or "asked").inc()
                await self.push_state(cid, message.output_channel)
                return
            if handoff is None:
                intent = (tracker.latest_message.intent or {}).get("name") if tracker.latest_message else None
                if intent != REQUEST_HUMAN:
                    return
                # The customer asked but nothing was queued (action server down?): queue them here.
                handoff = self.queue.open(cid, "asked", customer_id_of(message), message.input_channel)
            if tracker.is_paused():
                # Handed over while this message waited its turn (a second message sent before
                # the first was answered): Rasa kept it for the agent and said nothing. Tell them.
                if handoff.status == WAITING and _unanswered(tracker.events, message.message_id):
                    await self._acknowledge_kept(agent, message, handoff)
                return
            async with agent.lock_store.lock(cid):
                tracker = await agent.processor.get_tracker(cid)
                notice = await self._notice(agent, tracker, "utter_handoff_queued", position=self.queue.position(cid))
                tracker.update(ConversationPaused())
                if handoff.status == WAITING:
                    tracker.update(notice)
                await agent.processor.save_tracker(tracker)
            metrics.HANDOFFS.labels(handoff.reason or "asked").inc()
        except Exception as exc:
            logger.error("could not complete the handoff of %s: %s", cid, exc)
            return
        if handoff.status == WAITING and notice is not None:
            await self._send(message.output_channel, cid, [notice])
        await self.push_state(cid, message.output_channel)

    async def _catch_up(self, message: UserMessage, tracker: DialogueStateTracker) -> None:
        """A channel that cannot push (REST) gets the agent's last words with its next answer."""
        await self._send(message.output_channel, message.sender_id, self._unprompted(tracker.events))

    @staticmethod
    def _unprompted(events) -> List[BotUttered]:
        """Agent messages and agent-side notices since the customer last wrote."""
        found: List[BotUttered] = []
        for event in reversed(list(events)):
            if isinstance(event, UserUttered):
                break
            if isinstance(event, BotUttered) and (
                event.metadata.get("agent") or event.metadata.get("notice") in UNPROMPTED
            ):
                found.append(event)
        return found[::-1]

    @staticmethod
    def _is_pull(output: Optional[OutputChannel]) -> bool:
        return isinstance(output, CollectingOutputChannel)

    # ------------------------------------------------------------ agent side
    def state(self, conversation_id: str) -> Dict[str, Any]:
        """Where the customer stands: status none|waiting|active, queue position, agent."""
        handoff = self.queue.current(conversation_id)
        if handoff is None:
            return {"status": "none", "position": None, "agent": None}
        position = self.queue.position(conversation_id) if handoff.status == WAITING else None
        return {"status": handoff.status, "position": position, "agent": handoff.agent}

    async def take(self, conversation_id: str, agent_name: str) -> Handoff:
        """An agent starts talking to a waiting customer."""
        handoff = self.queue.current(conversation_id)
        if handoff is None:
            raise HandoffError("this conversation is not waiting for an agent")
        if handoff.status == ACTIVE and handoff.agent == agent_name:
            return handoff
        handoff = self.queue.take(conversation_id, agent_name)
        agent = self._require_agent()
        tracker = await agent.processor.get_tracker(conversation_id)
        notice = await self._notice(agent, tracker, "utter_handoff_agent_joined", agent=agent_name)
        await self._deliver(conversation_id, [notice])
        await self.push_state(conversation_id)
        await self.push_positions()
        return handoff  # type: ignore[return-value]

    async def reply(self, conversation_id: str, agent_name: str, text: str) -> bool:
        """Send the agent's message to the customer; False when it is stored but could not be pushed."""
        text = (text or "").strip()[: self.settings.max_message_chars]
        if not text:
            raise HandoffError("write a message first")
        handoff = self.queue.current(conversation_id)
        if handoff is None:
            raise HandoffError("this conversation is back with the assistant; it can't take agent messages")
        if handoff.status == WAITING or handoff.agent != agent_name:
            await self.take(conversation_id, agent_name)
        if self.settings.redact_messages:  # stored, shown in the inbox and sent: all the same, redacted text
            text = redact_agent_reply(text, agent_name)
        return await self._deliver(conversation_id, [BotUttered(text, metadata={"agent": agent_name})])

    async def hand_back(self, conversation_id: str, agent_name: str) -> Handoff:
        """Give the conversation back to the assistant."""
        if self.queue.current(conversation_id) is None:
            raise HandoffError("this conversation is already with the assistant")
        handoff = self.queue.close(conversation_id, agent_name)
        agent = self._require_agent()
        tracker = await agent.processor.get_tracker(conversation_id)
        notice = await self._notice(agent, tracker, "utter_handoff_returned")
        # action_listen after the resume: the assistant's next turn starts from a clean "waiting for the customer".
        await self._deliver(
            conversation_id, [ConversationResumed(), ActionExecuted(ACTION_LISTEN_NAME), notice,
                              *await _satisfaction_offer(agent, tracker, handoff)]
        )
        await self.push_state(conversation_id)
        await self.push_positions()
        logger.info("conversation %s handed back to the assistant by %s", conversation_id, agent_name)
        return handoff  # type: ignore[return-value]

    async def push_positions(self) -> None:
        """Tell every waiting customer whose channel shows it their new place in the queue."""
        for handoff in self.queue.open_handoffs():
            if handoff.status == WAITING:
                await self.push_state(handoff.conversation_id)

    async def push_state(self, conversation_id: str, output: Optional[OutputChannel] = None) -> None:
        """Show the handoff state on channels that draw it (the web widget)."""
        if output is None:
            agent = self.agent
            if agent is None:
                return
            output = self.output_for(await agent.processor.get_tracker(conversation_id))
        show = getattr(output, "send_handoff_state", None)
        if show is not None:
            try:
                await show(conversation_id, self.state(conversation_id))
            except Exception as exc:
                logger.warning("could not show the handoff state to %s: %s", conversation_id, exc)

    def output_for(self, tracker: DialogueStateTracker) -> Optional[OutputChannel]:
        """The output channel that reaches the customer where they last wrote from, if it can push."""
        name = tracker.get_latest_input_channel()
        for channel in getattr(self.app.ctx, "input_channels", None) or []:
            if channel.name() == name and hasattr(channel, "output_channel_for"):
                return channel.output_channel_for(tracker)
        return None

    # --------------------------------------------------------------- helpers
    def _require_agent(self):
        agent = self.agent
        if agent is None:
            raise HandoffError("the assistant has no model loaded yet")
        return agent

    async def _deliver(self, conversation_id: str, events: List[Event]) -> bool:
        """Store `events` in the conversation and send its messages to the customer."""
        agent = self._require_agent()
        # A tracker store that fails raises here (the inbox answers 503) instead of keeping the write in memory only.
        token = _TURN.set(_Turn())
        try:
            async with agent.lock_store.lock(conversation_id):
                tracker = await agent.processor.get_tracker(conversation_id)
                for event in events:
                    tracker.update(event)
                await agent.processor.save_tracker(tracker)
        finally:
            _TURN.reset(token)
        output = self.output_for(tracker)
        if output is None:
            return False  # kept in the tracker; a REST customer gets it with their next message
        return await self._send(output, conversation_id, [e for e in events if isinstance(e, BotUttered)])

    @staticmethod
    async def _send(output: OutputChannel, conversation_id: str, messages: List[BotUttered]) -> bool:
        try:
            for event in messages:
                await output.send_response(conversation_id, event.message())
        except Exception as exc:  # the platform is down: the message stays in the transcript
            logger.error("could not deliver a message to %s on %s: %s", conversation_id, output.name(), exc)
            return False
        return True

    @staticmethod
    async def _notice(rasa_agent, tracker: DialogueStateTracker, response: str, **values: Any) -> BotUttered:
        channel = tracker.get_latest_input_channel() or ""
        try:
            generated = await rasa_agent.processor.nlg.generate(response, tracker, channel, **values)
        except Exception:  # a template naming a value we do not have
            generated = None
        text = (generated or {}).get("text") or NOTICES[response].format(**values)
        return BotUttered(text, metadata={"notice": response})


async def _satisfaction_offer(rasa_agent, tracker: DialogueStateTracker, handoff: Any) -> List[Event]:
    """The 1-5 rating offered when a person hands a conversation back (core/satisfaction.py decides).

    Not after a handoff for a complaint or frustration, nor when the conversation was already asked.
    """
    from rasa.shared.core.events import SlotSet

    from core import satisfaction

    try:
        events = [e.as_dict() for e in tracker.events]
        rated = satisfaction.of_conversation(tracker.sender_id) is not None
        reason = satisfaction.reason_not_to_ask(
            events, bool(tracker.get_slot(satisfaction.ASKED_SLOT)),
            getattr(handoff, "reason", None) in satisfaction.UPSET_HANDOFF_REASONS, rated)
        if reason:
            return []
        channel = tracker.get_latest_input_channel() or ""
        generated = await rasa_agent.processor.nlg.generate(satisfaction.ASK_RESPONSE, tracker, channel)
    except Exception as exc:  # no rating offer is better than a failed hand-back
        logger.warning("could not offer the satisfaction rating to %s: %s", tracker.sender_id, exc)
        return []
    text = (generated or {}).get("text") or "How satisfied are you with the help you got today? Tap 1 to 5."
    return [BotUttered(text, data={"buttons": satisfaction.buttons()}, metadata={"notice": satisfaction.ASK_RESPONSE}),
            SlotSet(satisfaction.ASKED_SLOT, True)]
