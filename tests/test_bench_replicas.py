"""The replica benchmark's arithmetic and report (the servers themselves: tests/e2e/test_scaleout.py)."""
import os

import pytest

from bot.bench_replicas import (
    best_rate,
    busy_share,
    by_rate_table,
    cpu_ms_per_message,
    make_row,
    parse_args,
    report,
    sizing,
    sizing_text,
    spread,
    tree_cpu_seconds,
    tree_rss_mb,
)


def row(replicas, rate, p95, errors=0, refused=0, cpu=None, rasa_mb=(1500.0,), actions_mb=(600.0,), busy=0.5):
    cpu = cpu or {"rasa": 10.0, "actions": 4.0, "postgres": 2.0, "nginx": 0.5, "redis": 0.5, "driver": 1.0}
    cpu = dict(cpu, all=sum(cpu[k] for k in ("rasa", "actions", "postgres", "nginx", "redis")))
    return {"replicas": replicas, "action_servers": min(replicas, 2), "rate": float(rate), "messages": int(rate * 60),
            "throughput": float(rate), "p50": p95 / 3, "p95": float(p95), "p99": p95 * 1.5, "errors": errors,
            "error_kinds": {"timeout": errors} if errors else {}, "refused": refused, "cpu_ms": cpu,
            "machine_busy": busy, "rss_rasa_mb": list(rasa_mb) * replicas, "rss_actions_mb": list(actions_mb) * min(replicas, 2),
            "load_avg": 1.5}


def test_arguments_are_sorted_deduplicated_and_checked():
    args = parse_args(["--replicas", "4,1,2,2", "--rates", "70,30,50", "--action-servers", "2", "--precision", "fp32"])
    assert args.replicas == [1, 2, 4] and args.rates == [30.0, 50.0, 70.0]
    assert args.action_servers == 2 and args.precision == "fp32"
    assert args.mix == "support-day" and args.burst_rate is None  # what bench_load.customers_for reads
    defaults = parse_args([])
    assert defaults.replicas == [1, 2, 4] and defaults.rates == [30.0, 50.0, 70.0] and defaults.customers == 300
    for bad in (["--replicas", "0,2"], ["--replicas", "two"], ["--rates", "-5"], ["--action-servers", "0"],
                ["--duration", "0"], ["--precision", "fp16"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_replicas_are_spread_over_the_action_servers_in_turn():
    assert spread(1, 2) == [[1]]  # the baseline: one Rasa server, one action server
    assert spread(2, 2) == [[1], [2]]
    assert spread(4, 2) == [[1, 3], [2, 4]]
    assert spread(3, 1) == [[1, 2, 3]]
    assert spread(5, 3) == [[1, 4], [2, 5], [3]]


def test_cpu_per_message_adds_the_servers_but_not_the_driver():
    before = {"rasa": 10.0, "actions": 5.0, "postgres": 1.0, "nginx": 0.0, "redis": 0.0, "driver": 2.0}
    after = {"rasa": 22.0, "actions": 8.0, "postgres": 2.5, "nginx": 0.3, "redis": 0.2, "driver": 5.0}
    per = cpu_ms_per_message(before, after, messages=1000)
    assert per["rasa"] == pytest.approx(12.0) and per["actions"] == pytest.approx(3.0)
    assert per["driver"] == pytest.approx(3.0)
    assert per["all"] == pytest.approx(12.0 + 3.0 + 1.5 + 0.3 + 0.2)
    assert cpu_ms_per_message(before, before, messages=0)["all"] == 0.0
    assert busy_share((100, 1000), (250, 1200)) == pytest.approx(0.75) and busy_share((1, 1), (1, 1)) == 0.0


def test_a_row_keeps_the_summary_and_adds_the_measurements():
    summary = {"messages": 100, "answered": 100, "errors": 0, "refused": 0, "error_kinds": {}, "throughput": 10.0,
               "p50": 20.0, "p95": 50.0, "p99": 80.0, "results": [object()], "per_message": [(0, 1, "x")],
               "timeline_p95": {0: 1.0}, "conversation": {"handoffs": 2}}
    cpu0 = {"rasa": 0.0, "actions": 0.0, "postgres": 0.0, "nginx": 0.0, "redis": 0.0, "driver": 0.0}
    cpu1 = dict(cpu0, rasa=1.0, driver=0.5)
    r = make_row(2, 2, 10.0, summary, cpu0, cpu1, (0, 100), (60, 200), {"rasa": [1.0, 2.0], "actions": [3.0, 4.0]}, 1.2)
    assert "results" not in r and "per_message" not in r and "timeline_p95" not in r
    assert r["cpu_ms"]["rasa"] == pytest.approx(10.0) and r["cpu_ms"]["all"] == pytest.approx(10.0)
    assert r["machine_busy"] == pytest.approx(0.6) and r["rss_rasa_mb"] == [1.0, 2.0] and r["load_avg"] == 1.2
    assert r["conversation"] == {"handoffs": 2} and (r["replicas"], r["action_servers"], r["rate"]) == (2, 2, 10.0)


def test_the_best_rate_needs_p95_under_100_ms_no_errors_and_nothing_refused():
    rows = [row(1, 30, 60), row(1, 50, 99), row(1, 70, 100), row(2, 30, 40), row(2, 50, 45, refused=3),
            row(2, 70, 80, errors=1), row(4, 30, 200)]
    assert best_rate(rows, 1) == 50.0
    assert best_rate(rows, 2) == 30.0
    assert best_rate(rows, 4) is None
    table = by_rate_table(rows)
    assert "| offered msg/s | 1 replica | 2 replicas | 4 replicas |" in table
    assert "| 30 | 60 ms (50%) | 40 ms (50%) | 200 ms (50%) x |" in table
    assert "| 50 | 99 ms (50%) | 45 ms (50%) x | - |" in table


def test_sizing_arithmetic_from_the_best_row():
    cpu = {"rasa": 12.0, "actions": 4.0, "postgres": 3.0, "nginx": 0.6, "redis": 0.4, "driver": 2.0}  # all = 20 ms
    rows = [row(1, 30, 50, cpu=cpu), row(1, 50, 300, cpu=cpu),
            row(2, 30, 40, cpu=cpu, rasa_mb=(1400.0, 1600.0)), row(2, 50, 90, cpu=cpu, actions_mb=(700.0,)),
            row(4, 50, 95, cpu=cpu)]  # 4 replicas tie with 2 at 50 msg/s: the fewer replicas count
    s = sizing(rows, cores=2, target=100)
    assert s["met"] and (s["replicas"], s["rate"]) == (2, 50.0)
    assert s["per_core"] == pytest.approx(25.0)  # 50 msg/s on 2 cores
    assert s["utilisation"] == pytest.approx(50 * 20 / 1000 / 2)  # 0.5 of both cores
    assert s["need_cores"] == 4  # 100 x 20 / 1000 / 0.5, the same as 100 / 25
    assert s["need_replicas"] == 3  # 100 x 12 / 1000 / 0.5 = 2.4
    assert s["need_action_servers"] == 1  # 100 x 4 / 1000 / 0.5 = 0.8
    assert s["rss_rasa_mb"] == 1600.0 and s["rss_actions_mb"] == 700.0  # the largest in any row
    assert s["need_memory_mb"] == pytest.approx(3 * 1600 + 1 * 700)
    text = sizing_text(s)
    assert "2 Rasa replicas and 2 action servers at 50 msg/s" in text and "25.0 messages per second per core" in text
    assert "20.0 ms = Rasa replicas 12.0 + action servers 4.0 + PostgreSQL 3.0 + nginx 0.6 + Redis 0.4" in text
    assert "cores = 100 x 20.0 / 1000 / 0.50 -> 4" in text and "Rasa replicas = 100 x 12.0 / 1000 / 0.50 -> 3" in text
    assert "memory = 3 x 1600 + 1 x 700 MB = 5.4 GB" in text


def test_exact_multiples_are_not_rounded_up_past_themselves():
    cpu = {"rasa": 10.0, "actions": 5.0, "postgres": 3.0, "nginx": 1.0, "redis": 1.0, "driver": 0.0}  # all = 20 ms
    s = sizing([row(2, 50, 50, cpu=cpu)], cores=2, target=100)  # utilisation 0.5
    assert (s["need_cores"], s["need_replicas"], s["need_action_servers"]) == (4, 2, 1)


def test_sizing_says_so_when_no_rate_met_the_target():
    s = sizing([row(1, 30, 150), row(2, 30, 50, errors=2)], cores=2, target=100)
    assert not s["met"] and "need_cores" not in s
    assert "no run kept p95 under 100 ms" in sizing_text(s) and "1500 MB per Rasa replica" in sizing_text(s)


def test_the_report_has_the_cpu_line_both_tables_the_best_rates_and_the_sizing():
    rows = [row(1, 30, 60), row(1, 50, 150), row(2, 30, 40), row(2, 50, 70)]
    args = parse_args(["--replicas", "1,2", "--rates", "30,50", "--customers", "20", "--duration", "30"])
    text = report(rows, args, "Some CPU (avx2)", 2, "Traffic (support-day mix): 100 messages.\n\n")
    assert text.startswith("CPU: Some CPU (avx2); 2 cores; serving precision: auto")
    assert "| 2 | 2 | 50 | 3000 | 50.0 | 23 | 70 | 105 | 0 | 0 | 50% | 1.5 |" in text
    assert "| 1 | 1 | 30 | 17.0 | 10.0 | 4.0 | 2.0 | 0.5 | 0.5 | 1.0 | 1500 | 600 |" in text
    assert "| 2 | 2 | 30 | 17.0 | 10.0 | 4.0 | 2.0 | 0.5 | 0.5 | 1.0 | 1500 / 1500 | 600 / 600 |" in text
    assert "nothing refused, 1 Rasa replica: 30 msg/s" in text and "nothing refused, 2 Rasa replicas: 50 msg/s" in text
    assert "Sizing, from the highest rate served within the target (2 Rasa replicas" in text


def test_cpu_and_memory_are_read_for_a_process_tree():
    sum(range(200_000))  # some CPU of our own
    assert tree_cpu_seconds(os.getpid()) > 0
    assert 1 < tree_rss_mb(os.getpid()) < 100_000
