"""The soak benchmark's parts without servers: the growth rule, samples.csv, the plot, the /proc readers, the sampler."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from argparse import Namespace

import pytest

from bot.bench_load import REFUSED, Result
from bot.bench_soak import (
    COLUMNS,
    Sampler,
    SampleWriter,
    Windows,
    fd_count,
    growth,
    plot,
    process_trees,
    pss_mb,
    read_samples,
    report,
    rss_mb,
)


def series(values, every=60):
    """Samples with `rss_rasa_mb` = values, one every `every` seconds from `every` on."""
    return [{"t_s": every * (i + 1), "rss_rasa_mb": v} for i, v in enumerate(values)]


def test_a_flat_series_over_two_hours_passes_and_is_judged_on_the_last_hour_only():
    g = growth(series([300.0] * 120), "rss_rasa_mb")
    assert g["passed"] is True and g["growth_pct"] == 0 and not g["short"]
    assert g["window"] == 5 and g["from_s"] == 3600 and g["to_s"] == 7200 and g["samples"] == 61


def test_ten_percent_growth_in_the_last_hour_fails_and_warm_up_before_it_does_not_count():
    warm_up = [100.0 + i for i in range(60)]  # +59 % in the first hour: outside the window judged
    ramp = [200.0 + 20.0 * i / 60 for i in range(61)]  # +10 % over the last hour's 61 samples
    g = growth(series(warm_up[:-1] + ramp), "rss_rasa_mb")
    assert g["trend_from"] == pytest.approx(200.0) and g["trend_to"] == pytest.approx(220.0)
    assert g["growth_pct"] == pytest.approx(10.0) and g["passed"] is False
    assert growth(series(warm_up + [200.0] * 60), "rss_rasa_mb")["passed"] is True
    assert growth(series([200.0] * 60 + [180.0] * 60), "rss_rasa_mb")["passed"] is True, "shrinking is no growth"
    step = growth(series(warm_up + [200.0] * 30 + [220.0] * 30), "rss_rasa_mb")  # a step half-way through the hour
    assert step["first"] == 200 and step["last"] == 220 and step["endpoint_pct"] == pytest.approx(10.0)
    assert step["passed"] is False


def test_a_busy_count_swinging_by_a_few_passes_and_a_slow_leak_of_it_fails():
    import random

    rng = random.Random(7)
    # An action server's descriptors in the 2-hour run: 21 to 30 throughout, with the connections in flight.
    noisy = [float(rng.choice([21, 22, 22, 22, 23, 23, 24, 25, 26, 30])) for _ in range(120)]
    noisy[60:65], noisy[-5:] = [22.0, 23.0, 23.0, 22.0, 23.0], [26.0, 25.0, 26.0, 30.0, 26.0]  # unlucky ends
    g = growth([{"t_s": 60 * (i + 1), "fds_actions": v} for i, v in enumerate(noisy)], "fds_actions")
    assert g["endpoint_pct"] > 10 and abs(g["growth_pct"]) <= 5 and g["passed"] is True
    leaking = [v + i // 5 for i, v in enumerate(noisy)]  # one more descriptor held every 5 minutes
    assert growth([{"t_s": 60 * (i + 1), "fds_actions": v} for i, v in enumerate(leaking)], "fds_actions")["passed"] is False


def test_a_line_up_to_the_limit_passes_and_the_limit_can_be_changed():
    values = [100.0] * 59 + [100.0 + 5.0 * i / 60 for i in range(61)]  # the last hour: a line from 100 to 105
    assert growth(series(values), "rss_rasa_mb")["growth_pct"] == pytest.approx(5.0)
    assert growth(series(values), "rss_rasa_mb", limit_pct=5.001)["passed"] is True
    assert growth(series(values), "rss_rasa_mb", limit_pct=4.0)["passed"] is False


def test_a_short_run_uses_the_whole_run_with_half_windows_and_says_it_was_short():
    g = growth(series([10.0, 10.0, 10.0, 11.0, 11.0, 11.0], every=20), "rss_rasa_mb")
    assert g["short"] is True and g["samples"] == 6 and g["window"] == 3 and g["endpoint_pct"] == pytest.approx(10.0)
    assert g["from_s"] == 20 and g["to_s"] == 120 and g["growth_pct"] > 5 and not g["passed"]
    assert growth(series([5.0]), "rss_rasa_mb")["passed"] is None, "one sample judges nothing"
    assert growth([], "rss_rasa_mb")["passed"] is None


def test_windows_without_a_value_are_skipped_and_a_rise_from_zero_fails():
    samples = series([None, 50.0, float("nan"), 50.0, "", 50.0, 50.0])
    g = growth(samples, "rss_rasa_mb")
    assert g["samples"] == 4 and g["passed"] is True
    assert growth(series([0.0, 0.0, 1.0, 1.0]), "rss_rasa_mb")["passed"] is False


def test_samples_csv_is_rewritten_whole_at_every_row_and_reads_back(tmp_path):
    path = tmp_path / "samples.csv"
    writer = SampleWriter(path)
    writer.add({"t_s": 60, "scheduled": 1800, "p95_ms": 41.5, "pg_conn_total": None, "not_a_column": 1})
    first = path.read_text()
    writer.add({"t_s": 120, "scheduled": 1795, "p95_ms": 43.0, "pg_conn_total": 9})
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == COLUMNS and len(lines) == 3 and path.read_text().startswith(first)
    rows = read_samples(path)
    assert rows[0]["t_s"] == 60 and rows[0]["p95_ms"] == 41.5 and rows[0]["pg_conn_total"] is None
    assert rows[1]["pg_conn_total"] == 9 and [p.name for p in tmp_path.iterdir()] == ["samples.csv"]


def test_the_plot_is_a_png_of_the_four_panels(tmp_path):
    samples = [{"t_s": 60 * i, "rss_rasa_mb": 900 + i, "rss_actions_mb": 300, "rss_postgres_mb": 200, "pss_postgres_mb": 80,
                "rss_driver_mb": 150, "fds_rasa": 60, "fds_actions": 30, "fds_postgres": 200, "fds_driver": 40,
                "pg_conn_total": 9, "pg_conn_tracker": 5, "pg_conn_app": 4,
                "p50_ms": 30, "p95_ms": None if i == 2 else 80, "p99_ms": 120} for i in range(1, 6)]
    path = plot(samples, tmp_path / "soak.png", last_seconds=120)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["soak.png"]


def test_the_readers_see_this_process_and_its_children():
    me = [os.getpid()]
    assert 10 < rss_mb(me) < 20_000 and pss_mb(me) > 0
    before = fd_count(me)
    with open(__file__) as _a, open(__file__) as _b:
        assert fd_count(me) == before + 2
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_trees({"me": os.getpid()})["me"]
        assert rss_mb([os.getpid(), child.pid]) > rss_mb(me)
    finally:
        child.kill()
        child.wait()
    assert rss_mb([2 ** 22 + 7]) is None and fd_count([2 ** 22 + 7]) is None, "a process that is gone reads as no value"


def test_results_are_counted_in_the_window_they_were_scheduled_in():
    windows = Windows(60, [1.0, 30.0, 59.0, 61.0, 200.0])
    windows.add(Result(40.0, True, at=1.0))
    windows.add(Result(30000.0, False, "timeout", at=30.0))
    windows.add(Result(2.0, False, REFUSED, at=59.0))
    windows.add(Result(50.0, True, at=61.0))
    first = windows.take(0)
    assert first["scheduled"] == 3 and (first["answered"], first["errors"], first["refused"]) == (1, 1, 1)
    assert first["p99_ms"] > 25_000
    assert windows.take(1)["p50_ms"] == 50.0 and windows.take(3)["p95_ms"] is None
    total = windows.summary()
    assert total["messages"] == 4 and total["errors"] == 1 and total["error_kinds"] == {"timeout": 1}


def test_the_sampler_writes_each_window_once_its_answers_are_in_and_stops_on_a_dead_server(tmp_path):
    windows = Windows(0.05, [0.01, 0.06])
    writer = SampleWriter(tmp_path / "samples.csv")
    probes = []
    sampler = Sampler(windows, lambda: probes.append(1) or {"rss_rasa_mb": 1.0}, writer, time.monotonic(), grace=0.0)
    windows.add(Result(10.0, True, at=0.01))
    windows.add(Result(20.0, True, at=0.06))
    sampler.start()
    deadline = time.monotonic() + 10
    while sampler.probed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.finish(windows_planned=2)
    rows = read_samples(tmp_path / "samples.csv")
    assert [r["answered"] for r in rows[:2]] == [1, 1] and [r["p50_ms"] for r in rows[:2]] == [10.0, 20.0]

    stopped = []
    dying = Sampler(Windows(0.02, []), lambda: {}, SampleWriter(tmp_path / "b.csv"), time.monotonic(), 0.0,
                    check=lambda: "the Rasa server exited with code -9")
    dying.on_failure = lambda: stopped.append(True)
    dying.start()
    dying.join(timeout=10)
    assert stopped == [True] and "exited" in dying.failure


def test_the_report_of_a_short_run_says_so_and_writes_markdown_json_and_png(tmp_path):
    args = Namespace(rate=3.0, customers=20, duration=120.0, sample_seconds=20.0, timeout=30.0, seed=0, precision="fp32",
                     long_customers=2, long_turns=10, last_seconds=3600.0, window=5, limit_pct=5.0, out=tmp_path)
    samples = [{"t_s": 20 * i, "rss_rasa_mb": 900.0, "rss_actions_mb": 300.0, "rss_postgres_mb": 200.0, "pss_postgres_mb": 90.0,
                "fds_rasa": 60, "fds_actions": 30, "fds_postgres": 200, "pg_conn_total": 9, "p95_ms": 80.0,
                "rss_driver_mb": 100.0 + 50 * i} for i in range(1, 7)]
    totals = {"messages": 360, "answered": 358, "errors": 2, "refused": 0, "error_kinds": {"timeout": 2},
              "p50": 30.0, "p95": 80.0, "p99": 120.0}
    conversation = {"handoffs": 3, "clicks_and_ratings": {"<rate-answer>": 4}, "unresolved_tokens": 1}
    data = report(args, samples, totals, "completed", "Traffic: synthetic.", {"model": "m.tar.gz", "conversation": conversation})
    text = (tmp_path / "soak.md").read_text()
    assert "Short run" in text and "Verdict: PASS (short run)" in text and "timeout 2" in text and "3 handoffs" in text
    assert "p95 latency is judged by the same rule" in text and "shown, not judged" in text
    assert data["passed"] and data["short"] and json.loads((tmp_path / "soak.json").read_text())["passed"]
    assert (tmp_path / "soak.png").exists()
    interrupted = report(args, samples[:3], totals, "interrupted", "", {})
    assert not interrupted["passed"] and "(run interrupted)" in (tmp_path / "soak.md").read_text()


def test_an_interrupted_run_still_writes_its_report_from_the_rows_sampled(tmp_path, monkeypatch):
    import bot.bench_soak as soak_module
    from bot.load_mix import MixCustomer

    people = [MixCustomer("c-1", ["hi", "thanks"], [1.0, 30.0])]
    monkeypatch.setattr(soak_module, "customers_for", lambda args, rate: (people, "Traffic: one customer."))

    def interrupted(args, people, windows, writer, extra):
        windows.add(Result(12.0, True, at=1.0))
        writer.add({"t_s": 20, **windows.take(0), "rss_rasa_mb": 900.0})
        raise KeyboardInterrupt

    monkeypatch.setattr(soak_module, "soak", interrupted)
    code = soak_module.main(["--duration", "60", "--sample-seconds", "20", "--out", str(tmp_path)])
    text = (tmp_path / "soak.md").read_text()
    assert code == 1 and "Status: interrupted; 1 samples" in text and "| 1 | 1 | 0 | 0 | 12 |" in text
    assert read_samples(tmp_path / "samples.csv")[0]["answered"] == 1


def test_a_failed_probe_leaves_gaps_in_the_row_but_keeps_its_latency(tmp_path):
    windows = Windows(10, [1.0])
    windows.add(Result(25.0, True, at=1.0))
    writer = SampleWriter(tmp_path / "samples.csv")

    def broken():
        raise OSError("ps: not found")

    sampler = Sampler(windows, broken, writer, time.monotonic(), grace=0.0)
    sampler.finish(windows_planned=1)  # never started: the end of a run that stopped before its first sample
    [row] = read_samples(tmp_path / "samples.csv")
    assert row["p50_ms"] == 25.0 and row["answered"] == 1 and row["rss_rasa_mb"] is None


def test_postgres_memory_is_judged_as_pss_because_summed_rss_counts_shared_buffers_once_per_backend(tmp_path):
    from bot.bench_soak import growth_table

    # Backends touching more of the shared buffers: the RSS sum climbs, the memory PostgreSQL holds does not.
    rows = [{"t_s": 60 * (i + 1), "rss_postgres_mb": 600.0 + 8 * i, "pss_postgres_mb": 175.0} for i in range(120)]
    table = {r["series"]: r for r in growth_table(rows, 5, 3600.0, 5.0)}
    assert table["rss_postgres_mb"]["passed"] is False and table["rss_postgres_mb"]["judged"] is False
    assert table["pss_postgres_mb"]["passed"] is True and table["pss_postgres_mb"]["judged"] is True


def test_rejudge_rewrites_a_finished_runs_report_by_the_current_rules_and_keeps_the_first_verdict(tmp_path):
    from bot.bench_soak import main

    writer = SampleWriter(tmp_path / "samples.csv")
    for i in range(120):
        writer.add({"t_s": 60 * (i + 1), "rss_rasa_mb": 1800.0, "rss_actions_mb": 870.0, "rss_postgres_mb": 600.0 + 8 * i,
                    "pss_postgres_mb": 175.0, "fds_rasa": 40, "fds_actions": 20, "fds_postgres": 500, "pg_conn_total": 9,
                    "p95_ms": 320.0})
    totals = {"messages": 216000, "answered": 216000, "errors": 0, "refused": 0, "error_kinds": {},
              "p50": 100.0, "p95": 340.0, "p99": 500.0}
    parameters = {"rate": 30.0, "customers": 300, "duration": 7200.0, "sample_seconds": 60.0, "timeout": 30.0, "seed": 0,
                  "precision": "auto", "model": "m.tar.gz", "long_customers": 10, "long_turns": 100,
                  "last_seconds": 3600.0, "window": 5, "limit_pct": 5.0, "out": "/elsewhere", "mix": "support-day",
                  "burst_rate": None}
    (tmp_path / "soak.json").write_text(json.dumps({"status": "completed", "passed": False, "totals": totals,
                                                    "parameters": parameters, "mix": "Traffic: recorded.",
                                                    "model": "m.tar.gz", "conversation": None}))
    assert main(["--rejudge", str(tmp_path)]) == 0
    text = (tmp_path / "soak.md").read_text()
    assert "Re-judged on" in text and "the run's own verdict was FAIL" in text and text.rstrip().endswith("soak.json.")
    assert "Verdict: PASS" in text and "Traffic: recorded." in text and "Short run" not in text
    data = json.loads((tmp_path / "soak.json").read_text())
    assert data["passed"] is True and data["first_verdict"] is False and data["model"] == "m.tar.gz"
    assert (tmp_path / "soak.png").exists()


def test_rejudge_of_a_folder_without_a_run_says_so(tmp_path):
    from bot.bench_soak import main

    with pytest.raises(SystemExit, match="cannot re-judge"):
        main(["--rejudge", str(tmp_path)])
