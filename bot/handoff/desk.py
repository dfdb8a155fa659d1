"""The handoff desk: where a conversation passes from the assistant to a person and back.

Every message from every channel of this project passes `HandoffDesk.receive`
on its way to Rasa (its checks: `intake.py`). Handing over is the dialogue's
decision (``action_handoff``: bot/data/rules.yml, bot/policies.py); the desk

- reads the handoff state once per message and, while a person has the
  conversation, stores what the customer writes in the tracker (with its NLU
  parse, so the agent sees the assistant's guesses) but lets the assistant
  answer nothing, except what a waiting customer may still do: stop waiting,
  leave a message, or an urgent task such as freezing a stolen card;
- after the assistant's turn, shows a handoff the dialogue made, stores the
  message's sentiment and catches a REST client up;
- lets agents take, answer and hand back a conversation, delivering their
  messages on the customer's own channel (`delivery.py`).

Rasa's own events carry the state: ``ConversationPaused`` stops the
assistant's predictions, ``ConversationResumed`` gives the conversation back.
The queue itself is the ``handoffs`` table (`queue.py`). Messages the desk
writes are ordinary ``BotUttered`` events whose metadata says who wrote them
(``agent``: the agent's name; ``notice``: the response the desk sent), so the
transcript shows everything in order.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Dict, List, NamedTuple, Optional

from rasa.core.channels.channel import UserMessage
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

from bot import admission
from bot.channels.replies import is_payload
from bot.failures import is_storage_error
from bot.handoff.delivery import Delivery, HandoffError
from bot.handoff.intake import CustomerIntake, OnNewMessage
from bot.handoff.queue import ACTIVE, WAITING, Handoff, HandoffQueue
from bot.privacy.requests import erasing
from bot.ratelimit import limiter_from_settings
from core import metrics
from core.redaction import redact_agent_reply
from core.serving import WriteBehind, model_executor, prefetch
from core.settings import Settings, get_settings
from nlu import Sentiment, record_sentiments

logger = logging.getLogger(__name__)

REQUEST_HUMAN = "request_human"
CANCEL_HANDOFF = "cancel_handoff"
LEAVE_MESSAGE = "leave_message"
# Typed ways to stop waiting (the button sends /cancel_handoff); read only while the customer waits.
STOP_WAITING = re.compile(
    r"\b(stop waiting|leave the queue|cancel (the|my) (wait|place|request)|(don'?t|do not) want to wait"
    r"|no longer need (a|an) (person|adviser|human)|carry on with (you|the (assistant|bot)))\b", re.IGNORECASE)
# Bot responses whose answer belongs to an urgent task served while waiting (the freeze offer).
URGENT_FOLLOW_UPS = ("utter_offer_freeze",)


class _QueuedSentiment(NamedTuple):
    """A message's sentiment waiting in `HandoffDesk.sentiments` to be stored."""

    conversation_id: str
    message_id: Optional[str]
    sentiment: Sentiment
    ts: float  # when it was queued, after the answer
    customer_id: Optional[str]  # the verified customer, when the channel gave one


def customer_id_of(message: UserMessage) -> str:
    """The customer behind a message: the id the channel verified, else the conversation id."""
    metadata = message.metadata if isinstance(message.metadata, dict) else {}
    return str(metadata.get("customer_id") or message.sender_id)


def _unanswered(events, message_id: Optional[str] = None) -> bool:
    """Whether the customer's message `message_id` (else their latest) has had no bot message.

    A bot message answers it when it follows it before the customer's next
    message, or when it says so (``in_reply_to``, set on the desk's
    acknowledgements, which may land after later messages).
    """
    events = list(events)
    start = _user_event_index(events, message_id)
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


def _user_event_index(events: List[Event], message_id: Optional[str]) -> Optional[int]:
    """Where the customer's message `message_id` stands in `events` (the latest one when no id is given)."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if isinstance(event, UserUttered) and (message_id is None or event.message_id == message_id):
            return index
    return None


def _user_event(events: List[Event], message_id: Optional[str]) -> Optional[UserUttered]:
    """The customer's message `message_id` among `events` (the latest one when no id is given)."""
    index = _user_event_index(events, message_id)
    return events[index] if index is not None else None


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


class HandoffDesk(CustomerIntake, Delivery):
    """Routes customer messages to the assistant or to the human agents."""

    def __init__(
        self,
        app: Any,
        queue: Optional[HandoffQueue] = None,
        settings: Optional[Settings] = None,
    ) -> None:
        self.app = app
        self.queue = queue or HandoffQueue()
        self.settings = settings or get_settings()
        self.limiter = limiter_from_settings(self.settings)
        self.gate = admission.from_settings(self.settings)
        # Each message's sentiment row, written behind the answers in batches (one thread, one
        # INSERT per batch) rather than a thread hop and a transaction per message.
        self.sentiments = WriteBehind("message sentiment", self._store_sentiments)

    @property
    def agent(self):
        """The Rasa agent, once a model is loaded."""
        agent = getattr(self.app.ctx, "agent", None)
        return agent if agent is not None and agent.is_ready() else None

    # ------------------------------------------------------- customer side
    async def _route(self, message: UserMessage, on_new_message: OnNewMessage) -> None:
        """Keep a customer message for the person who has the conversation, or pass it to the assistant.

        Whether to hand over is the dialogue's decision (``action_handoff``, by
        the rules and `bot.policies.HandoffPolicy`), not the desk's.
        """
        agent = self.agent
        if agent is None:  # no model yet: Rasa itself says so
            await on_new_message(message)
            return
        limit = self.settings.max_message_chars
        if message.text and len(message.text) > limit:
            message.text = message.text[:limit]
        # One trip to the model thread: the one read of the handoff state for this message, and the
        # models' reading of it. An unreachable database raises here: the message is refused (`_guarded_turn`).
        handoff = await asyncio.get_running_loop().run_in_executor(
            model_executor(), self._state_and_reading, message.sender_id, message.text)
        if handoff is not None:
            await self._while_handed_off(agent, message, handoff, on_new_message)
            return
        await on_new_message(message)
        await self._after_turn(agent, message)

    def _state_and_reading(self, conversation_id: str, text: Optional[str]) -> Optional[Handoff]:
        """On the model thread (core.serving): the open handoff of the conversation, else the models' reading of `text`.

        The intent model, the retriever's encoder and the frustration reader read
        the message here, and Rasa's pipeline reuses their results. One thread
        hop per message instead of two: a hop costs about as much CPU as the
        handoff query itself.
        """
        handoff = self.queue.current(conversation_id)
        if handoff is None and text and not is_payload(text):
            prefetch([text])
        return handoff

    def _record_sentiment(self, conversation_id: str, event: Optional[UserUttered]) -> None:
        """Store the sentiment `nlu.FrustrationReader` read in a customer message, behind the answer.

        Not awaited by the customer's answer: `self.sentiments` writes it with
        others in a moment (`_store_sentiments`; failures only logged).
        """
        mood = ((event.parse_data or {}).get("frustration") or {}).get("sentiment") if event is not None else None
        if not mood:
            return
        sentiment = Sentiment(mood["label"], float(mood["confidence"]), float(mood["negative"]), mood.get("reason"),
                              mood.get("score"))
        metadata = event.metadata if isinstance(event.metadata, dict) else {}
        self.sentiments.put(_QueuedSentiment(conversation_id, event.message_id, sentiment, time.time(),
                                             metadata.get("customer_id")))

    def _store_sentiments(self, rows: List[_QueuedSentiment]) -> None:
        """Write queued sentiment rows in one INSERT, except those an erasure has taken since they were queued.

        A row queued before its customer's erasure finished is dropped, so that
        it cannot come back after the erasure removed everything else of them.
        """
        engine = self.queue.engine
        erased = erasing(engine, [i for row in rows for i in (row.conversation_id, row.customer_id)],
                         since=min(row.ts for row in rows))

        def kept(row: _QueuedSentiment) -> bool:
            return not any(key in erased and (erased[key] is None or erased[key] >= row.ts)
                           for key in (row.conversation_id, row.customer_id))

        record_sentiments(engine, [(row.conversation_id, row.message_id, row.sentiment, row.ts)
                                   for row in rows if kept(row)])

    async def _while_handed_off(self, agent, message: UserMessage, handoff: Handoff, on_new_message: OnNewMessage) -> None:
        """A message while a person has (or will have) the conversation.

        A waiting customer may stop waiting ("stop waiting", the notice's button)
        and is back with the assistant; an urgent task (setting
        `urgent_while_waiting`: freezing a lost or stolen card) is served by the
        assistant at once, and the form it starts runs to its end, all in the
        transcript the agent reads; everything else is kept for the person.
        """
        cid = message.sender_id
        intent = None
        if handoff.status == WAITING and message.text:
            tracker = await agent.processor.get_tracker(cid)
            message.parse_data = await agent.processor.parse_message(message, tracker)  # Rasa reuses this parse
            intent = (message.parse_data.get("intent") or {}).get("name")
            if intent == CANCEL_HANDOFF or STOP_WAITING.search(message.text):
                await self._stop_waiting(agent, message)
                return
            if self._serves_while_waiting(tracker, intent):
                await self._serve_while_waiting(agent, message, on_new_message)
                return
        await self._keep_for_agent(agent, message, handoff, intent)

    def _serves_while_waiting(self, tracker: DialogueStateTracker, intent: Optional[str]) -> bool:
        """Whether the assistant answers this message although the customer waits for a person."""
        urgent = {i.strip() for i in self.settings.urgent_while_waiting.split(",") if i.strip()}
        if intent in urgent or tracker.active_loop_name:
            return True
        # The answer to the assistant's offer that the urgent task made (freeze the card?).
        return tracker.latest_bot_utterance is not None and (tracker.latest_bot_utterance.metadata or {}).get(
            "utter_action") in URGENT_FOLLOW_UPS

    async def _serve_while_waiting(self, agent, message: UserMessage, on_new_message: OnNewMessage) -> None:
        """Let the assistant handle `message` now, then hold the conversation for the person again."""
        cid = message.sender_id
        async with agent.lock_store.lock(cid):
            tracker = await agent.processor.get_tracker(cid)
            tracker.update(ConversationResumed())
            if tracker.latest_action_name != ACTION_LISTEN_NAME:  # right after the handoff: listen, as after a
                tracker.update(ActionExecuted(ACTION_LISTEN_NAME))  # hand-back (the rules expect it before a message)
            await agent.processor.save_tracker(tracker)
        try:
            await on_new_message(message)
        finally:
            async with agent.lock_store.lock(cid):
                tracker = await agent.processor.get_tracker(cid)
                if not tracker.is_paused():
                    tracker.update(ConversationPaused())
                    await agent.processor.save_tracker(tracker)
        logger.info("conversation %s: served an urgent request while waiting for a person", cid)
        metrics.count_turn(tracker.events)
        self._record_sentiment(cid, _user_event(list(tracker.events), message.message_id))

    async def _stop_waiting(self, agent, message: UserMessage) -> None:
        """The customer leaves the queue: the handoff is closed and the assistant answers again."""
        cid = message.sender_id
        async with agent.lock_store.lock(cid):
            tracker = await agent.processor.log_message(message, should_save_tracker=True)
            cancelled = await asyncio.get_running_loop().run_in_executor(None, self.queue.cancel, cid)
            said = await self._notice(agent, tracker, "utter_handoff_cancelled")
            if cancelled is not None:
                for event in (ConversationResumed(), ActionExecuted(ACTION_LISTEN_NAME), said):
                    tracker.update(event)
                await agent.processor.save_tracker(tracker)
        if cancelled is None:  # an agent took it meanwhile: the message stays with them
            return
        logger.info("conversation %s left the queue", cid)
        await self._send(message.output_channel, cid, [said])
        await self.push_state(cid, message.output_channel)
        await self.push_positions()

    async def _keep_for_agent(self, agent, message: UserMessage, handoff: Handoff, intent: Optional[str] = None) -> None:
        """Store the message for the agent; a waiting customer hears their place in the queue."""
        cid = message.sender_id
        async with agent.lock_store.lock(cid):
            # Saved at once: whatever happens next, the customer's words are kept.
            tracker = await agent.processor.log_message(message, should_save_tracker=True)
            outgoing = self._unprompted(list(tracker.events)[:-1]) if self._is_pull(message.output_channel) else []
            if not tracker.is_paused():  # e.g. a new session started while the customer waited
                tracker.update(ConversationPaused())
            if handoff.status == WAITING:
                if intent == LEAVE_MESSAGE:
                    notice = await self._notice(agent, tracker, "utter_handoff_message_kept")
                else:
                    notice = await self._notice(
                        agent, tracker, "utter_handoff_still_waiting", position=self.queue.position(cid)
                    )
                tracker.update(notice)
                outgoing.append(notice)
            await agent.processor.save_tracker(tracker)
        await self._send(message.output_channel, cid, outgoing)
        # Read while a person has the conversation too (Rasa's NLU parses what it logs): the
        # inbox sorts waiting conversations by their latest mood.
        self._record_sentiment(cid, tracker.latest_message)
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

    async def _after_turn(self, agent, message: UserMessage) -> None:
        """After the assistant answered: catch-up, sentiment, and the handoff the dialogue made (or could not make).

        ``action_handoff`` queues the conversation, tells the customer their place
        and pauses the dialogue itself; the desk then only shows the new state.
        When the customer asked for a person but nothing was queued (the action
        server is down), the desk queues them here. The common path reads the
        conversation once and the handoff table not at all.
        """
        cid = message.sender_id
        said = None
        try:
            tracker = await agent.processor.get_tracker(cid)
            metrics.count_turn(tracker.events)  # fallbacks of the turn just answered (no I/O)
            events = list(tracker.events)
            index = _user_event_index(events, message.message_id)
            mine = events[index] if index is not None else None
            if self._is_pull(message.output_channel):  # the agent's words this REST customer has not seen yet
                await self._catch_up(message, events[:index] if index is not None else [])
            self._record_sentiment(cid, mine)
            paused_now = _paused_in_turn(events, message.message_id)
            intent = ((mine.intent if mine is not None else None) or {}).get("name")
            if not paused_now and not tracker.is_paused() and intent != REQUEST_HUMAN:
                return
            handoff = await asyncio.get_running_loop().run_in_executor(None, self.queue.current, cid)
            if handoff is not None and paused_now:  # the dialogue handed over: show it
                logger.info("conversation %s handed to a person by the dialogue (%s)", cid, handoff.reason)
                metrics.HANDOFFS.labels(handoff.reason or "asked").inc()
                await self.push_state(cid, message.output_channel)
                return
            if handoff is None:
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
                said = await self._notice(agent, tracker, "utter_handoff_queued", position=self.queue.position(cid))
                tracker.update(ConversationPaused())
                if handoff.status == WAITING:
                    tracker.update(said)
                await agent.processor.save_tracker(tracker)
            metrics.HANDOFFS.labels(handoff.reason or "asked").inc()
        except Exception as exc:
            if is_storage_error(exc):
                raise
            logger.error("could not complete the turn of %s: %s", cid, exc)
            return
        if handoff.status == WAITING and said is not None:
            await self._send(message.output_channel, cid, [said])
        await self.push_state(cid, message.output_channel)

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
