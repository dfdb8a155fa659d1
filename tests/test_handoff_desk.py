"""The desk's cost per message on the common path (issue 14, item 6).

A typed message to a conversation nobody has handed over: the shell reads the
conversation once besides Rasa's own reads, reads the handoff state once, and
runs no SQL on the event loop's thread. A REST client still gets the agent's
words it missed, before this turn's answer.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from types import SimpleNamespace

import sqlalchemy as sa
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.handoff.desk import HandoffDesk
from bot.handoff.queue import HandoffQueue
from core import db
from core.settings import Settings


class _Processor:
    """Rasa's processor, as far as the desk uses it: counts the shell's conversation reads."""

    def __init__(self, tracker: DialogueStateTracker) -> None:
        self.tracker = tracker
        self.reads = 0

    async def get_tracker(self, conversation_id: str) -> DialogueStateTracker:
        self.reads += 1
        return self.tracker


def _served(tmp_path, events=()):
    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    on_loop_thread = []

    def note(conn, cursor, statement, *args):
        on_loop_thread.append((threading.current_thread() is threading.main_thread(), statement))

    sa.event.listen(engine, "before_cursor_execute", note)
    tracker = DialogueStateTracker.from_events("rest:c:1", [ActionExecuted("action_listen"), *events])
    processor = _Processor(tracker)
    agent = SimpleNamespace(is_ready=lambda: True, processor=processor, domain=SimpleNamespace(intents=["card_arrival"]),
                            lock_store=SimpleNamespace(lock=lambda cid: contextlib.nullcontext()))
    desk = HandoffDesk(SimpleNamespace(ctx=SimpleNamespace(agent=agent)), queue=HandoffQueue(engine), settings=Settings())

    async def rasa(message: UserMessage) -> None:  # Rasa's own turn: not counted
        tracker.update(UserUttered(message.text, {"name": "card_arrival", "confidence": 0.9}, message_id=message.message_id))
        tracker.update(BotUttered("Cards arrive within 5 working days."))
        await message.output_channel.send_response(message.sender_id, {"text": "Cards arrive within 5 working days."})

    return desk, processor, on_loop_thread, rasa, engine


def test_a_message_reads_the_conversation_once_and_the_handoff_state_once_off_the_loop(tmp_path):
    desk, processor, statements, rasa, engine = _served(tmp_path)
    output = CollectingOutputChannel()
    statements.clear()  # the schema migration at connect

    asyncio.run(desk.receive(UserMessage("where is my new card", output, "rest:c:1", message_id="m1"), rasa))

    assert processor.reads == 1
    handoff_reads = [s for _, s in statements if "FROM handoffs" in s]
    assert len(handoff_reads) == 1, statements
    assert not [s for on_loop, s in statements if on_loop], "SQL on the event loop's thread"
    assert [m["text"] for m in output.messages] == ["Cards arrive within 5 working days."]


def test_a_rest_client_gets_what_the_agent_said_before_this_turn_s_answer(tmp_path):
    earlier = [UserUttered("thanks", {"name": "thanks"}, message_id="m0"),
               BotUttered("Alex here: your refund is on its way.", metadata={"agent": "Alex"})]
    desk, processor, _, rasa, _ = _served(tmp_path, earlier)
    output = CollectingOutputChannel()

    asyncio.run(desk.receive(UserMessage("where is my new card", output, "rest:c:1", message_id="m1"), rasa))

    assert [m["text"] for m in output.messages] == ["Alex here: your refund is on its way.",
                                                    "Cards arrive within 5 working days."]
    assert processor.reads == 1


def _reading(label: str, negative: float) -> dict:
    return {"frustration": {"sentiment": {"label": label, "confidence": 0.9, "negative": negative}}}


def test_sentiment_rows_are_written_behind_the_answer_except_for_a_conversation_being_erased(tmp_path):
    from bot.privacy import requests

    desk, _processor, statements, _rasa, engine = _served(tmp_path)
    requests.record_request(engine, "web:gone", via="web:gone")
    statements.clear()
    desk._record_sentiment("web:kept", UserUttered("hello", parse_data=_reading("neutral", 0.1), message_id="m1"))
    desk._record_sentiment("web:gone", UserUttered("forget me", parse_data=_reading("negative", 0.6), message_id="m1"))
    assert not [s for _, s in statements if "message_sentiment" in s], "nothing written on the caller's thread"
    assert desk.sentiments.flush(timeout=5)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(db.message_sentiment.c.conversation_id, db.message_sentiment.c.label)).all()
    assert [tuple(r) for r in stored] == [("web:kept", "neutral")]
    inserts = [s for _, s in statements if s.startswith("INSERT INTO message_sentiment")]
    assert len(inserts) == 1 and "ON CONFLICT" in inserts[0]


def test_a_message_after_the_erasure_finished_is_new_and_its_sentiment_is_kept(tmp_path):
    from bot.privacy import requests

    desk, _processor, _statements, _rasa, engine = _served(tmp_path)
    requests.record_request(engine, "web:back", via="web:back", now=1.0)
    claimed = requests.claim_next(engine, worker="w", now=2.0)
    assert requests.finish(engine, claimed["id"], {}, worker="w")
    desk._record_sentiment("web:back", UserUttered("hi again", parse_data=_reading("positive", 0.0), message_id="m9"))
    assert desk.sentiments.flush(timeout=5)
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.message_sentiment.c.message_id)).scalars().all() == ["m9"]


def test_a_queue_change_looks_up_only_the_waiting_customers_whose_channel_draws_their_place(tmp_path):
    """Each waiting REST or Slack customer cost a tracker fetch on every change of the queue, for nothing."""
    from bot.channels.base import DeskChannel
    from bot.channels.web import WebChatInput

    desk, processor, _, _, _ = _served(tmp_path)
    rest = type("Rest", (DeskChannel,), {"name": classmethod(lambda cls: "rest")})()
    desk.app.ctx.input_channels = [rest, WebChatInput()]
    for n, channel in enumerate(["rest", "rest", "web", "slack", None]):
        desk.queue.open(f"c{n}", "asked", channel=channel)
    reads = processor.reads

    asyncio.run(desk.push_positions())

    # "web" draws it; no channel recorded: looked up as before; "rest" draws nothing; no "slack" on this server.
    assert processor.reads - reads == 2
