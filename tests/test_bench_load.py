"""The load benchmark's plan and summary (the servers themselves are exercised by the e2e tests)."""
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
