"""training.bench_parse_http against the session's trained demo model: a real `rasa run --enable-api`, timed."""
from __future__ import annotations

import json
import subprocess
import time

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


def test_rasa_s_floor_row_trains_a_pipeline_that_only_splits_words_and_times_it(tmp_path, capsys):
    """The floor: Rasa's cheapest pipeline, trained on the demo's NLU data in the run, served and timed."""
    queries = tmp_path / "questions.csv"
    queries.write_text("text\nI lost my card\nhello\nwhat is the exchange rate\n", encoding="utf-8")
    assert bench_parse_http.main(["--queries", str(queries), "--systems", "rasa-floor", "--messages", "4",
                                  "--warmup", "1", "--out", str(tmp_path / "out")]) == 0
    assert "| rasa-floor | 4 | 0 |" in capsys.readouterr().out


def test_a_model_that_does_not_load_fails_at_once_and_leaves_no_server(tmp_path):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a model archive" * 50)
    queries = tmp_path / "questions.csv"
    queries.write_text("text\nhello\n", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="serves no model|exited"):
        bench_parse_http.main(["--queries", str(queries), "--model", str(broken), "--systems", "ours",
                               "--messages", "2", "--warmup", "1", "--out", str(tmp_path / "out")])
    assert time.monotonic() - started < 300  # it used to wait out the 10-minute start timeout
    left = subprocess.run(["pgrep", "-f", f"rasa run .*--model {broken}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""
