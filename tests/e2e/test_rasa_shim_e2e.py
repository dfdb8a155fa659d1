"""The Rasa shim (bot/rasa_shim.py) with the real model and the real `rasa run`.

`rasa run` itself refuses to start, exit status 70, naming what differs, on
a Rasa of another version or with a changed function.

The shim's graph runner gives what Rasa's own `DaskGraphRunner.run` gives.
The model the e2e tests train (or ASSISTANT_TEST_MODEL) is loaded in this
process, and the same conversations go through it twice: once with Rasa's
stock `DaskGraphRunner.run`, once with the shim's. The conversations are the
user turns of the conversation tests (bot/tests/test_conversations.yml, each
story in order), every held-out NLU example (bot/tests/heldout_nlu.yml)
as a one-turn conversation, and a few hundred generated turns: the load
benchmark's multi-turn customers (`bot.bench_load.plan`, held-out utterances
and questions of the answer history). For each turn the parse data (intent,
ranking, entities, retrieval, frustration), every predicted next action up to
the next ``action_listen`` (name, policy, confidence, the whole probability
vector), the turn's events and the slots after it must be identical. Custom actions are not executed (no action server): what
is compared is every graph run of a message, NLU and dialogue policy.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any, Dict, List

import pytest
import yaml

from core.settings import PROJECT_ROOT, get_settings
from tests.e2e.services import free_port

pytestmark = pytest.mark.e2e

MAX_ACTIONS_PER_TURN = 6
GENERATED_TURNS_EACH = 6


def conversations() -> List[List[str]]:
    stories = yaml.safe_load((PROJECT_ROOT / "bot" / "tests" / "test_conversations.yml").read_text())["stories"]
    found = [[step["user"].strip() for step in story["steps"] if "user" in step] for story in stories]
    heldout = yaml.safe_load((PROJECT_ROOT / "bot" / "tests" / "heldout_nlu.yml").read_text())["nlu"]
    for block in heldout:
        found += [[line[2:].strip()] for line in block["examples"].splitlines() if line.startswith("- ")]
    from bot.bench_load import plan

    found += [person.messages[:GENERATED_TURNS_EACH] for person in plan(customers=50, rate=25, duration=20, seed=7)]
    return found


@pytest.fixture(scope="module")
def agent(trained_model):
    from rasa.core.agent import Agent

    import bot.rasa_shim as shim

    shim.install()
    with pytest.MonkeyPatch.context() as patch:  # the model's components read the settings of the test session
        for name, value in trained_model["env"].items():
            if name.startswith("ASSISTANT_"):
                patch.setenv(name, value)
        get_settings.cache_clear()
        try:
            yield Agent.load(str(trained_model["model"]))
        finally:
            get_settings.cache_clear()


def run_conversation(agent, sender: str, texts: List[str]) -> List[Dict[str, Any]]:
    from rasa.core.channels.channel import UserMessage
    from rasa.exceptions import ActionLimitReached
    from rasa.shared.core.constants import ACTION_LISTEN_NAME
    from rasa.shared.core.events import ActionExecuted

    processor = agent.processor

    async def main() -> List[Dict[str, Any]]:
        turns = []
        for number, text in enumerate(texts):
            message = UserMessage(text, sender_id=sender, message_id=f"{number}")
            parsed = await processor.parse_message(message)
            tracker = await processor.log_message(message, should_save_tracker=False)
            actions = []
            for _ in range(MAX_ACTIONS_PER_TURN):
                try:
                    action, prediction = processor.predict_next_with_tracker_if_should(tracker)
                except ActionLimitReached:  # Rasa's own stop (custom actions' events are not applied here)
                    actions.append("action limit reached")
                    break
                actions.append((action.name(), prediction.policy_name, prediction.max_confidence, list(prediction.probabilities)))
                tracker.update(ActionExecuted(action.name(), prediction.policy_name, prediction.max_confidence))
                if action.name() == ACTION_LISTEN_NAME:
                    break
            await processor.save_tracker(tracker)
            events = [{k: v for k, v in e.as_dict().items() if k != "timestamp"} for e in list(tracker.events)[-(len(actions) + 1):]]
            turns.append({"text": text, "parsed": parsed, "actions": actions, "events": events,
                          "slots": tracker.current_slot_values()})
        return turns

    return asyncio.run(main())


def test_the_shims_graph_runner_gives_what_rasas_gives_on_the_trained_model(agent):
    from rasa.engine.runner.dask import DaskGraphRunner

    import bot.rasa_shim as shim

    stock = shim._ORIGINALS["rasa.engine.runner.dask:DaskGraphRunner.run"]
    talks = conversations()
    assert len(talks) >= 20 and sum(map(len, talks)) >= 300
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        for label, runner in (("stock", stock), ("shim", shim._graph_run)):
            patch.setattr(DaskGraphRunner, "run", runner)
            results[label] = [run_conversation(agent, f"{label}-{number}", texts) for number, texts in enumerate(talks)]
    assert DaskGraphRunner.run is shim._graph_run
    assert results["shim"] == results["stock"]
    predicted = {a[0] for talk in results["shim"] for turn in talk for a in turn["actions"] if isinstance(a, tuple)}
    assert len(predicted) > 3  # the comparison covered several different paths, not one repeated action


REFUSING_RASA = """
import sys
import rasa
import bot.rasa_shim as shim
{change}
from rasa.__main__ import main
sys.argv = ["rasa", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("change, named", [
    ('rasa.__version__ = "3.6.99"', "written for Rasa 3.6.21 and this is Rasa 3.6.99"),
    ('shim.STUDIED_SOURCES["rasa.engine.runner.dask:DaskGraphRunner.run"] = "0" * 64',
     "Rasa's rasa.engine.runner.dask:DaskGraphRunner.run, whose source is not the one studied"),
])
def test_rasa_run_refuses_to_start_on_a_rasa_the_shim_was_not_written_for(trained_model, change, named):
    """As if Rasa had been upgraded under the project: the Docker image's plain `rasa run` exits, naming it."""
    env = dict(trained_model["env"], ACTION_SERVER_SECRET="test-action-secret")
    result = subprocess.run(
        [sys.executable, "-c", REFUSING_RASA.format(change=change), "run", "--model", str(trained_model["model"]),
         "--port", str(free_port()), "--interface", "127.0.0.1",
         "--credentials", str(PROJECT_ROOT / "bot" / "credentials.yml"), "--endpoints", str(PROJECT_ROOT / "bot" / "endpoints.yml")],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 70, (result.returncode, result.stderr[-2000:])
    assert named in result.stderr and "the server refuses to start" in result.stderr
    assert "Rasa server is up and running" not in result.stderr + result.stdout
