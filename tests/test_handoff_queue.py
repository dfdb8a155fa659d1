"""The handoff queue: one open handoff per conversation, positions in order of arrival."""
from __future__ import annotations

import pytest

from bot.handoff.queue import HandoffQueue
from core import db


@pytest.fixture
def queue(tmp_path):
    return HandoffQueue(db.connect(f"sqlite:///{tmp_path / 'assistant.db'}"))


def test_customers_are_served_in_order_of_arrival(queue):
    for conversation in ("ann", "bob", "cy"):
        queue.open(conversation, "asked", customer_id=conversation, channel="web")
    assert [queue.position(c) for c in ("ann", "bob", "cy")] == [1, 2, 3]
    queue.take("ann", "Alex")
    assert [queue.position(c) for c in ("ann", "bob", "cy")] == [None, 1, 2]
    queue.close("bob", "Sam")
    assert queue.position("cy") == 1
    assert [(h.conversation_id, h.status) for h in queue.open_handoffs()] == [("cy", "waiting"), ("ann", "active")]


def test_asking_again_keeps_the_customer_s_place(queue):
    first = queue.open("ann", "frustration")
    queue.open("bob", "asked")
    again = queue.open("ann", "asked")
    assert again.id == first.id and again.reason == "frustration"
    assert queue.position("ann") == 1


def test_a_closed_handoff_leaves_the_conversation_free_for_a_new_one(queue):
    queue.open("ann", "asked")
    closed = queue.close("ann", "Alex")
    assert closed.status == "closed" and closed.agent == "Alex"
    assert queue.current("ann") is None and queue.position("ann") is None
    assert queue.open("ann", "fallbacks").id != closed.id
    assert queue.take("nobody", "Alex") is None and queue.close("nobody") is None


def test_a_channel_that_cannot_push_gets_what_the_agent_said_since_the_customer_last_wrote():
    from rasa.shared.core.events import BotUttered, UserUttered

    from bot.handoff.desk import HandoffDesk

    events = [
        UserUttered("I want a person"),
        BotUttered("You're number 1 in the queue.", metadata={"notice": "utter_handoff_queued"}),  # already answered
        BotUttered("Alex from Northwind Bank has joined.", metadata={"notice": "utter_handoff_agent_joined"}),
        BotUttered("Hi, I'm Alex.", metadata={"agent": "Alex"}),
    ]
    assert [e.text for e in HandoffDesk._unprompted(events)] == ["Alex from Northwind Bank has joined.", "Hi, I'm Alex."]
    assert HandoffDesk._unprompted(events + [UserUttered("thanks")]) == []


def test_a_message_kept_for_the_agent_counts_as_answered_only_by_its_own_acknowledgement():
    from rasa.shared.core.events import BotUttered, ConversationPaused, UserUttered

    from bot.handoff.desk import _unanswered

    first, second = UserUttered("yes please", message_id="a"), UserUttered("1219", message_id="b")
    events = [UserUttered("thanks", message_id="x"), ConversationPaused(), BotUttered("handed over"), first, second]
    assert _unanswered(events, "a") and _unanswered(events, "b")
    events.append(BotUttered("still waiting", metadata={"in_reply_to": "a"}))  # lands after "b"
    assert not _unanswered(events, "a") and _unanswered(events, "b")
    events.append(BotUttered("still waiting", metadata={"in_reply_to": "b"}))
    assert not _unanswered(events, "b")
    assert not _unanswered(events, "x"), "a bot message before the customer's next one answers it"


def test_processes_opening_one_conversation_together_get_one_handoff(tmp_path):
    """The action server and the desk (or two replicas) open at once: the unique index keeps one row."""
    import threading

    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'assistant.db'}"
    engine = db.connect(url)
    queues = [HandoffQueue(engine) for _ in range(6)]
    barrier = threading.Barrier(len(queues))
    opened, errors = [], []

    def open_now(queue: HandoffQueue) -> None:
        barrier.wait()
        try:
            opened.append(queue.open("racer", "asked", "racer", "web").id)
        except Exception as exc:  # pragma: no cover - what the test is about
            errors.append(exc)

    threads = [threading.Thread(target=open_now, args=(q,)) for q in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors and len(set(opened)) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.handoffs)).scalar() == 1


def test_the_database_refuses_a_second_open_handoff_written_behind_the_queue_s_back(queue):
    import sqlalchemy as sa

    queue.open("ann", "asked")
    with pytest.raises(sa.exc.IntegrityError) as refused:
        with queue.engine.begin() as conn:
            conn.execute(db.handoffs.insert().values(conversation_id="ann", reason="asked", status="waiting",
                                                     created_at=1.0, updated_at=1.0))
    from bot.handoff.queue import open_handoff_exists

    assert open_handoff_exists(refused.value)
