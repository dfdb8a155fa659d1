"""Agent assist in a real browser: take over a conversation, insert a draft, edit it, send it, find it logged.

A REST customer asks for a person and then asks about their card; an agent
signs in to the inbox, takes the conversation, sees three drafts (each with
the question it came from and its score), inserts one, edits it and sends
it. The log row names the draft and holds the text sent; a reply written
from scratch, unlike every draft, is kept in the review queue.
"""
from __future__ import annotations

import uuid

import pytest

from bot.channels import assist
from bot.security import audit
from core import db, review
from core.settings import PROJECT_ROOT
from tests.e2e.inbox_client import InboxClient
from tests.e2e.test_widget import browser  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e

SCREENSHOT = PROJECT_ROOT / "reports" / "screens" / "agent_assist.png"


def test_an_agent_inserts_a_draft_edits_it_sends_it_and_the_log_says_which_draft(assistant, browser):  # noqa: F811
    sender = f"rest-assist-{uuid.uuid4().hex[:8]}"
    assistant.send(sender, "I want to talk to a human")
    assistant.send(sender, "my new card still has not arrived, where is it?")
    conversation = assistant.conversation_of(sender)

    username, password = assistant.inbox_account("agent", display_name="Avery")
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(f"{assistant.url}/webhooks/inbox/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login button[type=submit]")
    page.locator(f"#list button[data-conversation='{conversation}']").click(timeout=15_000)
    page.click("#take")
    page.locator("#title", has_text="active").wait_for(timeout=15_000)

    drafts = page.locator("#assist .draft")
    drafts.nth(2).wait_for(timeout=15_000)
    assert drafts.count() == 3
    assert "my new card still has not arrived" in page.locator("#assist").inner_text()  # the message drafted for
    for i in range(3):
        box = drafts.nth(i).inner_text()
        assert "score" in box and "Question:" in box
    assert page.locator("#assist .profile-summary").inner_text().strip()

    first = drafts.nth(0)
    source, draft_id = first.get_attribute("data-source"), first.get_attribute("data-id")
    draft_text = first.locator("p").inner_text()
    first.locator("button", has_text="Insert").click()
    assert page.input_value("#text") == draft_text
    page.locator("#text").press("End")
    page.locator("#text").type(" Anything else I can do?")
    page.locator("#text").evaluate("el => el.dispatchEvent(new Event('input'))")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    page.click("#reply button[type=submit]")
    page.locator("#transcript li.agent", has_text="Anything else I can do?").wait_for(timeout=15_000)

    engine = db.connect(assistant.db_url)
    [row] = assist.logged(engine, conversation)
    assert (row["agent"], row["draft_source"], row["draft_id"]) == (username, source, draft_id)
    assert row["draft_text"] == draft_text
    assert row["sent_text"].endswith("Anything else I can do?")
    assert row["similarity"] > assist.REWRITE_SIMILARITY and row["review_item"] is None
    replies = audit.recent(engine, action="conversation.reply", target=conversation)
    assert replies[0]["actor"] == username and replies[0]["detail"]["draft"] == {"source": source, "id": draft_id}
    assert audit.recent(engine, action="conversation.open", target=conversation, actor=username)  # opening audited

    # Written from scratch and unlike every draft: logged without a draft, and kept for review.
    avery = InboxClient(assistant.url)
    assert avery.login(username, password)[0] == 200
    status, _, _ = avery.post(f"api/conversations/{conversation}/reply", {"text": "Let me ring the courier, back in 5."})
    assert status == 200
    newest = assist.logged(engine, conversation)[0]
    assert (newest["draft_source"], newest["draft_id"]) == (None, None)
    item = review.get_item(newest["review_item"], db_url=assistant.db_url)
    assert (item["reason"], item["conversation_id"]) == ("agent_rewrite", conversation)
    assert "card" in item["text"]


    # The drafts alone, over the API, by another person: the opening is audited for them too.
    quinn_name, quinn_password = assistant.inbox_account("agent", display_name="Quinn")
    quinn = InboxClient(assistant.url)
    assert quinn.login(quinn_name, quinn_password)[0] == 200
    status, _, offered = quinn.get(f"api/conversations/{conversation}/drafts")
    assert status == 200 and len(offered["drafts"]) == 3 and offered["customer_id"]
    assert {"source", "id", "text", "question", "score"} <= set(offered["drafts"][0])
    assert audit.recent(engine, action="conversation.open", target=conversation, actor=quinn_name)


def test_the_panel_shows_the_customers_sentiment_when_the_message_has_one(assistant, browser):  # noqa: F811
    # No sentiment model may be installed here: the drafts answer is given one, as a stored sentiment would.
    sender = f"rest-assist-mood-{uuid.uuid4().hex[:8]}"
    assistant.send(sender, "I want to talk to a human")
    conversation = assistant.conversation_of(sender)
    username, password = assistant.inbox_account("agent", display_name="Morgan")
    page = browser.new_context().new_page()

    def with_sentiment(route):
        answer = route.fetch().json()
        route.fulfill(json={**answer, "sentiment": {"label": "negative", "confidence": 0.83}})

    page.route("**/drafts", with_sentiment)
    page.goto(f"{assistant.url}/webhooks/inbox/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login button[type=submit]")
    page.locator(f"#list button[data-conversation='{conversation}']").click(timeout=15_000)
    page.locator("#assist .sentiment", has_text="Sentiment: negative (83%)").wait_for(timeout=15_000)
    assert sender in page.locator("#assist .profile-summary").inner_text()
