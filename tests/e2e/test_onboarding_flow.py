"""The whole onboarding flow, end to end: synthetic chat history -> discovered, reviewed, built, served.

Labelled synthetic transcripts of a made-up online shop (6 topics, questions
and tasks) go through the command line as a company would run it
(`python -m training.onboard`, ``review ... accept-all``, ``build`` with tiny
training), then the built model is served by the real Rasa server and action
server, and a REST conversation asks a held-out question of the history.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest

from bot.serve import Assistant
from core.onboarding import OnboardingProject, usable
from core.processes import project_env
from core.settings import PROJECT_ROOT
from tests.e2e.conftest import TEST_SECRETS, rest_caller, rest_send, start_showing_logs
from tests.e2e.services import free_port
from training.onboard.build import ACTION_RESPONSES, HANDOFF_RESPONSES, SMALL_TALK, TASK_REPLY
from training.onboard.synthetic import TOPICS

pytestmark = pytest.mark.e2e

TOPIC_COUNT, CONVERSATIONS = 6, 72


def run(env: Dict[str, str], *args: str, timeout: float = 900) -> str:
    """`python -m <args>` in the project root; its output, or a failure showing it."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"python -m {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory) -> Dict[str, Any]:
    """Transcripts -> proposal -> accept-all (one question discarded) -> built project, through the command line."""
    work = tmp_path_factory.mktemp("onboarding")
    env = project_env(ASSISTANT_DATABASE_URL=f"sqlite:///{work / 'assistant.db'}")
    transcripts, labels, project = work / "transcripts", work / "labels.csv", work / "project"
    run(env, "training.onboard.synthetic", "--out", str(transcripts), "--labels", str(labels),
        "--conversations", str(CONVERSATIONS), "--topics", str(TOPIC_COUNT), "--seed", "11")
    run(env, "training.onboard", "--transcripts", str(transcripts), "--out", str(project))
    run(env, "training.onboard", "review", str(project), "accept-all", "--min-size", "3")
    # One simple question left to the history: the built assistant answers it from the answer index.
    questions = [c for c in usable(OnboardingProject(project).reviewed()) if c.kind == "question"]
    left_to_history = max(questions, key=lambda c: c.size)
    run(env, "training.onboard", "review", str(project), "discard", left_to_history.id)
    table = run(env, "training.onboard", "build", str(project), "--epochs", "3", "--trainable-layers", "1")
    report = json.loads((project / "onboarding" / "report.json").read_text(encoding="utf-8"))
    return {"work": work, "env": env, "project": project, "report": report, "table": table, "labels": labels}


@pytest.fixture(scope="module")
def served(onboarded):
    """The built model behind the real Rasa server and action server, with the project's answer index."""
    work, project = onboarded["work"], onboarded["project"]
    env = dict(onboarded["env"], **TEST_SECRETS, ASSISTANT_ENV="demo",
               ASSISTANT_INDEX_DIR=str(project / "index"), ASSISTANT_MODEL_DIR=str(project / "models"),
               ASSISTANT_RECOMMENDER_DIR=str(work / "no-recommender"),
               ASSISTANT_TRACKER_DB=str(work / "tracker.db"),
               ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0")
    credentials = PROJECT_ROOT / "bot" / "credentials.yml"
    servers = Assistant(Path(onboarded["report"]["model"]), env, free_port(), free_port(), work, credentials, log_dir=work)
    start_showing_logs(servers, work)
    yield servers, env
    servers.stop()


def say(served, text: str, sender: str) -> List[str]:
    servers, env = served
    return [m.get("text") or "" for m in rest_send(servers.url, sender, text, token=rest_caller(env)[1])]


def test_report_has_the_figures(onboarded):
    report = onboarded["report"]
    assert len(report["intents"]) >= 2 and report["model"].endswith("onboarding.tar.gz")
    for figure in ("intent_accuracy", "coverage", "coverage_by_intent", "coverage_by_index"):
        assert 0.0 <= report[figure] <= 1.0, figure
    assert report["held_out"]["intents"] >= len(report["intents"])
    assert isinstance(report["left_out"], list) and report["requests"]
    assert "intent accuracy" in onboarded["table"] and "coverage" in onboarded["table"]
    assert (onboarded["project"] / "onboarding" / "report.md").exists()


def test_a_held_out_question_gets_the_reviewed_answer(onboarded, served):
    state = OnboardingProject(onboarded["project"]).reviewed()
    responses = {c.name: c.response for c in usable(state) if c.kind == "question"}
    hits = [r for r in onboarded["report"]["requests"]
            if r["intent"] in responses and r["predicted"] == r["intent"] and r["answered"] == "intent"]
    assert hits, f"no held-out question was answered by its intent: {onboarded['report']['requests']}"
    request = hits[0]
    assert say(served, request["text"], new_sender()) == [responses[request["intent"]]]


def parse(served, text: str) -> Dict[str, Any]:
    """Rasa's HTTP API parse of `text` on the served model (the API is on with the test token)."""
    servers, env = served
    request = urllib.request.Request(f"{servers.url}/model/parse", data=json.dumps({"text": text}).encode(),
                                     headers={"Authorization": f"Bearer {env['RASA_API_TOKEN']}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def true_topics(labels: Path) -> Dict[str, List[str]]:
    """The synthetic labels: each conversation's id as its file gives it -> its requests' true topics."""
    topics: Dict[str, List[str]] = {}
    with labels.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            topics.setdefault(row["file_id"], []).append(row["topic"])
    return topics


def test_a_question_left_to_the_history_is_answered_from_it(onboarded, served):
    report = onboarded["report"]
    assert report["index_pairs"] > 0
    answers = {t.name: set(t.answers) for t in TOPICS if t.kind == "question"}
    topics = true_topics(onboarded["labels"])
    # Held-out requests of the rest of the history whose true topic is a simple question
    # (conversations with one request, so the label is unambiguous).
    held = [(r, topics[r["id"].split("/")[0]][0]) for r in report["requests"] if r["intent"] is None
            and len(topics.get(r["id"].split("/")[0], [])) == 1 and topics[r["id"].split("/")[0]][0] in answers]
    assert held, f"no held-out request of the history asks a simple question: {report['requests']}"
    # The served model's retriever finds a past answer to that very question.
    request, topic = held[0]
    hits = parse(served, request["text"])["retrieval"]["hits"]
    assert hits[0]["answer"] in answers[topic] and hits[0]["score"] >= report["thresholds"]["retrieval"], (request, hits[0])
    # Where the classifier was unsure (nlu_fallback), the assistant answers from the history, as evaluated.
    prefix = ACTION_RESPONSES["utter_history_answer"].split("{answer}")[0]
    for request in (r for r in report["requests"] if r["intent"] is None and r["answered"] == "index"):
        replies = say(served, request["text"], new_sender())
        assert replies[0].startswith(prefix), replies


def new_sender() -> str:
    return f"onboard-{uuid.uuid4().hex[:8]}"


def test_greetings_tasks_and_unknown_requests(onboarded, served):
    assert say(served, "hello", new_sender()) == [SMALL_TALK["greet"][1]]
    report = onboarded["report"]
    kinds = {i["name"]: i["kind"] for i in report["intents"]}
    tasks = [r for r in report["requests"] if r["answered"] == "intent" and r["predicted"] == r["intent"]
             and kinds[r["intent"]] == "task"]
    assert tasks, f"no held-out task was answered by its intent: {report['requests']}"
    # A task is handed to a person through the project's desk (queued in the inbox), never pretended done.
    replies = say(served, tasks[0]["text"], new_sender())
    assert replies[:3] == [TASK_REPLY.format(what=tasks[0]["intent"].replace("_", " ")),
                           HANDOFF_RESPONSES["utter_handoff_ack"]["text"],
                           HANDOFF_RESPONSES["utter_handoff_queued"]["text"].format(position=1)]
    assert say(served, "/request_human", new_sender())[0] == HANDOFF_RESPONSES["utter_handoff_ack"]["text"]
    # A request the classifier is unsure of (nlu_fallback; sent as its payload here, since a model
    # trained for seconds is sure of almost anything) goes to the action server, which finds no past
    # answer for a payload and asks to rephrase.
    assert say(served, "/nlu_fallback", new_sender()) == [ACTION_RESPONSES["utter_please_rephrase"],
                                                          ACTION_RESPONSES["utter_offer_human"]]


def test_the_launcher_serves_the_built_assistant(onboarded):
    """`python -m bot.serve --demo --onboarded PROJECT`: the built model and its index behind the real servers."""
    work, project = onboarded["work"], onboarded["project"]
    rasa_port, action_port = free_port(), free_port()
    env = dict(onboarded["env"], **TEST_SECRETS, ASSISTANT_RASA_PORT=str(rasa_port),
               ASSISTANT_ACTION_PORT=str(action_port), ASSISTANT_TRACKER_DB=str(work / "launcher-tracker.db"),
               ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0")
    log = open(work / "launcher.log", "w+", encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "bot.serve", "--demo", "--onboarded", str(project)],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while f"The assistant built in {project} is up" not in (work / "launcher.log").read_text(encoding="utf-8"):
            assert process.poll() is None, (work / "launcher.log").read_text(encoding="utf-8")[-3000:]
            assert time.monotonic() < deadline, "the launcher did not come up in 10 minutes"
            time.sleep(1)
        assert "now serving release" not in (work / "launcher.log").read_text(encoding="utf-8")
        url = f"http://127.0.0.1:{rasa_port}"
        question = next(c for c in usable(OnboardingProject(project).reviewed())
                        if c.kind == "question" and c.name in {i["name"] for i in onboarded["report"]["intents"]})
        replies = [m.get("text") or "" for m in rest_send(url, f"launcher-{uuid.uuid4().hex[:8]}",
                                                          question.examples[0].text, token=rest_caller(env)[1])]
        assert question.response in replies
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
