"""bot.bench_soak and bot.bench_replicas on real PostgreSQL, Redis, nginx and servers (tiny runs of the documented commands)."""
from __future__ import annotations

import json

import pytest

from bot import bench_replicas, bench_soak, load_mix
from bot.local_services import ServiceUnavailable, postgres_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def session_env(trained_model, monkeypatch, tmp_path):
    for name, value in trained_model["env"].items():  # the session's index, database and secrets
        if name.startswith("ASSISTANT_"):
            monkeypatch.setenv(name, value)
    # Real customer questions stand in for BANKING77's test split (not in the clone).
    questions = tmp_path / "questions.csv"
    questions.write_text("text\nI lost my card\nhow do I top up\nwhat is the exchange rate\nwhy was I charged twice\n"
                         "my transfer failed\ncan I get a virtual card\n", encoding="utf-8")
    monkeypatch.setattr(load_mix, "BANKING77_TEST", questions)
    try:
        with postgres_server():
            pass
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
    return trained_model


def test_a_short_soak_samples_memory_connections_descriptors_and_latency(session_env, tmp_path, capsys):
    out = tmp_path / "soak"
    bench_soak.main(["--rate", "3", "--customers", "10", "--duration", "40", "--sample-seconds", "10",
                     "--long-customers", "1", "--long-turns", "6", "--model", str(session_env["model"]),
                     "--out", str(out)])
    report = (out / "soak.md").read_text()
    assert "Short run" in report and "RSS, Rasa server tree" in report and "PostgreSQL client connections" in report
    data = json.loads((out / "soak.json").read_text())
    assert data["totals"]["errors"] == 0 and data["totals"]["messages"] > 60
    assert (out / "soak.png").stat().st_size > 1000 and len((out / "samples.csv").read_text().splitlines()) >= 4


def test_two_replicas_behind_nginx_share_two_action_servers(session_env, tmp_path, capsys):
    out = tmp_path / "replicas"
    assert bench_replicas.main(["--replicas", "2", "--action-servers", "2", "--rates", "3", "--customers", "10",
                                "--duration", "15", "--long-customers", "1", "--long-turns", "6",
                                "--model", str(session_env["model"]), "--out", str(out)]) == 0
    data = json.loads((out / "replicas.json").read_text())
    assert len(data["rows"]) == 1 and data["rows"][0]["errors"] == 0 and data["rows"][0]["messages"] > 20
    assert "sizing" in data and (out / "replicas.md").read_text().strip()


def test_rates_of_a_support_day_run_each_on_fresh_servers(session_env, tmp_path, capsys):
    from bot import bench_load

    assert bench_load.main(["--systems", "ours", "--mix", "support-day", "--rates", "3,5", "--customers", "10",
                            "--duration", "6", "--long-customers", "1", "--long-turns", "6",
                            "--model", str(session_env["model"]), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Traffic (support-day mix" in out and "Highest offered rate with p95 under 100 ms" in out
    rows = json.loads((tmp_path / "load.json").read_text())
    assert [r["rate"] for r in rows] == [3.0, 5.0] and all(r["errors"] == 0 for r in rows)
    assert (tmp_path / "metrics-ours-3-rasa.txt").exists()
