"""training.bench_parse_http without servers: which servers a run starts, and the table it prints."""
from __future__ import annotations

import pytest

from training.bench_parse_http import main, runs, table


def test_ours_is_served_once_per_precision_and_in_turn_when_asked(monkeypatch):
    monkeypatch.setattr("core.encoder.cpu_has_bf16", lambda: True)
    monkeypatch.delenv("ASSISTANT_INFERENCE_PRECISION", raising=False)
    planned = runs(["ours", "stock-rasa-diet"], "auto,fp32", in_turn=True)
    assert [(s + v) for s, v, _ in planned] == [
        "ours (bf16)", "ours (bf16, models in turn)", "ours (fp32)", "ours (fp32, models in turn)", "stock-rasa-diet"]
    assert planned[1][2] == {"ASSISTANT_INFERENCE_PRECISION": "bf16", "ASSISTANT_PARSE_ALONGSIDE": "0"}
    assert planned[2][2] == {"ASSISTANT_INFERENCE_PRECISION": "fp32"} and planned[4][2] == {}
    monkeypatch.setattr("core.encoder.cpu_has_bf16", lambda: False)
    assert [v for _, v, _ in runs(["ours"], "auto", in_turn=False)] == [" (fp32)"], "auto is what the CPU gets"


def test_the_table_and_an_unknown_system():
    row = {"system": "ours (bf16)", "messages": 300, "errors": 0, "p50": 9.04, "p95": 12.0, "p99": 15.55, "mean": 9.5}
    assert table([row]).splitlines()[-1] == "| ours (bf16) | 300 | 0 | 9.0 ms | 12.0 ms | 15.6 ms | 9.5 ms |"
    with pytest.raises(SystemExit):
        main(["--systems", "ours,nobody"])
