"""The load benchmark's plan and summary (the servers themselves are exercised by the e2e tests)."""
import math

from bot.bench_load import Result, plan, stock_config, summarise


def test_the_plan_offers_the_rate_over_the_customers_open_loop():
    people = plan(customers=150, rate=50, duration=60, seed=0)
    assert len(people) == 150
    sent = sum(len(p.messages) for p in people)
    assert 0.95 * 50 * 60 <= sent <= 1.05 * 50 * 60
    for person in people:
        assert person.schedule == sorted(person.schedule) and all(0 <= t < 60 for t in person.schedule)
        assert all(isinstance(text, str) and text.strip() for text in person.messages)
    assert plan(150, 50, 60, seed=0)[7].messages == people[7].messages, "same seed, same conversations"


def test_stock_rasa_is_the_default_pipeline_and_policies():
    config = stock_config()
    names = [part["name"] for part in config["pipeline"]]
    assert names[0] == "WhitespaceTokenizer" and "DIETClassifier" in names and "ResponseSelector" in names
    assert [p["name"] for p in config["policies"]] == ["MemoizationPolicy", "RulePolicy", "UnexpecTEDIntentPolicy", "TEDPolicy"]


def test_summary_counts_errors_and_percentiles_from_the_scheduled_time():
    results = [Result(float(ms), True) for ms in range(1, 101)] + [Result(30000.0, False, "timeout", "c: hi")]
    summary = summarise(results, wall=10.0)
    assert summary["messages"] == 101 and summary["answered"] == 100 and summary["errors"] == 1
    assert summary["error_kinds"] == {"timeout": 1} and summary["throughput"] == 10.0
    assert 50 <= summary["p50"] <= 52 and summary["p99"] >= 100


def test_a_baseline_revision_is_checked_out_with_the_built_outputs_it_needs_and_the_table_gives_medians(tmp_path):
    import subprocess

    from bot.bench_load import checkout, table
    from core.settings import PROJECT_ROOT

    tree = checkout("HEAD", tmp_path)
    try:
        assert (tree / "bot" / "bench_load.py").exists() and (tree / "config.yml").exists()
        for built in ("artifacts/sentiment", "web/dist"):
            assert (tree / built).exists() == (PROJECT_ROOT / built).exists()
        # ../shared/data from the baseline's tree is the clone's (the support-day mix reads BANKING77 there)
        assert (tree.parent / "shared").exists() == (PROJECT_ROOT.parent / "shared").exists()
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=str(PROJECT_ROOT), check=True)
    row = {"messages": 10, "throughput": 5.0, "p50": 10, "p95": 20, "p99": 30, "errors": 0, "error_kinds": {},
           "cpu_ms_per_msg": 12.0, "rasa_cpu_ms_per_msg": 9.0, "load_avg": 1.0}
    rows = [dict(row, system="ours"), dict(row, system="before (abc)", p95=40),
            dict(row, system="ours", p95=22), dict(row, system="before (abc)", p95=44)]
    args = type("Args", (), {"rate": 5, "customers": 10, "duration": 2, "timeout": 30})()
    report = table(rows, args)
    assert "Median over the rounds: ours: p95 21 ms" in report and "before (abc): p95 42 ms" in report


def test_bursts_add_their_rate_on_top_of_the_steady_traffic():
    from bot.bench_load import burst_plan, burst_windows

    people = burst_plan(rate=30, burst_rate=150, burst_seconds=10, every=60, duration=120, seed=0)
    windows = burst_windows(10, 60, 120)
    assert windows == [(30.0, 40.0), (90.0, 100.0)]
    times = [t for p in people for t in p.schedule]
    assert all(any(a <= t < b for a, b in windows) for t in times)
    assert 0.8 * 120 * 10 * 2 <= len(times) <= 1.2 * 120 * 10 * 2  # 120 extra msg/s for 10 s, twice
    for person in people:
        assert person.sender.startswith("burst-") and len(person.messages) <= 5
        gaps = [b - a for a, b in zip(person.schedule, person.schedule[1:])]
        assert all(g >= 1.0 for g in gaps), "within the per-customer rate limit"


def test_burst_recovery_is_read_from_the_steady_traffic_after_each_burst():
    from bot.bench_load import REFUSED, burst_summary, summarise

    results = []
    for second in range(100):
        slow = 40 <= second < 43  # the burst (30-40 s) leaves steady traffic slow for three seconds
        for i in range(10):
            results.append(Result(500.0 if slow else 20.0 + i, True, message="load-1: hi", at=second + i / 10))
    results += [Result(5.0, False, REFUSED, "burst-1: hi", at=31.0), Result(30000.0, False, "timeout", "burst-2: hi", at=32.0)]
    summary = burst_summary(results, [(30.0, 40.0)])
    burst = summary["bursts"][0]
    assert (burst["refused"], burst["errors"]) == (1, 1)
    assert burst["recovery_s"] == 3.0 and summary["settled_within"]
    assert summary["threshold_ms"] == 100.0
    counted = summarise(results, wall=100.0)
    assert counted["refused"] == 1 and counted["errors"] == 1, "a polite refusal is not an error"


def test_the_share_of_a_stage_within_5_and_10_ms_is_read_from_its_buckets():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from bot.bench_load import scrape_within, within_line
    from core.metrics import BUCKETS

    registry = CollectorRegistry()
    model = Histogram("assistant_model_seconds", "models", buckets=BUCKETS, registry=registry)
    nlu = Histogram("assistant_nlu_seconds", "nlu", buckets=BUCKETS, registry=registry)
    Histogram("assistant_retrieval_seconds", "never observed", buckets=BUCKETS, registry=registry)
    for seconds in (0.002, 0.004, 0.006, 0.008, 0.02):
        model.observe(seconds)
    nlu.observe(0.0001)
    within = scrape_within(generate_latest(registry).decode())
    assert within == {"assistant_model": {0.005: 0.4, 0.01: 0.8}, "assistant_nlu": {0.005: 1.0, 0.01: 1.0}}
    line = within_line({"system": "ours", "within": within})
    assert line == "Share within 5 / 10 ms, ours (from /metrics): assistant_model 40 % / 80 %, assistant_nlu 100 % / 100 %"
    assert within_line({"system": "stock"}) == ""


def test_a_failed_request_is_reported_with_its_os_error_name():
    import errno

    from bot.bench_load import error_name

    assert error_name(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")) == "ConnectionResetError ECONNRESET"
    assert error_name(OSError(99999, "odd")) == "OSError 99999"
    assert error_name(ValueError("bad JSON")) == "ValueError"


def test_the_baseline_gets_the_same_traffic_model_and_precision_and_no_option_left_at_its_default(tmp_path):
    from argparse import Namespace
    from pathlib import Path

    from bot.bench_load import baseline_arguments

    common = dict(rate=40.0, customers=300, duration=60.0, timeout=30.0, seed=0, burst_seconds=10.0, burst_every=60.0)
    plain = baseline_arguments(Namespace(**common, mix="scripted", precision="auto", long_customers=10,
                                         long_turns=100, burst_rate=None), None, tmp_path)
    assert "--mix" not in plain and "--model" not in plain and "--precision" not in plain
    assert plain[plain.index("--rate") + 1] == "40.0" and plain[plain.index("--out") + 1] == str(tmp_path)

    day = baseline_arguments(Namespace(**common, mix="support-day", precision="fp32", long_customers=10,
                                       long_turns=100, burst_rate=150.0), Path("models/m.tar.gz"), tmp_path)
    pairs = dict(zip(day[::2], day[1::2]))
    assert pairs["--mix"] == "support-day" and pairs["--precision"] == "fp32"
    assert pairs["--model"] == str(Path("models/m.tar.gz").resolve()) and pairs["--burst-rate"] == "150.0"
    assert "--long-turns" not in pairs


def test_the_client_side_splits_latency_into_lag_connection_handler_and_the_wait_before_it():
    from bot.bench_load import Result, client_line, client_shares, server_timing

    assert server_timing("handler;dur=12.5") == 12.5
    assert server_timing("db;dur=3, handler;desc=\"turn\";dur=7") == 7.0
    assert math.isnan(server_timing("")) and math.isnan(server_timing("handler;dur=x"))
    results = [Result(100.0, True, send_lag_ms=1.0, connect_ms=4.0, handler_ms=20.0) for _ in range(19)]
    results.append(Result(5000.0, True, send_lag_ms=2.0, connect_ms=0.0, handler_ms=30.0))
    c = client_shares(results)
    assert c["send_lag_max"] == 2.0 and c["handler_max"] == 30.0
    assert c["before_handler_max"] == 5000.0 - 2.0 - 30.0  # the tail was spent before the handler ran
    assert "before it" in client_line({"system": "ours", "client": c})
    untimed = client_shares([Result(50.0, True)])  # a server without the header (stock Rasa)
    assert "handler_p50" not in untimed and "before it" not in client_line({"system": "stock", "client": untimed})


def test_full_collections_are_read_per_server_and_an_untimed_server_says_so():
    from bot.bench_load import gc_line, gc_pauses

    text = "\n".join([
        "# HELP assistant_gc_pause_seconds Python garbage collector pauses, by generation.",
        'assistant_gc_pause_seconds_bucket{generation="0",le="+Inf"} 900.0',
        'assistant_gc_pause_seconds_count{generation="0"} 900.0',
        'assistant_gc_pause_seconds_sum{generation="0"} 0.05',
        'assistant_gc_pause_seconds_count{generation="2"} 3.0',
        'assistant_gc_pause_seconds_sum{generation="2"} 0.675',
        'assistant_action_seconds_count{action="action_answer_intent"} 10.0',
    ])
    pauses = gc_pauses(text)
    assert pauses == {"0": {"count": 900.0, "seconds": 0.05}, "2": {"count": 3.0, "seconds": 0.675}}
    row = {"system": "ours", "gc": {"rasa": {"0": {"count": 5.0, "seconds": 0.001}}, "actions": pauses, "old": {}}}
    assert gc_line(row) == ("Full garbage collections (generation 2, from /metrics), ours: "
                            "rasa 0, actions 3 (0.68 s in all), old not timed")
    assert gc_line({"system": "stock"}) == ""
