"""`python -m training.onboard review PROJECT ...`: every command on a small proposal, and its refusals."""
from __future__ import annotations

import pytest

from core.onboarding import OnboardingProject, flags
from tests.onboarding_proposal import write_small_proposal
from training.onboard import review


@pytest.fixture
def project(tmp_path) -> OnboardingProject:
    return write_small_proposal(tmp_path / "acme")


def run(project: OnboardingProject, *args: str, by: str = "rita"):
    """review.main on `project` as `by`; (exit code)."""
    return review.main([str(project.folder), *args, *(["--by", by] if by and args[0] not in ("list", "show", "history") else [])])


def test_list_shows_every_candidate_with_flags_estimate_and_words(project, capsys):
    assert run(project, "list") == 0
    out = capsys.readouterr().out
    assert "generation 1: 5 candidates (5 proposed, 0 accepted, 0 discarded)" in out
    assert "Discovery estimated 5 intents (likely between 4 and 7), by silhouette." in out
    assert "files 2, conversations 31, requests 25, skipped 1" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:2] in ("c1", "c2", "c3", "c4", "c5")}
    assert set(rows) == {"c1", "c2", "c3", "c4", "c5"}
    assert "near-duplicate of c2" in rows["c1"] and "many outliers (2)" in rows["c1"]
    assert "near-duplicate of c1" in rows["c2"] and "small" in rows["c4"] and "0.83" in rows["c3"]
    assert "open, hours, close" in rows["c3"] and "task" in rows["c4"]


def test_show_lists_examples_outliers_response_alternatives_evidence_and_spans(project, capsys):
    assert run(project, "show", "c1") == 0
    out = capsys.readouterr().out
    assert "  * l7  update my postal address   [chats.jsonl:21]" in out and "    l1  I lost my card" in out
    assert "agents asked for the card's last four" in out and "Please freeze the card in the app." in out
    assert run(project, "show", "c3") == 0 and "  2. Mon-Fri 9-5" in capsys.readouterr().out
    assert run(project, "show", "c4") == 0
    out = capsys.readouterr().out
    assert "order number: 12345 (1x)" in out and "amount: 20 EUR (1x)" in out


def test_each_change_is_one_decision_by_the_named_reviewer(project, capsys, tmp_path):
    assert run(project, "rename", "c3", "opening_times") == 0
    assert run(project, "response", "c3", "We open at nine.") == 0
    answer = tmp_path / "answer.txt"
    answer.write_text("Freeze it in the app, then call us.\n", encoding="utf-8")
    assert run(project, "response", "c1", "--file", str(answer)) == 0
    assert run(project, "split", "c1", "--examples", "l6,l7", "--name", "change_address") == 0
    assert run(project, "merge", "c1", "c2", "--name", "lost_or_stolen_card") == 0
    assert run(project, "move", "r3", "--to", "c1") == 0
    assert run(project, "kind", "c5", "task") == 0
    assert run(project, "discard", "c4") == 0 and run(project, "reopen", "c4") == 0
    assert run(project, "accept", "c1", "c3") == 0
    out = capsys.readouterr().out
    assert "Split 2 examples of c1 into c6 (change_address)." in out and "Merged c2 into c1." in out
    state = project.reviewed()
    c1, c3 = state.candidate("c1"), state.candidate("c3")
    assert (c1.name, c1.status, c1.response) == ("lost_or_stolen_card", "accepted", "Freeze it in the app, then call us.")
    assert [e.id for e in c1.examples] == ["l1", "l2", "l3", "l4", "l5", "s1", "s2", "s3", "s4", "s5", "r3"]
    assert (c3.name, c3.response) == ("opening_times", "We open at nine.")
    assert [e.id for e in state.candidate("c6").examples] == ["l6", "l7"]
    # A reviewer's placement clears the outlier marks (they measured distance to c1's centre);
    # a discarded candidate carries no flags.
    assert not any(e.outlier for e in state.candidate("c6").examples) and flags(state, state.candidate("c6")) == ["small"]
    assert flags(state, state.candidate("c2")) == []
    assert state.candidate("c2").status == "discarded" and state.candidate("c5").kind == "task"
    decisions = project.decisions()
    assert len(decisions) == 11 and {d["by"] for d in decisions} == {"rita"}
    assert run(project, "history") == 0
    history = capsys.readouterr().out
    assert history.count("rita") == 11 and "new_id=c6" in history and "ids=c1,c2" in history


def test_accept_all_accepts_proposed_candidates_of_the_minimum_size_one_decision_each(project, capsys):
    assert run(project, "discard", "c5") == 0
    assert run(project, "accept-all", "--min-size", "5") == 0
    state = project.reviewed()
    assert {c.id: c.status for c in state.candidates} == {
        "c1": "accepted", "c2": "accepted", "c3": "accepted", "c4": "proposed", "c5": "discarded"}
    assert [d["action"] for d in project.decisions()] == ["discard", "accept", "accept", "accept"]
    capsys.readouterr()
    assert run(project, "accept-all", "--min-size", "50") == 0
    assert "nothing to do" in capsys.readouterr().out and len(project.decisions()) == 4


def test_the_reviewer_defaults_to_the_user(project, monkeypatch):
    monkeypatch.setenv("USER", "sam")
    assert review.main([str(project.folder), "accept", "c3"]) == 0
    assert project.decisions()[0]["by"] == "sam"
    assert review.main([str(project.folder), "--by", "kim", "discard", "c4"]) == 0  # --by before the command too
    assert project.decisions()[1]["by"] == "kim"


@pytest.mark.parametrize("args, message", [
    (("show", "c9"), "no candidate intent 'c9'"),
    (("rename", "c1", "Lost Card!"), "intent name 'Lost Card!' must be 2-64 characters"),
    (("rename", "c1", "stolen_card"), "already used by candidate c2"),
    (("rename", "c1", "greet"), "reserved"),
    (("merge", "c1"), "merge needs two or more different candidate ids"),
    (("split", "c1", "--examples", "h1", "--name", "x_y"), "examples h1 are not in candidate c1"),
    (("move", "zz", "--to", "c1"), "no example 'zz'"),
    (("response", "c3", "  "), "a response needs its text"),
    (("response", "c3"), "either as TEXT or with --file F"),
    (("response", "c3", "--file", "/nonexistent/answer.txt"), "/nonexistent/answer.txt: cannot read the response"),
])
def test_a_decision_that_cannot_apply_says_why_exits_2_and_records_nothing(project, capsys, args, message):
    assert run(project, *args) == 2
    assert message in capsys.readouterr().err
    assert project.decisions() == []


def test_bad_usage_and_a_missing_project_exit_2_with_a_message(tmp_path, capsys):
    assert review.main([str(tmp_path), "list"]) == 2
    assert "no onboarding proposal in" in capsys.readouterr().err
    assert review.main([str(tmp_path), "frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
    assert review.main([str(tmp_path), "kind", "c1", "form"]) == 2
    assert review.main([str(tmp_path)]) == 2
