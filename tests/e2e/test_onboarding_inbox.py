"""The inbox's onboarding page in a real browser: a supervisor reviews the candidate intents.

Against the real Rasa server (the session's `assistant`, whose settings name
an onboarding project in its work folder: ASSISTANT_ONBOARDING_DIR in
tests/e2e/conftest.py). The project holds the small proposal of
tests/onboarding_proposal.py; the supervisor renames a candidate, edits a
drafted response, splits two ticked examples into a new intent, merges two
candidates and accepts one, and every decision is in the log under their
username. The list and a candidate page are screenshotted for
docs/onboarding.md (docs/images/onboarding-*.png).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.onboarding import OnboardingProject
from core.settings import PROJECT_ROOT
from tests.e2e.test_inbox_roles import sign_in
from tests.e2e.test_widget import browser  # noqa: F401  (a fixture)
from tests.onboarding_proposal import write_small_proposal

pytestmark = pytest.mark.e2e

IMAGES = PROJECT_ROOT / "docs" / "images"


@pytest.fixture
def project(assistant) -> OnboardingProject:
    folder = Path(assistant.env["ASSISTANT_ONBOARDING_DIR"])
    shutil.rmtree(folder, ignore_errors=True)
    return write_small_proposal(folder)


def done(page, text: str) -> None:
    """Wait for the page the last form led to, saying `text` was done."""
    page.locator("#done", has_text=text).wait_for(timeout=15_000)


def test_a_supervisor_reviews_the_candidate_intents_in_the_inbox(assistant, browser, project):  # noqa: F811
    username, page = sign_in(browser, assistant, "supervisor", "Supervisor Oona")
    assert page.locator("#show-onboarding").is_visible()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{assistant.url}/webhooks/inbox/onboarding")
    assert "Discovery estimated 5 intents" in page.locator("#estimate").inner_text()
    assert "near-duplicate of c2" in page.locator("#cand-c1").inner_text()

    # Rename on the list.
    page.locator("#cand-c1 form.rename input[name=name]").fill("lost_card_report")
    page.locator("#cand-c1 form.rename button").click()
    done(page, "Renamed c1 to lost_card_report")

    # Edit a drafted response on the candidate's page.
    page.locator("#cand-c3 a", has_text="opening_hours").click()
    page.locator("#alternatives", has_text="Mon-Fri 9-5").wait_for(timeout=15_000)
    page.fill("#response", "We are open 8:00-18:00, Monday to Saturday.")
    page.locator("#response-form button").click()
    done(page, "Saved the response of c3")
    assert page.input_value("#response") == "We are open 8:00-18:00, Monday to Saturday."

    # Tick two examples (the outliers about addresses) and split them into a new intent.
    page.goto(f"{assistant.url}/webhooks/inbox/onboarding/c/c1")
    assert page.locator("#ex-l7 .outlier-mark").is_visible()
    page.check("#ex-l6 input[type=checkbox]")
    page.check("#ex-l7 input[type=checkbox]")
    page.fill("#split-name", "change_address")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "onboarding-candidate.png"), full_page=True)
    page.click("#split")
    done(page, "Split 2 examples of c1 into c6 (change_address)")
    assert page.locator("#ex-l6").count() == 0

    # Merge the near-duplicate into it, under a new name, and accept the result.
    page.select_option("#merge-with", "c2")
    page.fill("#merge-name", "lost_or_stolen_card")
    page.click("#merge")
    done(page, "Merged c2 into c1")
    assert page.locator("#ex-s1").is_visible() and "lost_or_stolen_card" in page.locator("h1").inner_text()
    page.locator("form:has(input[name=action][value=accept]) button").first.click()
    done(page, "Accepted c1")
    assert page.locator("#status").inner_text() == "accepted"

    page.goto(f"{assistant.url}/webhooks/inbox/onboarding")
    assert "accepted" in page.locator("#cand-c1").inner_text() and "discarded" in page.locator("#cand-c2").inner_text()
    assert "change_address" in page.locator("#cand-c6").inner_text()
    page.screenshot(path=str(IMAGES / "onboarding-list.png"), full_page=True)
    assert dialogs == []  # the customer text with a <script> in it was shown, not run

    decisions = project.decisions()
    assert [d["action"] for d in decisions] == ["rename", "response", "split", "merge", "accept"]
    assert {d["by"] for d in decisions} == {username}
    state = project.reviewed()
    assert state.candidate("c3").response == "We are open 8:00-18:00, Monday to Saturday."
    assert [c.id for c in state.candidates if c.status == "accepted"] == ["c1"]
