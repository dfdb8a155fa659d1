"""The support-day mix (bot/load_mix.py): what it plans and how the driver resolves its tokens."""
import asyncio
import json

from aiohttp import web

from bot import load_mix
from bot.bench_load import drive, prewarm, rates_table
from bot.load_mix import CLICK, RATE_ANSWER, RATE_SERVICE, CustomerState, Sources, composition, support_day, token

REAL = [f"real customer question number {i}" for i in range(400)]


def sources() -> Sources:
    heldout = {intent: [f"{intent} example {i}" for i in range(5)]
               for intent in ("greet", "thanks", "goodbye", "lost_or_stolen_card", "request_human", *load_mix.QUESTION_INTENTS)}
    return Sources(REAL, heldout, [f"history question {i}" for i in range(50)])


def test_a_third_of_the_messages_are_real_questions_and_long_conversations_pass_100_turns():
    people = support_day(60, 20, 60, seed=3, long_customers=4, long_turns=100, sources=sources())
    c = composition(people, sources())
    assert c["real_share"] >= 1 / 3
    assert c["past_100_turns"] == 4 and c["longest_conversation"] > 100
    assert {RATE_ANSWER, CLICK, RATE_SERVICE, "leave the handoff queue"} <= set(c["kinds"])
    assert all(len(p.history) >= 100 for p in people[:4]) and not any(p.history for p in people[4:])
    # offered rate: about 20 a second over the 60 seconds, open loop
    assert 0.85 * 1200 <= c["messages"] <= 1.15 * 1200
    # no customer goes past the per-customer limit of 30 a minute in the measured traffic
    for p in people:
        assert all(sum(t <= u < t + 60 for u in p.schedule) <= 30 for t in p.schedule)


def test_tokens_are_resolved_from_the_latest_buttons_or_typed_instead():
    state = CustomerState()
    assert state.resolve(token(CLICK, "what are your fees")) == "what are your fees"
    state.seen([{"text": "Here", "buttons": [{"title": "Card", "payload": '/select_suggestion{"item_id":"x"}'},
                                           {"title": "up", "payload": '/rate_answer{"answer_id":"a","rating":1}'}]}])
    assert state.resolve(token(CLICK, "typed")) == '/select_suggestion{"item_id":"x"}'
    # the buttons are used up by the click
    assert state.resolve(token(RATE_ANSWER, "thanks")) == "thanks"
    state.seen([{"text": "Rate us", "buttons": [{"title": str(i), "payload": f'/rate_service{{"score":{i}}}'} for i in range(1, 6)]}])
    assert json.loads(state.resolve(token(RATE_SERVICE, "bye"))[len("/rate_service"):])["score"] in (4, 5)
    assert state.unresolved == 2 and state.resolved[CLICK] == 1


def test_leaving_the_queue_is_sent_only_while_queued():
    state = CustomerState()
    assert state.resolve(load_mix.CANCEL_HANDOFF) == "ok"
    state.seen([{"text": "You're number 2 in the queue for one of our advisers."}])
    assert state.queued and state.handoffs == 1
    assert state.resolve(load_mix.CANCEL_HANDOFF) == load_mix.CANCEL_HANDOFF and not state.queued


def test_the_driver_streams_results_resolves_tokens_per_customer_and_prewarms_history():
    seen = []

    async def webhook(request):
        body = await request.json()
        seen.append((body["sender"], body["message"]))
        return web.json_response([{"text": "ok", "buttons": [{"title": "t", "payload": '/select_suggestion{"item_id":"i"}'}]}])

    async def run():
        app = web.Application()
        app.router.add_post("/hook", webhook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/hook"
        people = support_day(4, 4, 3, seed=1, long_customers=1, long_turns=6, sources=sources())
        streamed = []
        try:
            warm = await prewarm(url, people, timeout=5)
            summary = await drive(url, people, 5, {}, on_result=streamed.append, keep_results=False)
        finally:
            await runner.cleanup()
        return people, warm, summary, streamed

    people, warm, summary, streamed = asyncio.run(run())
    assert warm["messages"] == len(people[0].history) and warm["errors"] == 0
    assert summary["messages"] == len(streamed) == sum(len(p.messages) for p in people) and summary["errors"] == 0
    assert not any(text.startswith("<") for _, text in seen)  # every token was resolved before sending
    assert summary["results"] == []  # keep_results=False keeps totals only


def test_the_rates_table_names_the_highest_rate_under_100_ms():
    row = dict(messages=10, throughput=9.0, p50=10, p95=50, p99=80, errors=0, error_kinds={}, refused=0,
               cpu_ms_per_msg=20.0, rasa_cpu_ms_per_msg=12.0, load_avg=1.0, conversation={"handoffs": 2})
    rows = [dict(row, rate=50, system="ours"), dict(row, rate=80, system="ours", p95=150),
            dict(row, rate=50, system="stock-rasa", p95=900)]
    text = rates_table(rows, [50, 80])
    assert "ours: 50 msg/s" in text and "stock-rasa: none of 50, 80" in text
