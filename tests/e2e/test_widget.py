"""The website widget in real headless Chromium, in front of the real assistant.

Opens the demo page, holds a conversation, presses a button, rates an
answer, reloads the page and finds the conversation again. Debian's chromium
is driven through Playwright (no browser is downloaded); scripts/setup-web
installs it and builds the widget.
"""
from __future__ import annotations

import functools
import http.server
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import db
from core.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
SCREENSHOT = PROJECT_ROOT / "reports" / "widget.png"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run scripts/setup-web (it installs it)")
    if not (PROJECT_ROOT / "web" / "dist" / "widget.js").exists():
        pytest.fail("the widget is not built: run scripts/setup-web")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_widget(page, url: str):
    """Open the demo page and the chat panel; the widget once it has its session and history."""
    page.goto(url)
    widget = page.locator("#northwind-chat")
    widget.locator(".launcher").click()
    page.wait_for_selector("#northwind-chat[data-ready=true]", state="attached", timeout=30_000)
    return widget


def say(widget, text: str) -> None:
    widget.locator(".composer input").fill(text)
    widget.locator(".composer button").click()


def test_a_visitor_chats_presses_a_button_rates_an_answer_and_finds_it_all_after_a_reload(assistant, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    widget = open_widget(page, f"{assistant.url}/webhooks/web/")
    # The typing indicator must show while the assistant works.
    page.evaluate(
        """() => { const t = document.querySelector('#northwind-chat').shadowRoot.querySelector('.typing');
                   window.typingShown = false;
                   new MutationObserver(() => { if (!t.hidden) window.typingShown = true; })
                     .observe(t, {attributes: true}); }"""
    )

    say(widget, "my card has been stolen")
    answer = widget.locator(".msg.bot", has=page.locator(".rating")).last
    answer.wait_for(timeout=60_000)
    offer = widget.locator(".choice", has_text="No, thanks")
    offer.wait_for(timeout=60_000)
    assert page.evaluate("window.typingShown") is True
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    bot_messages = widget.locator(".msg.bot")
    before = bot_messages.count()
    offer.click()
    widget.locator(".msg.bot").nth(before).wait_for(timeout=60_000)
    assert "won't freeze" in widget.locator(".msg.bot").nth(before).inner_text()

    before = bot_messages.count()
    answer.locator(".thumb.up").click()
    widget.locator(".msg.bot").nth(before).wait_for(timeout=60_000)  # the assistant thanks for the rating
    assert answer.locator(".thumb.up").get_attribute("aria-pressed") == "true"
    session = page.locator("#northwind-chat").get_attribute("data-session")
    with db.connect(assistant.db_url).connect() as conn:
        ratings = conn.execute(
            sa.select(db.answer_ratings.c.rating).where(db.answer_ratings.c.conversation_id == session)
        ).scalars().all()
    assert ratings == [1]

    shown = widget.locator(".msg .text").all_inner_texts()
    page.reload()
    widget = page.locator("#northwind-chat")
    page.wait_for_selector("#northwind-chat[data-ready=true]", state="attached", timeout=30_000)
    assert page.locator("#northwind-chat").get_attribute("data-session") == session
    restored = widget.locator(".msg .text").all_inner_texts()
    assert restored == [t for t in shown if not t.startswith("Hi! I'm the")]
    assert "my card has been stolen" in restored and "No, thanks" in restored
    rated = widget.locator(".msg.bot", has=page.locator(".rating")).first
    assert rated.locator(".thumb.up").get_attribute("aria-pressed") == "true"
    page.close()


def test_a_known_customer_s_id_reaches_the_assistant(assistant, browser):
    customer = f"c_web_{uuid.uuid4().hex[:8]}"
    page = browser.new_page()
    widget = open_widget(page, f"{assistant.url}/webhooks/web/?customer={customer}")
    assert page.locator("#northwind-chat").get_attribute("data-session") == f"web:{customer}"
    say(widget, "hello")
    widget.locator(".msg.bot").nth(1).wait_for(timeout=60_000)
    tracker = assistant.tracker(f"web:{customer}")
    user_events = [e for e in tracker["events"] if e["event"] == "user"]
    assert user_events[-1]["metadata"]["customer_id"] == customer
    assert user_events[-1]["input_channel"] == "web"
    page.close()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def another_site(tmp_path):
    """A static site on another loopback origin (the browser blocks public pages from reaching loopback)."""
    def serve(html: str) -> str:
        (tmp_path / "help.html").write_text(html)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(tmp_path)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/help.html"

    servers = []
    yield serve
    for server in servers:
        server.shutdown()


def test_one_script_tag_embeds_the_widget_in_another_site(assistant, browser, another_site):
    url = another_site(
        "<!doctype html><html><head><title>Shop</title><style>button { color: red !important; }</style></head>"
        f"<body><h1>Another site</h1><script src='{assistant.url}/webhooks/web/widget.js' async></script></body></html>"
    )
    page = browser.new_page()
    widget = open_widget(page, url)
    say(widget, "hello")
    widget.locator(".msg.bot").nth(1).wait_for(timeout=60_000)
    # The host's CSS does not reach into the widget.
    assert widget.locator(".composer button").evaluate("b => getComputedStyle(b).color") == "rgb(255, 255, 255)"
    page.close()
