"""The insight pages in a real browser: a supervisor opens a customer page, the segments and the analytics report.

Against the real Rasa server (the session's `assistant`): synthetic demo
customers are written into its database, segments computed with
`training.segments`, one customer talks to the assistant over REST (so the
customer page shows a conversation read from the tracker store), and the
pages are screenshotted under reports/screens/.
"""
from __future__ import annotations

import uuid

import pytest

from core.settings import PROJECT_ROOT
from tests.e2e.test_inbox_roles import sign_in
from tests.e2e.test_widget import browser  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e

SCREENS = PROJECT_ROOT / "reports" / "screens"


@pytest.fixture(scope="module")
def demo(assistant):
    from bot.actions.suggestions import CATALOGUE
    from core import db
    from recommender import store
    from training import segments
    from training.generate_demo_customers import generate, load_catalogue

    engine = db.connect(assistant.db_url)
    items = load_catalogue(CATALOGUE)
    customers, interactions = generate(items, customers=80, seed=3)
    store.save_items(engine, items)
    store.erase_synthetic(engine)
    store.save_customers(engine, customers, synthetic=True)
    store.add_interactions(engine, interactions)
    store.set_suggestions_opt_out(engine, "demo-0002", True)
    segments.compute(engine, max_k=6)
    talker = f"insight-{uuid.uuid4().hex[:6]}"
    assistant.send(talker, "hello")
    assistant.send(talker, "what is the exchange rate for euros?")
    SCREENS.mkdir(parents=True, exist_ok=True)
    return {"talker": talker}


def test_a_supervisor_sees_a_customer_page_with_charts_and_its_conversation(assistant, browser, demo):  # noqa: F811
    _, page = sign_in(browser, assistant, "supervisor", "Supervisor Sol")
    page.goto(f"{assistant.url}/webhooks/inbox/customers/demo-0001")
    page.locator("#interests svg").first.wait_for(timeout=15_000)
    assert page.locator("#synthetic").is_visible()
    assert page.locator("#suggestions table tr").count() >= 2  # a header and at least one suggestion with its reason
    page.screenshot(path=str(SCREENS / "customer.png"), full_page=True)

    page.goto(f"{assistant.url}/webhooks/inbox/customers/{demo['talker']}")
    page.locator("#timeline table", has_text=assistant.conversation_of(demo["talker"])).wait_for(timeout=15_000)
    assert page.locator("#identity", has_text="rest").is_visible()
    page.screenshot(path=str(SCREENS / "customer-conversation.png"), full_page=True)

    page.goto(f"{assistant.url}/webhooks/inbox/customers/demo-0002")
    assert page.locator("#opted-out").is_visible() and page.locator("#interests svg").count() == 0
    page.screenshot(path=str(SCREENS / "customer-opted-out.png"), full_page=True)

    answer = page.goto(f"{assistant.url}/webhooks/inbox/customers/no-such-customer")
    assert answer.status == 404 and page.locator("h1", has_text="Customer not found").is_visible()


def test_a_supervisor_sees_segments_and_opens_a_customer_from_there(assistant, browser, demo):  # noqa: F811
    _, page = sign_in(browser, assistant, "supervisor", "Supervisor Sage")
    assert page.locator("#show-segments").is_visible()  # the inbox links supervisors to the segments
    page.goto(f"{assistant.url}/webhooks/inbox/segments")
    page.locator("#segment-rows").wait_for(timeout=15_000)
    assert page.locator("svg.chart").count() == 2 and page.locator("#segment-rows tr").count() >= 3
    page.screenshot(path=str(SCREENS / "segments.png"), full_page=True)
    page.fill("#customer-id", "demo-0003")
    page.click("#open-customer button")
    page.locator("h1", has_text="demo-0003").wait_for(timeout=15_000)


def test_a_supervisor_picks_an_analytics_range_and_a_reversed_one_is_explained(assistant, browser, demo):  # noqa: F811
    _, page = sign_in(browser, assistant, "supervisor", "Supervisor Sasha")
    page.goto(f"{assistant.url}/webhooks/inbox/analytics")
    page.locator("#range").wait_for(timeout=60_000)
    page.screenshot(path=str(SCREENS / "analytics.png"), full_page=True)
    page.fill("#since", "2026-03-01")
    page.fill("#until", "2026-02-01")
    page.click("#range button")
    page.locator("#range-message", has_text="reversed").wait_for(timeout=15_000)
    page.screenshot(path=str(SCREENS / "analytics-reversed.png"), full_page=True)
