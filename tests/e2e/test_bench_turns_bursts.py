"""bot.bench_turns and bot.bench_load's bursts against the session's trained demo model, on real servers (tiny runs)."""
from __future__ import annotations

import json

import pytest

from bot import bench_load, bench_turns

pytestmark = pytest.mark.e2e


@pytest.fixture
def session_env(trained_model, monkeypatch):
    for name, value in trained_model["env"].items():  # the session's index, database and secrets
        if name.startswith("ASSISTANT_"):
            monkeypatch.setenv(name, value)
    return trained_model


def test_cost_per_turn_is_measured_on_a_real_server(session_env, tmp_path, capsys):
    assert bench_turns.main(["--systems", "ours", "--conversations", "2", "--turns", "6", "--at", "2,6",
                             "--window", "2", "--warmup", "0", "--model", str(session_env["model"]),
                             "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| ours |" in out and "turn 6 / turn 2" in out
    row = json.loads((tmp_path / "turns.json").read_text())[0]
    assert len(row["rounds"]) == 6 and row["errors"] == 0
    assert all(r["latency_ms"] > 0 for r in row["rounds"])


def test_bursts_are_offered_and_summarised(session_env, tmp_path, capsys):
    assert bench_load.main(["--systems", "ours", "--rate", "4", "--customers", "8", "--duration", "8",
                            "--burst-rate", "16", "--burst-seconds", "2", "--burst-every", "6",
                            "--model", str(session_env["model"]), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Bursts, ours" in out and "refused (503)" in out
    row = json.loads((tmp_path / "load.json").read_text())[0]
    assert row["errors"] == 0 and [b["start"] for b in row["burst"]["bursts"]] == [3.0]
