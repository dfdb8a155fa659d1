"""Experiments applied and logged by the real servers (docs/experiments.md).

Its own Rasa server and action server (the session's assistant runs without
experiments), with an experiments file of two experiments:

- suggestions: ``blend`` against ``off``: customers in ``off`` get answers
  without suggestion buttons, those in ``blend`` with them;
- answers: the retrieval threshold at the setting against 0.99, which no
  past answer reaches: the same long-tail question is answered from history
  in one arm and not in the other.

Each exposure is a row with the arm the customer was served; after the
weights change and the servers restart, exposed customers keep their arm;
the analytics report counts the logged exposures per arm.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
import sqlalchemy as sa
import yaml

from bot.insight.experiment_report import experiment_report
from bot.insight.experiments import load_experiments
from bot.serve import Assistant
from core import db
from core.settings import PROJECT_ROOT
from tests.e2e.conftest import TEST_REST_TOKEN, conversation_of, free_port, rest_send, start_showing_logs

pytestmark = pytest.mark.e2e

ABROAD = "which exchange rate does Northwind use"
ABROAD_AGAIN = "what rate will I get when I spend in dollars"  # a customer repeating word for word sounds frustrated
LONG_TAIL = "I have a question about joint accounts: what happens to our joint account if my partner and I separate?"
HISTORY_PREFIX = yaml.safe_load((PROJECT_ROOT / "bot" / "domain" / "history.yml").read_text(encoding="utf-8")) \
    ["responses"]["utter_history_answer"][0]["text"].split("{answer}")[0]
CUSTOMERS = 8


def declaration(suggestion_weights=(1, 1)) -> Dict[str, Any]:
    return {"experiments": [
        {"name": "e2e-suggestions", "surface": "suggestions", "metric": "click_through", "guardrails": ["handoff"],
         "min_exposures": 50,
         "arms": [{"name": "blend", "weight": suggestion_weights[0]}, {"name": "off", "weight": suggestion_weights[1]}]},
        {"name": "e2e-answers", "surface": "answers", "metric": "thumbs_up", "min_exposures": 50,
         "arms": [{"name": "usual", "weight": 1}, {"name": "strict", "weight": 1, "threshold": 0.99}]},
    ]}


def suggested(replies: List[Dict[str, Any]]) -> List[str]:
    prefix = "/select_suggestion"
    return [json.loads(b["payload"][len(prefix):])["item_id"]
            for r in replies for b in r.get("buttons") or [] if b.get("payload", "").startswith(prefix)]


def exposures(db_url: str, experiment: str) -> List[tuple]:
    with db.connect(db_url).connect() as conn:
        return conn.execute(sa.select(db.experiment_exposures.c.customer_id, db.experiment_exposures.c.arm,
                                      db.experiment_exposures.c.conversation_id)
                            .where(db.experiment_exposures.c.experiment == experiment)
                            .order_by(db.experiment_exposures.c.id)).all()


@pytest.fixture(scope="module")
def servers_with(trained_model, tmp_path_factory):
    """Start the real servers with the experiments file written from a declaration; stops them at the end."""
    workdir = tmp_path_factory.mktemp("experiments")
    experiments_file = workdir / "experiments.yml"
    env = dict(trained_model["env"])
    env.update(ASSISTANT_ENV="demo", ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0",
               ASSISTANT_EXPERIMENTS_FILE=str(experiments_file),
               ASSISTANT_DATABASE_URL=f"sqlite:///{workdir / 'assistant.db'}",
               ASSISTANT_TRACKER_DB=str(workdir / "tracker.db"))
    running: List[Assistant] = []

    def start(content: Dict[str, Any]) -> Assistant:
        for old in running:
            old.stop()
        experiments_file.write_text(yaml.safe_dump(content, sort_keys=False))
        env["ASSISTANT_RASA_PORT"], env["ASSISTANT_ACTION_PORT"] = str(free_port()), str(free_port())
        servers = Assistant(trained_model["model"], env, int(env["ASSISTANT_RASA_PORT"]), int(env["ASSISTANT_ACTION_PORT"]),
                            workdir, PROJECT_ROOT / "bot" / "credentials.yml", log_dir=workdir)
        running.append(start_showing_logs(servers, workdir))
        return servers

    yield start, env, experiments_file
    for servers in running:
        servers.stop()


def test_arms_are_applied_logged_kept_and_reported(servers_with):
    start, env, experiments_file = servers_with
    servers = start(declaration())
    customers = [f"exp-{i}-{uuid.uuid4().hex[:6]}" for i in range(CUSTOMERS)]
    got_buttons, answered = {}, {}
    for customer in customers:
        got_buttons[customer] = bool(suggested(rest_send(servers.url, customer, ABROAD, token=TEST_REST_TOKEN)))
        reply = rest_send(servers.url, customer, LONG_TAIL, token=TEST_REST_TOKEN)
        answered[customer] = bool(reply) and reply[0].get("text", "").startswith(HISTORY_PREFIX)

    suggestion_rows = exposures(env["ASSISTANT_DATABASE_URL"], "e2e-suggestions")
    answer_rows = exposures(env["ASSISTANT_DATABASE_URL"], "e2e-answers")
    suggestion_arm = {c: arm for c, arm, _ in suggestion_rows}
    answer_arm = {c: arm for c, arm, _ in answer_rows}
    # Every customer was exposed to both, once each, in their own conversation, and served their arm.
    assert sorted(suggestion_arm) == sorted(customers) == sorted(answer_arm)
    assert all(conv == conversation_of(c) for c, _, conv in suggestion_rows + answer_rows)
    for customer in customers:
        assert got_buttons[customer] == (suggestion_arm[customer] == "blend"), customer
        assert answered[customer] == (answer_arm[customer] == "usual"), customer
    assert len(set(suggestion_arm.values())) == 2 or len(set(answer_arm.values())) == 2  # 8 customers: both arms seen

    # New weights: every newcomer would go to "off"; customers already exposed keep their arm.
    servers = start(declaration(suggestion_weights=(0, 1)))
    for customer in customers:
        rest_send(servers.url, customer, ABROAD_AGAIN, token=TEST_REST_TOKEN)
    newcomer = f"exp-new-{uuid.uuid4().hex[:6]}"
    assert not suggested(rest_send(servers.url, newcomer, ABROAD, token=TEST_REST_TOKEN))
    rows = exposures(env["ASSISTANT_DATABASE_URL"], "e2e-suggestions")
    for customer in customers:
        assert {arm for c, arm, _ in rows if c == customer} == {suggestion_arm[customer]}
    assert {arm for c, arm, _ in rows if c == newcomer} == {"off"}

    # The report counts what was logged, per arm and per customer.
    [report, _] = experiment_report(db.connect(env["ASSISTANT_DATABASE_URL"]), load_experiments(Path(experiments_file)))
    by_arm = {row["arm"]: row for row in report["arms"]}
    for arm in ("blend", "off"):
        members = {c for c, a in suggestion_arm.items() if a == arm} | ({newcomer} if arm == "off" else set())
        assert by_arm[arm]["customers"] == len(members)
        assert by_arm[arm]["exposures"] == sum(1 for c, a, _ in rows if a == arm)
    assert report["verdict"] == "keep running"  # 50 customers per arm are declared needed
