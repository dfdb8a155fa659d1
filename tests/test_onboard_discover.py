"""Discovery of candidate intents (training.onboard.cluster, describe, discover) and its benchmark's scoring."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.onboarding import OnboardingProject
from training import bench_discovery
from training.onboard import cluster, describe, discover

FIXTURES = Path(__file__).parent / "fixtures" / "onboarding" / "good"


def blobs(groups: int, per: int, dim: int = 32, spread: float = 0.08, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    rows = np.concatenate([c + spread * np.linalg.norm(c) * rng.normal(size=(per, dim)) for c in centres])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype("float32"), np.repeat(np.arange(groups), per)


def test_the_number_of_groups_is_estimated_from_the_requests_themselves():
    vectors, truth = blobs(groups=7, per=25)
    found = cluster.cluster_requests(vectors, seed=0)
    assert found.k == 7 and found.low <= 7 <= found.high
    assert bench_discovery.scores(truth, found.labels)["acc"] == pytest.approx(1.0)
    assert [cut for cut, _ in found.scores] == [cluster.LINKAGE_CUT_RANGE[0], cluster.LINKAGE_CUT,
                                               cluster.LINKAGE_CUT_RANGE[1]]


def test_a_given_number_of_intents_is_used_as_given():
    vectors, _ = blobs(groups=4, per=10)
    found = cluster.cluster_requests(vectors, k=3)
    assert found.k == 3 and found.method == "given" and len(set(found.labels.tolist())) == 3


def test_smoothing_keeps_rows_normalised_and_handles_tiny_inputs():
    vectors, _ = blobs(groups=2, per=5)
    out = cluster.smooth(vectors, neighbours=3)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    one = vectors[:1]
    assert cluster.smooth(one) is one
    assert cluster.cluster_requests(vectors[:1]).k == 1


def test_clustering_accuracy_matches_clusters_to_intents_one_to_one():
    truth = np.array([0, 0, 1, 1, 2, 2])
    assert bench_discovery.clustering_accuracy(truth, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert bench_discovery.clustering_accuracy(truth, np.array([0, 0, 0, 0, 1, 1])) == pytest.approx(4 / 6)


def test_telling_words_are_particular_to_their_cluster_and_skip_redacted_placeholders():
    words = describe.telling_words([
        ["where is my parcel [PHONE]", "my parcel has not arrived", "parcel tracking please"],
        ["I forgot my password", "reset my password", "password reset link [NAME]"],
    ], "en")
    assert words[0][0] == "parcel" and words[1][0] == "password"
    assert not any(w in ("phone", "name") for ws in words for w in ws)
    assert describe.without_placeholders("call me on [PHONE] please") == "call me on please"
    assert describe.without_placeholders("[NAME]") == "[NAME]"


def test_intent_names_are_unique_rasa_names_with_a_fallback_for_other_scripts():
    taken: set = set()
    assert describe.intent_name(["parcel", "tracking"], taken, "intent_1") == "parcel_tracking"
    assert describe.intent_name(["parcel", "tracking"], taken, "intent_2") == "parcel_tracking_2"
    assert describe.intent_name(["退款", "多久"], taken, "intent_3") == "intent_3"


def test_a_task_is_told_from_a_question_by_what_the_agents_did():
    task, evidence = describe.kind_of(
        ["Could you confirm your order number?", "I've cancelled it for you.", "Let me check that order."],
        None, [2, 3, 2], "en")
    assert task == "task" and any("more than one agent reply" in e for e in evidence)
    same = np.ones((3, 3), dtype="float32") / np.sqrt(3)
    question, evidence = describe.kind_of(["Refunds take 5 days."] * 3, same[:, :], [1, 1, 1], "en")
    assert question == "question" and any("alike" in e for e in evidence)
    assert describe.kind_of([], None, [], "en")[0] == "task"


def test_the_draft_is_the_most_typical_well_rated_answer():
    answers = ["Refunds take 5 working days.", "Refunds take five working days.", "Try turning it off and on."]
    vectors = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype="float32")
    draft, alternatives = describe.typical_answers(answers, vectors, [1.0, None, 0.0])
    assert draft == answers[0] and alternatives == [answers[2]]
    assert describe.typical_answers([], None, []) == ("", [])


def test_entity_looking_spans_are_counted_by_kind():
    spans = describe.entity_spans(["I paid £25.50 on 3 March for order LH-123456", "charged $10 yesterday at 5pm",
                                   "20% off code"])
    kinds = {s["kind"]: s for s in spans}
    assert kinds["amount"]["count"] == 2 and "£25.50" in kinds["amount"]["examples"]
    assert {"date", "order number", "time", "percentage"} <= set(kinds)


@pytest.fixture(scope="module")
def discovered(tmp_path_factory):
    """Discovery over the fixture history, as the command line runs it."""
    project = tmp_path_factory.mktemp("onboarding") / "project"
    assert discover.main(["--transcripts", str(FIXTURES), "--out", str(project)]) == 0
    return project


def test_discovery_writes_a_proposal_of_described_candidates(discovered):
    proposal = OnboardingProject(discovered).proposal()
    assert proposal.generation == 1 and proposal.candidates
    assert proposal.estimate["k"] == len(proposal.candidates)
    assert proposal.summary["requests"] == sum(c.size for c in proposal.candidates)
    for c in proposal.candidates:
        assert c.status == "proposed" and c.origin == "new" and c.kind in ("question", "task")
        assert c.kind_evidence and c.name and 0 < c.cohesion <= 1.0001
    assert any(c.response for c in proposal.candidates if c.kind == "question")


def test_a_second_run_starts_from_the_review_and_proposes_only_what_is_new(discovered, tmp_path):
    project = OnboardingProject(discovered)
    first = project.proposal()
    kept = first.candidates[0]
    project.decide({"action": "rename", "id": kept.id, "name": "reviewed_intent"}, by="sam")
    project.decide({"action": "accept", "id": kept.id}, by="sam")
    more = tmp_path / "more"
    shutil.copytree(FIXTURES, more / "old")
    (more / "new.jsonl").write_text(json.dumps({"id": "new-1", "turns": [
        {"speaker": "customer", "text": kept.examples[0].text + " please"},
        {"speaker": "agent", "text": "Here is how."}]}) + "\n", encoding="utf-8")
    assert discover.main(["--transcripts", str(more), "--out", str(discovered)]) == 0
    second = project.proposal()
    assert second.generation == 2
    carried = second.candidate(kept.id)
    assert (carried.name, carried.status, carried.origin) == ("reviewed_intent", "accepted", "reviewed")
    assert "new-1/0" in {e.id for e in carried.examples}
    assert second.summary["requests already reviewed"] == first.summary["requests"]
    assert len(project.decisions()) == 2 and project.decisions(2) == []
    assert project.reviewed().candidate(kept.id).status == "accepted"


def test_discovery_refuses_a_missing_folder_and_a_history_without_requests(tmp_path, capsys):
    assert discover.main(["--transcripts", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p")]) == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "agent_only.txt").write_text("Agent: hello?\n", encoding="utf-8")
    assert discover.main(["--transcripts", str(tmp_path / "empty"), "--out", str(tmp_path / "p")]) == 2
    assert "no customer requests" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_the_benchmark_prints_both_systems_on_a_small_labelled_set(tmp_path, capsys):
    rows = ["text,category"] + [f"{t},{c}" for t, c in [
        ("I lost my card", "lost"), ("my card is lost", "lost"), ("lost card help", "lost"),
        ("can't find my card anywhere", "lost"), ("card went missing", "lost"),
        ("what is the exchange rate", "rate"), ("exchange rate for euros", "rate"), ("current fx rate", "rate"),
        ("how much is a dollar in pounds", "rate"), ("rate to convert currency", "rate"),
    ]]
    data = tmp_path / "labelled.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert bench_discovery.main(["--data", str(data), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "k-means, frozen encoder, true number of intents" in out and "ours (neighbour-smoothed" in out
    report = json.loads((tmp_path / "out" / "discovery.json").read_text())
    assert report["true_intents"] == 2 and len(report["rows"]) == 3


def test_candidates_meaning_nearly_the_same_are_flagged_as_near_duplicates():
    from core.onboarding import Candidate

    candidates = [Candidate(id=f"c{i}", name=f"n{i}", examples=[]) for i in (1, 2, 3)]
    centres = np.array([[1.0, 0.0], [0.95, 0.312], [0.0, 1.0]], dtype="float32")
    discover.flag_near_duplicates(candidates, centres)
    assert [c.near_duplicates for c in candidates] == [["c2"], ["c1"], []]
