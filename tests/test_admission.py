"""The admission gate (bot/admission.py): a bounded number inside, fair turns among customers, polite refusals."""
from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

from bot.admission import BUSY_TEXT, RETRY_AFTER_S, FairGate
from bot.handoff.desk import HandoffDesk
from core import metrics
from core.settings import Settings


async def _run(gate: FairGate, arrivals, hold: float = 0.01):
    """Start one task per (sender, label) at once; each holds its place `hold` seconds. Order of entry and refusals."""
    entered, refused = [], []

    async def message(sender, label):
        async with gate.admit(sender) as admitted:
            if not admitted:
                refused.append(label)
                return
            entered.append(label)
            await asyncio.sleep(hold)

    await asyncio.gather(*(message(s, l) for s, l in arrivals))
    return entered, refused


def test_a_chatty_customer_gets_one_turn_per_round():
    gate = FairGate(concurrency=1, max_waiting=100)
    arrivals = [("chatty", f"c{i}") for i in range(6)] + [("ann", "a0"), ("bob", "b0"), ("ann", "a1")]
    entered, refused = asyncio.run(_run(gate, arrivals))
    assert not refused
    # chatty's first message was inside before the others arrived; then each waiting customer in turn.
    assert entered[:6] == ["c0", "c1", "a0", "b0", "c2", "a1"]
    assert sorted(entered) == sorted(label for _, label in arrivals)
    assert gate.inside == 0 and gate.waiting == 0


def test_one_customer_never_has_two_messages_inside():
    gate = FairGate(concurrency=4, max_waiting=100)
    inside_at_once = []

    async def main():
        now = set()

        async def message(sender):
            async with gate.admit(sender):
                assert sender not in now
                now.add(sender)
                inside_at_once.append(len(now))
                await asyncio.sleep(0.005)
                now.discard(sender)

        await asyncio.gather(*(message(s) for s in ["x"] * 5 + ["y", "z"]))

    asyncio.run(main())
    assert max(inside_at_once) <= 3  # x, y and z: never two of x's


def test_past_the_bounded_queue_messages_are_refused_at_once():
    gate = FairGate(concurrency=2, max_waiting=3)
    arrivals = [(f"s{i}", f"m{i}") for i in range(8)]
    entered, refused = asyncio.run(_run(gate, arrivals))
    assert entered == ["m0", "m1", "m2", "m3", "m4"] and refused == ["m5", "m6", "m7"]
    assert gate.refused == 3 and gate.waiting == 0 and gate.inside == 0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _busy_gate(clock: _Clock, max_wait_s: float, served_per_s: float, served: int = 20,
               concurrency: int = 1) -> FairGate:
    """A gate whose latest `served` messages each spent concurrency/served_per_s seconds inside."""
    gate = FairGate(concurrency=concurrency, max_waiting=1000, max_wait_s=max_wait_s, clock=clock)
    for _ in range(served):
        gate._durations.append(concurrency / served_per_s)
    return gate


def test_the_wait_is_bounded_by_time_at_the_pace_the_server_answers():
    clock = _Clock()
    gate = _busy_gate(clock, max_wait_s=2.0, served_per_s=10.0)
    assert abs(gate.pace() - 10.0) < 1e-9

    async def main():
        holder = asyncio.create_task(_hold(gate, "inside"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(_hold(gate, f"w{i}")) for i in range(40)]
        await asyncio.sleep(0)
        counts = (gate.waiting, gate.refused)
        for task in [holder, *waiting]:
            task.cancel()
        await asyncio.gather(holder, *waiting, return_exceptions=True)
        return counts

    waiting, refused = asyncio.run(main())
    # At 10 a second, 2 s is 20 customers ahead: the rest are told to send again, not kept into a timeout.
    assert waiting in (19, 20) and waiting + refused == 40  # 20 within rounding of the mean


async def _hold(gate: FairGate, sender: str) -> None:
    async with gate.admit(sender):
        await asyncio.sleep(60)


def test_the_pace_is_the_places_over_the_time_inside_and_is_measured_only_after_a_few():
    assert _busy_gate(_Clock(), 2.0, served_per_s=1.0, served=3).pace() is None  # a handful: no pace, only the count
    four = _busy_gate(_Clock(), 2.0, served_per_s=40.0, concurrency=4)
    assert abs(four.pace() - 40.0) < 1e-9  # 4 places, 0.1 s each


def test_the_time_inside_is_measured_from_entry_to_exit():
    clock = _Clock()
    gate = FairGate(concurrency=2, max_waiting=10, max_wait_s=1.0, clock=clock)

    async def main():
        for i in range(8):
            async with gate.admit(f"s{i}"):
                clock.now += 0.5

    asyncio.run(main())
    assert list(gate._durations) == [0.5] * 8 and abs(gate.pace() - 4.0) < 1e-9


def test_a_chatty_customer_waits_behind_a_round_per_message_of_theirs():
    clock = _Clock()
    gate = _busy_gate(clock, max_wait_s=100.0, served_per_s=10.0)
    gate._lines["a"] = deque([object(), object()])
    gate._lines["b"] = deque([object()])
    pace = gate.pace()
    assert abs(gate.expected_wait("new") - 3 / pace) < 1e-9  # behind a and b, one round
    assert abs(gate.expected_wait("a") - 2 * 3 / pace) < 1e-9  # behind their own two messages' rounds


def test_a_cancelled_waiting_message_gives_its_place_back():
    gate = FairGate(concurrency=1, max_waiting=10)

    async def main():
        order = []

        async def message(sender, hold):
            async with gate.admit(sender):
                order.append(sender)
                await asyncio.sleep(hold)

        first = asyncio.create_task(message("a", 0.05))
        await asyncio.sleep(0)
        gone = asyncio.create_task(message("b", 0))
        later = asyncio.create_task(message("c", 0))
        await asyncio.sleep(0.01)
        assert gate.waiting == 2
        gone.cancel()  # the caller hung up while waiting
        await asyncio.gather(first, later)
        return order

    assert asyncio.run(main()) == ["a", "c"]
    assert gate.waiting == 0 and gate.inside == 0


def test_zero_concurrency_turns_the_gate_off():
    gate = FairGate(concurrency=0, max_waiting=0)
    entered, refused = asyncio.run(_run(gate, [("a", 1), ("a", 2), ("b", 3)]))
    assert sorted(entered) == [1, 2, 3] and not refused


def test_the_desk_refuses_politely_with_503_when_too_many_wait():
    settings = Settings(admission_concurrency=1, admission_queue=1)
    app = SimpleNamespace(ctx=SimpleNamespace())  # no model loaded: the desk passes messages straight on
    desk = HandoffDesk(app, queue=SimpleNamespace(), settings=settings)
    passed = []

    async def assistant(message):
        await asyncio.sleep(0.02)
        passed.append(message.sender_id)

    async def send(sender):
        output = CollectingOutputChannel()
        await desk.receive(UserMessage("hello", output, sender, input_channel="rest"), assistant)
        return output

    async def main():
        return await asyncio.gather(send("a"), send("b"), send("c"))

    before = metrics.ADMISSION_REFUSED.labels("rest")._value.get()
    outputs = asyncio.run(main())
    assert passed == ["a", "b"]  # one inside, one waiting, the third refused
    refused = outputs[2]
    assert [m["text"] for m in refused.messages] == [BUSY_TEXT]
    assert (refused.retry_after, refused.retry_status) == (RETRY_AFTER_S, 503)
    assert not getattr(outputs[1], "retry_after", None)
    assert metrics.ADMISSION_REFUSED.labels("rest")._value.get() == before + 1


def test_the_gate_comes_from_the_settings():
    desk = HandoffDesk(SimpleNamespace(ctx=SimpleNamespace()), queue=SimpleNamespace(),
                       settings=Settings(admission_concurrency=3, admission_queue=7, admission_max_wait_s=1.5))
    assert (desk.gate.concurrency, desk.gate.max_waiting, desk.gate.max_wait_s) == (3, 7, 1.5)
    assert Settings().admission_concurrency > 0, "on by default"
