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


def test_the_wait_taken_and_cancelled(queue):
    assert queue.expected_wait_s() is None  # no history: no promise
    queue.open("ann", "asked")
    taken = queue.take("ann", "Alex")
    assert taken.taken_at is not None and queue.take("ann", "Sam").taken_at == taken.taken_at  # the first take counts
    assert queue.cancel("ann") is None  # an agent has it: the customer cannot cancel it away
    queue.open("bob", "asked")
    cancelled = queue.cancel("bob")
    assert cancelled.status == "closed" and cancelled.agent is None and queue.current("bob") is None
    assert queue.cancel("nobody") is None


def test_opening_hours_are_read_and_refused_plainly():
    import datetime as dt

    from bot.handoff.hours import HoursError, OpeningHours

    hours = OpeningHours.parse("Mon-Fri 08:00-20:00; Sat 09:00-13:00", "Europe/London")
    london = dt.timezone(dt.timedelta(0))  # December: London is on UTC
    assert hours.is_open(dt.datetime(2026, 12, 2, 9, 30, tzinfo=london))  # a Wednesday morning
    assert not hours.is_open(dt.datetime(2026, 12, 2, 21, 0, tzinfo=london))
    assert hours.is_open(dt.datetime(2026, 12, 5, 12, 0, tzinfo=london))  # Saturday noon
    assert not hours.is_open(dt.datetime(2026, 12, 6, 12, 0, tzinfo=london))  # Sunday
    assert "Europe/London" in hours.describe()
    assert OpeningHours.parse("always").is_open()
    assert OpeningHours.parse("Fri-Mon 22:00-23:00", "UTC").is_open(dt.datetime(2026, 12, 6, 22, 30, tzinfo=dt.timezone.utc))
    for bad, says in (("weekdays 9-5", "cannot read"), ("Mon-Fri 18:00-08:00", "closes before it opens"),
                      ("Mon-Fry 08:00-20:00", "is not a day"), ("Mon 25:00-26:00", "not a time")):
        with pytest.raises(HoursError, match=says):
            OpeningHours.parse(bad)
    with pytest.raises(HoursError, match="support_timezone"):
        OpeningHours.parse("always", "Mars/Olympus")


def test_someone_is_online_while_their_inbox_session_is_fresh(tmp_path):
    import sqlalchemy as sa

    from bot.security import staff

    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    assert staff.agents_online(engine) == 0
    staff.add_account(engine, "alex", "a-long-enough-passphrase-1", role="agent")
    staff.open_session(engine, "alex", "password", "127.0.0.1")
    assert staff.agents_online(engine) == 1
    with engine.begin() as conn:  # four minutes without a poll: gone
        conn.execute(db.staff_sessions.update().values(last_seen=sa.func.coalesce(db.staff_sessions.c.last_seen, 0) - 240))
    assert staff.agents_online(engine, within_s=180) == 0
