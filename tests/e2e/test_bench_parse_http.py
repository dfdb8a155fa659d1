"""training.bench_parse_http against the session's trained demo model: a real `rasa run --enable-api`, timed."""
from __future__ import annotations

import json

import pytest

from training import bench_parse_http

pytestmark = pytest.mark.e2e


def test_the_benchmark_times_parses_through_the_http_api(trained_model, tmp_path, capsys, monkeypatch):
    for name, value in trained_model["env"].items():  # the session's index, database and secrets
        if name.startswith("ASSISTANT_"):
            monkeypatch.setenv(name, value)
    queries = tmp_path / "questions.csv"
    queries.write_text("text\nI lost my card\nhow do I top up\nwhat is the exchange rate\n", encoding="utf-8")
    assert bench_parse_http.main(["--queries", str(queries), "--model", str(trained_model["model"]),
                                  "--systems", "ours", "--messages", "6", "--warmup", "2", "--precisions", "fp32",
                                  "--in-turn", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| ours (fp32) | 6 | 0 |" in out and "| ours (fp32, models in turn) | 6 | 0 |" in out
    rows = json.loads((tmp_path / "out" / "parse_http.json").read_text())["rows"]
    assert [r["env"].get("ASSISTANT_PARSE_ALONGSIDE") for r in rows] == [None, "0"]
    assert all(r["p50"] > 0 and r["errors"] == 0 for r in rows)


def test_unknown_systems_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench_parse_http.main(["--queries", str(tmp_path / "q.csv"), "--systems", "nonsense"])
