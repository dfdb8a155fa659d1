"""The inbox page in a real browser: what each role sees, the audit view, accounts made by an admin.

Against the real Rasa server (the session's `assistant`), with accounts made
in its database as an administrator would.
"""
from __future__ import annotations

import uuid

import pytest

from tests.e2e.test_widget import browser  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e


def sign_in(browser, assistant, role: str, display_name: str):  # noqa: F811
    username, password = assistant.inbox_account(role, display_name=display_name)
    page = browser.new_context().new_page()
    page.goto(f"{assistant.url}/webhooks/inbox/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login button[type=submit]")
    page.locator("#who", has_text=display_name).wait_for(timeout=15_000)
    return username, page


def test_an_agent_sees_conversations_but_no_audit_log_or_accounts(assistant, browser):  # noqa: F811
    _, page = sign_in(browser, assistant, "agent", "Agent Avery")
    assert page.locator("#app").is_visible()
    assert not page.locator("#show-audit").is_visible() and not page.locator("#show-accounts").is_visible()


def test_a_supervisor_reads_the_audit_log_in_the_page(assistant, browser):  # noqa: F811
    username, page = sign_in(browser, assistant, "supervisor", "Supervisor Sky")
    assert not page.locator("#show-accounts").is_visible()
    page.click("#show-audit")
    page.locator("#audit-rows tr", has_text=username).first.wait_for(timeout=15_000)
    assert "signin" in page.locator("#audit-rows").inner_text()
    assert page.locator("#export-csv").get_attribute("href").endswith("format=csv")


def test_an_admin_adds_an_account_in_the_page_and_sees_its_password_once(assistant, browser):  # noqa: F811
    _, page = sign_in(browser, assistant, "admin", "Admin Ari")
    page.click("#show-accounts")
    newcomer = f"newcomer-{uuid.uuid4().hex[:6]}"
    page.fill("#new-username", newcomer)
    page.fill("#new-display", "New Comer")
    page.click("#add-account button[type=submit]")
    page.locator("#account-secret", has_text=f"Password for {newcomer}").wait_for(timeout=15_000)
    password = page.locator("#account-secret .secret").inner_text()
    page.locator("#account-rows tr", has_text=newcomer).wait_for(timeout=15_000)
    # The new person signs in with it; signing out takes them back to the sign-in form.
    other = browser.new_context().new_page()
    other.goto(f"{assistant.url}/webhooks/inbox/")
    other.fill("#username", newcomer)
    other.fill("#password", password)
    other.click("#login button[type=submit]")
    other.locator("#who", has_text="New Comer").wait_for(timeout=15_000)
    other.click("#logout")
    other.locator("#login").wait_for(state="visible", timeout=15_000)
    other.reload()
    other.locator("#login").wait_for(state="visible", timeout=15_000)  # the session is gone on the server too
