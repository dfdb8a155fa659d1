"""What the desk sends and shows: messages into the conversation and out on the customer's channel.

- `_deliver` stores events in the conversation (a failing store raises: the
  inbox answers 503) and sends their messages on the customer's own channel;
- `push_state` / `push_positions` draw the handoff state on channels that
  can (the web widget's banner);
- `_catch_up` gives a channel that cannot push (REST) the agent's words it
  missed, before the answer to the customer's next message;
- `_notice` words a desk message from the domain's responses
  (`bot/handoff/notices.py` when the domain lacks one).
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional

from rasa.core.channels.channel import CollectingOutputChannel, OutputChannel, UserMessage
from rasa.shared.core.events import BotUttered, Event, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.failures import watching_turn
from bot.handoff.notices import NOTICES, UNPROMPTED
from bot.handoff.queue import WAITING

logger = logging.getLogger("bot.handoff.desk")  # one logger for the desk's lines


class HandoffError(ValueError):
    """An agent asked for something the conversation's state does not allow."""


class Delivery:
    """The desk's sending side (mixed into `bot.handoff.desk.HandoffDesk`)."""

    async def _catch_up(self, message: UserMessage, earlier: List[Event]) -> None:
        """A channel that cannot push (REST) gets the agent's last words before this turn's answer."""
        missed = self._unprompted(earlier)
        if not missed:
            return
        output = message.output_channel
        answered, output.messages = list(output.messages), []
        await self._send(output, message.sender_id, missed)
        output.messages.extend(answered)

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

    async def push_positions(self) -> None:
        """Tell every waiting customer whose channel shows it their new place in the queue.

        Only conversations whose channel may draw it are looked up: finding the
        output channel costs a tracker fetch (database round trips and a rebuild
        on the event loop), and on every change of the queue this ran once for
        each waiting customer, REST, Slack and Telegram alike, for nothing.
        """
        for handoff in self.queue.open_handoffs():
            if handoff.status == WAITING and self._may_draw_state(handoff.channel):
                await self.push_state(handoff.conversation_id)

    def _may_draw_state(self, channel_name: Optional[str]) -> bool:
        """Whether the channel the handoff was opened from may show its state (an unknown one: look it up)."""
        if not channel_name:
            return True
        channel = self._input_channel(channel_name)
        if channel is None:
            return False  # no such channel on this server: nothing here could draw it
        return bool(getattr(channel, "draws_handoff_state", True))  # not one of ours: look it up, as before

    def _input_channel(self, name: Optional[str]):
        """The input channel of this server named `name`, or None."""
        for channel in getattr(self.app.ctx, "input_channels", None) or []:
            if channel.name() == name:
                return channel
        return None

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
        channel = self._input_channel(tracker.get_latest_input_channel())
        if channel is not None and hasattr(channel, "output_channel_for"):
            return channel.output_channel_for(tracker)
        return None

    def _require_agent(self):
        agent = self.agent
        if agent is None:
            raise HandoffError("the assistant has no model loaded yet")
        return agent

    async def _deliver(self, conversation_id: str, events: List[Event]) -> bool:
        """Store `events` in the conversation and send its messages to the customer."""
        agent = self._require_agent()
        # A tracker store that fails raises here (the inbox answers 503) instead of keeping the write in memory only.
        with watching_turn():
            async with agent.lock_store.lock(conversation_id):
                tracker = await agent.processor.get_tracker(conversation_id)
                for event in events:
                    tracker.update(event)
                await agent.processor.save_tracker(tracker)
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
        buttons = (generated or {}).get("buttons")  # "Stop waiting" on the queue notices
        return BotUttered(text, data={"buttons": buttons} if buttons else None, metadata={"notice": response})


