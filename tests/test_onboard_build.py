"""training.onboard.build and training.onboard.synthetic on proposals written here (no discovery run)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from core.onboarding import Candidate, Example, OnboardingProject, Proposal
from training.onboard import build as build_mod
from training.onboard import synthetic
from training.onboard.build import BuildError, BuildOptions, build, main


# Candidates c1..c4 of the proposal: two questions, two tasks (names in sorted order).
TOPICS = ("cancel_order", "delivery_time", "discount_code", "order_status")


def _proposal(conversations: int = 90, seed: int = 3) -> Proposal:
    """A proposal with one candidate per synthetic topic of TOPICS: each request with the answer that followed it."""
    grouped: Dict[str, List[Example]] = {}
    for c in synthetic.generate(conversations, seed=seed):
        for position, (topic, text) in enumerate(c.requests, start=1):
            if topic not in TOPICS:
                continue
            turns = [t for t in c.turns]
            asked = next(i for i, t in enumerate(turns) if t.speaker == "customer" and t.text == text)
            answer = next((t.text for t in turns[asked + 1:] if t.speaker == "agent"), "")
            grouped.setdefault(topic, []).append(Example(id=f"{c.id}-{position}", text=text, answer=answer, conversation=c.id))
    kinds = {t.name: t for t in synthetic.TOPICS}
    candidates = [Candidate(id=f"c{n}", name=topic, examples=examples, kind=kinds[topic].kind,
                            response=kinds[topic].answers[0] if kinds[topic].kind == "question" else "")
                  for n, (topic, examples) in enumerate(sorted(grouped.items()), start=1)]
    return Proposal(generation=1, candidates=candidates)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", f"sqlite:///{tmp_path}/a.db")
    build_mod.get_settings.cache_clear()
    folder = tmp_path / "project"
    OnboardingProject(folder).write_proposal(_proposal())
    yield folder
    build_mod.get_settings.cache_clear()


def _accept(folder: Path, *ids: str) -> None:
    for candidate_id in ids:
        OnboardingProject(folder).decide({"action": "accept", "id": candidate_id}, by="test")


def test_synthetic_writes_every_format_and_labels_outside(tmp_path):
    out, labels = tmp_path / "t", tmp_path / "labels.csv"
    conversations = synthetic.generate(12, seed=1, topics=6)
    written = synthetic.write(out, labels, conversations)
    assert sorted(written) == sorted(synthetic.FILES.values()) and sum(written.values()) == 12
    rows = list(csv.DictReader(labels.open()))
    assert len(rows) == sum(len(c.requests) for c in conversations)
    assert {r["topic"] for r in rows} <= {t.name for t in synthetic.TOPICS[:6]}
    zendesk = json.loads((out / "synthetic_zendesk.json").read_text())
    roles = {u["id"]: u["role"] for u in zendesk["users"]}
    assert all("synthetic" in t["tags"] and roles[t["requester_id"]] == "end-user" for t in zendesk["tickets"])
    assert all(json.loads(line)["id"].startswith("synthetic-") for line in (out / "synthetic_conversations.jsonl").open())
    assert (out / "synthetic_transcripts.txt").read_text().startswith("# Synthetic transcripts")
    with pytest.raises(ValueError, match="outside the transcripts folder"):
        synthetic.write(out, out / "labels.csv", conversations)


def test_synthetic_is_seeded_and_has_personal_data_and_second_requests():
    a, b = synthetic.generate(80, seed=5), synthetic.generate(80, seed=5)
    assert [c.turns[0].text for c in a] == [c.turns[0].text for c in b]
    texts = " ".join(t.text for c in a for t in c.turns)
    assert "@example.com" in texts and "07700 900" in texts
    assert any(t.text in synthetic.DIDNT_HELP for c in a for t in c.turns)
    assert any(len(c.requests) == 2 for c in a) and any(c.rating for c in a)


def test_synthetic_cli_refuses_bad_arguments(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path / "t"), "--topics", "1"]) == 2
    assert "--topics" in capsys.readouterr().err
    assert synthetic.main(["--out", str(tmp_path / "t"), "--formats", "pdf"]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_refuses_fewer_than_two_intents(project, capsys):
    _accept(project, "c1")
    with pytest.raises(BuildError, match="at least two"):
        build(project, BuildOptions(train=False))
    assert main([str(project), "--no-train"]) == 2
    assert "cannot build" in capsys.readouterr().err
    assert not (project / "rasa").exists()


def test_refuses_bad_options_and_missing_proposal(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), "--no-train"]) == 2
    assert "no onboarding proposal" in capsys.readouterr().err
    with pytest.raises(BuildError, match="--holdout"):
        BuildOptions(holdout=1.5).check()


def test_writes_rasa_project_index_and_report_without_training(project):
    _accept(project, "c1", "c2", "c4")  # c3 (a question) stays proposed: its answered requests go to the index
    report = build(project, BuildOptions(train=False, epochs=1, trainable_layers=1))
    names = [i["name"] for i in report.intents]
    assert len(names) == 3 and report.model is None and report.coverage is None

    config = yaml.safe_load((project / "rasa" / "config.yml").read_text())
    parts = {p["name"]: p for p in config["pipeline"]}
    assert parts["nlu.TransformerIntentClassifier"]["epochs"] == 1
    assert parts["nlu.TransformerIntentClassifier"]["trainable_layers"] == 1
    assert parts["retrieval.AnswerRetriever"]["index_dir"] == str(project.resolve() / "index")
    assert "nlu.FrustrationReader" not in parts and "FallbackClassifier" in parts

    domain = yaml.safe_load((project / "rasa" / "domain.yml").read_text())
    state = OnboardingProject(project).reviewed()
    for c in (state.candidates[0], state.candidates[1], state.candidates[3]):
        text = domain["responses"][f"utter_{c.name}"][0]["text"]
        assert text == c.response if c.kind == "question" else "colleague" in text
    rules = yaml.safe_load((project / "rasa" / "data" / "rules.yml").read_text())["rules"]
    steps = {r["steps"][0]["intent"]: [s["action"] for s in r["steps"][1:]] for r in rules}
    assert steps["nlu_fallback"] == ["action_answer_from_history"] and steps["request_human"] == ["action_handoff"]
    for intent in report.intents:  # a question is answered; a task is handed to a person
        assert steps[intent["name"]] == [f"utter_{intent['name']}"] + (["action_handoff"] if intent["kind"] == "task" else [])
    assert {"action_answer_from_history", "action_rate_answer", "action_handoff"} <= set(domain["actions"])
    assert "handoff_reason" in domain["slots"] and "utter_handoff_queued" in domain["responses"]

    nlu = yaml.safe_load((project / "rasa" / "data" / "nlu.yml").read_text())["nlu"]
    trained = {b["intent"]: b["examples"] for b in nlu}
    for intent in report.intents:  # held-out examples are never trained on
        c = state.candidate(intent["candidate"])
        assert intent["held_out"] >= 1 and intent["train"] + intent["held_out"] == c.size
    records = [json.loads(line) for line in (project / "index" / "records.jsonl").open()]
    assert report.index_pairs == len(records) > 0
    rest = state.candidates[2]
    assert {r["id"] for r in records} <= {e.id for e in rest.examples}
    assert all(r["question"] not in trained.get(rest.name, "") for r in records)
    saved = json.loads((project / "onboarding" / "report.json").read_text())
    assert saved["intents"] == report.intents and (project / "onboarding" / "report.md").exists()


def test_task_answers_stay_out_of_the_index(project):
    state = OnboardingProject(project).reviewed()
    assert [c.kind for c in state.candidates] == ["task", "question", "question", "task"]
    _accept(project, "c2", "c3")
    report = build(project, BuildOptions(train=False))
    records = [json.loads(line) for line in (project / "index" / "records.jsonl").open()]
    tasks = {e.id for c in state.candidates if c.kind == "task" for e in c.examples}
    assert report.index_pairs == len(records) and not tasks & {r["id"] for r in records}


def test_small_and_mixed_candidates_are_left_out(project):
    proposal = OnboardingProject(project).proposal()
    for e in proposal.candidates[1].examples[:3]:  # delivery_time: a third of its examples far from the rest
        e.outlier = True
    OnboardingProject(project).write_proposal(proposal)
    for e in proposal.candidates[0].examples[3:]:  # cancel_order keeps three examples
        OnboardingProject(project).decide({"action": "move", "example": e.id, "to": "c4"})
    _accept(project, "c1", "c2", "c3", "c4")
    report = build(project, BuildOptions(train=False, min_examples=5))
    reasons = {c["candidate"]: c["reason"] for c in report.left_out}
    assert set(reasons) == {"c1", "c2"} and [i["candidate"] for i in report.intents] == ["c3", "c4"]
    assert reasons["c1"].startswith("too small") and reasons["c2"] == f"too mixed: 3 of {proposal.candidates[1].size} examples are outliers"
    with pytest.raises(BuildError, match="at least two"):
        build(project, BuildOptions(train=False, min_cohesion=0.99))


def test_cohesion_separates_one_topic_from_a_mixture():
    from retrieval.index import AnswerIndex

    encode = AnswerIndex(encoder="bundled").encode
    one = ["how long does delivery take", "what are your delivery times", "how quickly do you deliver",
           "how many days until my sofa is delivered"]
    mixed = [t.requests[0] for t in synthetic.TOPICS]  # one request of each topic
    tight, loose = build_mod.cohesion(encode(one)), build_mod.cohesion(encode(mixed))
    assert tight > BuildOptions().min_cohesion + 0.1 and loose < BuildOptions().min_cohesion
    candidate = Candidate(id="c9", name="mixed", examples=[Example(str(i), t) for i, t in enumerate(mixed * 2)],
                          response="x")
    assert build_mod.leave_out_reason(candidate, loose, BuildOptions(min_cohesion=loose + 0.1)).startswith("too mixed")
    assert build_mod.leave_out_reason(candidate, tight, BuildOptions()) is None


def test_evaluation_counts_intents_and_index_hits():
    intents = [build_mod.Intent("a", "question", "c1", "A", [], [Example("1", "x"), Example("2", "y")], 0.8),
               build_mod.Intent("b", "task", "c2", "", [], [Example("3", "z")], 0.8)]
    rest = [Example("4", "w"), Example("5", "v")]
    answers = {"x": ("a", 0.0), "y": ("nlu_fallback", 0.9), "z": ("b", 0.0), "w": ("nlu_fallback", 0.7),
               "v": ("nlu_fallback", 0.3)}

    def parse(texts):
        return [{"intent": {"name": answers[t][0]}, "retrieval": {"hits": [{"score": answers[t][1]}]}} for t in texts]

    result = build_mod.evaluate(parse, intents, rest, retrieval_threshold=0.55)
    assert result["intent_accuracy"] == pytest.approx(2 / 3)
    assert result["coverage_by_intent"] == pytest.approx(2 / 5) and result["coverage_by_index"] == pytest.approx(2 / 5)
    assert result["coverage"] == pytest.approx(4 / 5)
    assert [r["answered"] for r in result["requests"]] == ["intent", "index", "intent", "index", None]
    assert [r["intent"] for r in result["requests"]] == ["a", "a", "b", None, None]


def test_cli_prints_the_table_and_where_it_wrote(project, capsys):
    _accept(project, "c1", "c2")
    assert main([str(project), "--no-train", "--holdout", "0.25", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "| intents built | 2 |" in out and "not trained" in out and str(project / "rasa") in out
    assert main([str(project), "--no-train", "--holdout", "2"]) == 2
    assert "--holdout" in capsys.readouterr().err


def test_failed_training_keeps_the_previous_project(project, monkeypatch, capsys):
    _accept(project, "c1", "c2")
    build(project, BuildOptions(train=False))
    before = (project / "rasa" / "data" / "nlu.yml").read_text()
    _accept(project, "c3")

    def broken(rasa_dir, out):
        (out / "half.tar.gz").write_text("half")
        raise RuntimeError("rasa train failed (exit 1)")

    monkeypatch.setattr(build_mod, "train", broken)
    assert main([str(project)]) == 1
    assert "rasa train failed" in capsys.readouterr().err
    assert (project / "rasa" / "data" / "nlu.yml").read_text() == before and not (project / "models").exists()
    assert not [p for p in project.iterdir() if p.name.startswith(".")]


def test_small_talk_only_in_english():
    intent = build_mod.Intent("delivery_time", "question", "c1", "Three days.", [Example("1", "when")], [], 0.8)
    assert "greet" in build_mod.domain([intent], "en-GB")["intents"]
    german = build_mod.domain([intent], "de")
    assert "greet" not in german["intents"] and "utter_greet" not in german["responses"]
    assert [b["intent"] for b in build_mod.nlu_data([intent], "de")["nlu"]] == ["delivery_time"]
