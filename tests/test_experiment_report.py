"""The experiment report from logged exposures, and the simulation that checks its power and false positives."""
import pytest

from bot.insight import abtest, simulate
from bot.insight.experiment_report import DAY, Outcomes, arm_figures, experiment_report
from bot.insight.experiments import Arm, Experiment
from core import db

T0 = 1_780_000_000.0
EXP = Experiment(name="sugg", surface="suggestions", arms=(Arm("blend", 1.0), Arm("popularity", 1.0)),
                 metric="click_through", guardrails=("handoff",), min_exposures=2, max_days=28)


@pytest.fixture()
def engine(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'a.db'}")
    day = lambda n: T0 + n * DAY  # noqa: E731
    with engine.begin() as conn:
        conn.execute(db.experiment_exposures.insert(), [
            # c1: three exposures, one customer
            {"experiment": "sugg", "arm": "blend", "customer_id": "c1", "conversation_id": "c1/a", "ts": day(0)},
            {"experiment": "sugg", "arm": "blend", "customer_id": "c1", "conversation_id": "c1/b", "ts": day(1)},
            {"experiment": "sugg", "arm": "blend", "customer_id": "c1", "conversation_id": "c1/b", "ts": day(1) + 60},
            {"experiment": "sugg", "arm": "blend", "customer_id": "c2", "conversation_id": "c2/a", "ts": day(2)},
            {"experiment": "sugg", "arm": "popularity", "customer_id": "c3", "conversation_id": "c3/a", "ts": day(0)},
            {"experiment": "sugg", "arm": "popularity", "customer_id": "c4", "conversation_id": "c4/a", "ts": day(3)},
            {"experiment": "sugg", "arm": "retired", "customer_id": "c5", "conversation_id": "c5/a", "ts": day(3)},
            {"experiment": "other", "arm": "blend", "customer_id": "c2", "conversation_id": "c2/a", "ts": day(2)},
            {"experiment": "sugg", "arm": "blend", "customer_id": "c9", "conversation_id": "c9/a", "ts": day(40)},  # after as_of
        ])
        conn.execute(db.interactions.insert(), [
            {"customer_id": "c1", "item_id": "x", "kind": "click", "ts": day(0) + 5},
            {"customer_id": "c1", "item_id": "x", "kind": "click", "ts": day(1) + 5},  # same customer: still one
            {"customer_id": "c2", "item_id": "x", "kind": "click", "ts": day(1)},  # before c2's first exposure
            {"customer_id": "c3", "item_id": "x", "kind": "click", "ts": day(20)},  # after the 14-day window
            {"customer_id": "c4", "item_id": "x", "kind": "click", "ts": day(4)},
            {"customer_id": "c4", "item_id": "x", "kind": "purchase", "ts": day(10)},
            {"customer_id": "c3", "item_id": "x", "kind": "view", "ts": day(1)},
        ])
        conn.execute(db.answer_ratings.insert(), [
            {"answer_id": "a", "query": "q", "rating": 1, "customer_id": "c1", "conversation_id": None, "ts": day(0) + 9},
            {"answer_id": "a", "query": "q", "rating": -1, "customer_id": None, "conversation_id": "c1/b", "ts": day(1) + 9},
            {"answer_id": "a", "query": "q", "rating": 1, "customer_id": "c3", "conversation_id": None, "ts": day(0) - 9},  # before exposure
        ])
        conn.execute(db.handoffs.insert(), [
            {"conversation_id": "c3/a", "customer_id": None, "reason": "asked", "created_at": day(0) + 30, "updated_at": day(0)},
        ])
    return engine


def test_each_customer_counts_once_with_outcomes_inside_the_window(engine):
    (report,) = experiment_report(engine, [EXP], as_of=T0 + 30 * DAY)
    blend, popularity = report["arms"]
    assert (blend["arm"], blend["customers"], blend["exposures"]) == ("blend", 2, 4)
    assert (popularity["customers"], popularity["exposures"]) == (2, 2)
    m = blend["metrics"]
    assert (m["click_through"]["successes"], m["click_through"]["trials"]) == (1, 2)
    assert (m["thumbs_up"]["successes"], m["thumbs_up"]["trials"]) == (1, 2)  # one by id, one by conversation
    assert (m["handoff"]["successes"], m["containment"]["successes"]) == (0, 2)
    p = popularity["metrics"]
    assert (p["click_through"]["successes"], p["conversion"]["successes"], p["handoff"]["successes"]) == (1, 1, 1)
    assert p["thumbs_up"]["trials"] == 0 and p["thumbs_up"]["rate"] is None
    assert p["click_through"]["lift"] == pytest.approx(0.0) and 0 <= p["click_through"]["p_adjusted"] <= 1
    assert report["undeclared_arms"] == {"retired": 1} and report["moved_customers"] == 0
    assert report["days_run"] == pytest.approx(30.0) and report["verdict"] == "no difference"
    assert report["required_per_arm"][0.2] == abtest.required_customers_per_arm(0.5, 0.2)


def test_outcomes_after_as_of_and_customers_under_the_minimum_keep_it_running(engine):
    exp = Experiment(**{**EXP.__dict__, "min_exposures": 3})
    (report,) = experiment_report(engine, [exp], as_of=T0 + 3.5 * DAY)
    assert report["verdict"] == "keep running" and "fixed-horizon" in report["verdict_reason"]
    assert report["arms"][1]["metrics"]["conversion"]["successes"] == 0  # c4's purchase is after as_of


def test_an_experiment_without_exposures_keeps_running(engine):
    exp = Experiment(**{**EXP.__dict__, "name": "unused"})
    (report,) = experiment_report(engine, [exp], as_of=T0)
    assert report["verdict"] == "keep running" and [a["customers"] for a in report["arms"]] == [0, 0]
    assert report["required_per_arm"] == {0.1: None, 0.2: None}


def test_a_customer_logged_in_two_arms_is_reported():
    exposures = [("blend", "c1", "v", T0), ("popularity", "c1", "v", T0 + 1)]
    arms, facts = arm_figures(EXP, exposures, Outcomes(), as_of=T0 + DAY)
    assert facts["moved_customers"] == 1 and arms["blend"].customers == 1 and arms["popularity"].customers == 0


SMALL = simulate.Scenario("small A/B", (0.5, 0.6), "arm1")  # 388 customers per arm: seconds, not minutes


def test_the_database_path_and_the_in_memory_path_give_the_same_figures(tmp_path):
    tiny = simulate.Scenario("tiny A/B", (0.5, 0.7), "arm1", planned_lift=0.4, handoff_rate=0.3)  # 93 per arm
    exp = tiny.experiment()
    for seed in (1, 2):
        run = simulate.simulate_run(exp, tiny.click_rates, tiny.handoff_rate, seed)
        in_memory = simulate.judge(exp, run)
        engine = db.connect(f"sqlite:///{tmp_path / f'{seed}.db'}")
        assert simulate.judge(exp, run, engine) == in_memory
        with engine.connect() as conn:  # the customer, not the exposure, is the unit
            assignments = conn.execute(db.experiment_assignments.select()).fetchall()
            exposures = conn.execute(db.experiment_exposures.select()).fetchall()
        assert len(exposures) > len(assignments) == sum(a["customers"] for a in in_memory["arms"])


def test_the_report_finds_a_true_lift_at_its_power_and_no_false_winner_beyond_alpha():
    """A small seeded version of `python -m bot.insight.simulate`: 100 runs per scenario.

    With 100 runs the Monte-Carlo standard error of a share near 0.8 is 0.04
    and of one near 0.05 is 0.022; the bounds allow three of them.
    """
    runs = 100
    ab = simulate.run_scenario(SMALL, runs, seed=1000)
    aa = simulate.run_scenario(simulate.Scenario("small A/A", (0.5, 0.5), None), runs, seed=2000)
    assert ab.true_winner / runs >= 0.8 - 3 * 0.04
    assert aa.any_winner / runs <= 0.05 + 3 * 0.022
    assert ab.customers_per_arm == aa.customers_per_arm == 388


def test_the_benchmark_command_prints_its_table(capsys):
    """One run of each scenario (the full table, 200 runs each, is in docs/benchmarks.md)."""
    assert simulate.main(["--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n| A/") == 4 and "true winner found (power)" in out
    assert simulate.main(["--runs", "0"]) == 2
