"""`rasa test` over the conversation tests (bot/tests/test_conversations.yml) with the trained model.

Every story must pass: the user texts are parsed by the real NLU pipeline
(intent classifier, answer retriever, fallback, frustration reader) and each
predicted action must be the story's. This is where the handoff decided in
the dialogue is checked end to end: an explicit request, a complaint, a
frustrated message (rules), asking again and two fallbacks in a row
(bot.policies.HandoffPolicy), and frustration inside the card freeze form.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from core.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

STORIES = PROJECT_ROOT / "bot" / "tests" / "test_conversations.yml"


def test_every_conversation_test_passes_under_rasa_test(trained_model, tmp_path):
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "test", "core", "--model", str(trained_model["model"]),
         "--stories", str(STORIES), "--out", str(out), "--no-plot"],
        cwd=str(PROJECT_ROOT), env=dict(trained_model["env"]), capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    failed_file = out / "failed_test_stories.yml"
    failed = yaml.safe_load(failed_file.read_text()) or {}
    assert not failed.get("stories"), failed_file.read_text()
    report = (out / "story_report.json")
    written = yaml.safe_load(STORIES.read_text())["stories"]
    if report.exists():  # correct stories out of all, as Rasa counts them
        import json

        counts = json.loads(report.read_text())
        assert counts.get("conversation_accuracy", {}).get("correct", len(written)) == len(written), counts
