"""A customer message's way in, before the desk routes it: the checks every message passes.

`HandoffDesk.receive` (this mixin's) runs each message under its conversation
id in the logs (`core.logs`), counts and times it (`core.metrics`), applies the
per-customer rate limit (`bot.ratelimit`: a polite notice, or 429 on REST),
cuts and redacts it (`core.redaction`: Rasa parses, stores and logs only the
redacted text), waits at the admission gate (`bot.admission`: a fair turn
among customers, or a polite "send it again" when too many wait), and
watches the turn for failures (`bot.failures`): a
tracker store or database that fails refuses the message plainly, a custom
action that fails is told to the customer. Then `HandoffDesk._route` decides
where the message goes.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Awaitable, Callable, List, Optional

from rasa.core.channels.channel import UserMessage
from rasa.shared.core.events import BotUttered

from bot.admission import BUSY_TEXT, RETRY_AFTER_S
from bot.failures import is_storage_error, watching_turn
from bot.handoff.notices import NOTICES
from bot.ratelimit import RATE_LIMITED_TEXT
from core import metrics
from core.logs import conversation
from core.redaction import redact_message, redact_metadata

logger = logging.getLogger("bot.handoff.desk")  # one logger for the desk's lines

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


class CustomerIntake:
    """The desk's checks on every customer message (mixed into `bot.handoff.desk.HandoffDesk`)."""

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
            await self._admitted_turn(message, on_new_message)

    async def _admitted_turn(self, message: UserMessage, on_new_message: OnNewMessage) -> None:
        """`_guarded_turn` once the admission gate lets the message in; a polite refusal when too many wait."""
        gate = self.gate
        if not gate.enabled:
            await self._guarded_turn(message, on_new_message)
            return
        began = time.perf_counter()
        async with gate.admit(message.sender_id) as admitted:
            metrics.ADMISSION_WAIT_SECONDS.observe(time.perf_counter() - began)
            if admitted:
                await self._guarded_turn(message, on_new_message)
                return
        metrics.ADMISSION_REFUSED.labels(message.input_channel or "unknown").inc()
        logger.warning("message from %s refused: %d messages already waiting", message.sender_id, gate.waiting)
        if self._is_pull(message.output_channel):  # REST answers 503 with Retry-After
            message.output_channel.retry_after = RETRY_AFTER_S
            message.output_channel.retry_status = 503
        notice = BotUttered(BUSY_TEXT, metadata={"notice": "busy"})
        await self._send(message.output_channel, message.sender_id, [notice])

    def _known_intents(self) -> Optional[List[str]]:
        """The loaded model's intents (what a real button payload names), or None before a model is loaded."""
        domain = getattr(self.agent, "domain", None)
        return list(domain.intents) if domain is not None else None

    async def _within_rate_limit(self, message: UserMessage) -> bool:
        """False, and the customer told so, when the sender is over the rate limit (bot/ratelimit.py)."""
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
        try:
            with watching_turn() as turn:
                await self._route(message, on_new_message)
                if turn.failed_actions and agent is not None:
                    await self._apologise(agent, message, turn.failed_actions)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            logger.error("message from %s refused: cannot save the conversation (%s)", message.sender_id, exc)
            notice = BotUttered(NOTICES["utter_storage_unavailable"], metadata={"notice": "utter_storage_unavailable"})
            await self._send(message.output_channel, message.sender_id, [notice])

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

