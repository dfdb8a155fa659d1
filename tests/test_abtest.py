"""The experiment statistics: intervals, lift, Holm correction, power and the verdict rules."""
import pytest

from bot.insight import abtest
from bot.insight.abtest import Proportion
from bot.insight.experiments import Arm, Experiment


def experiment(**overrides):
    fields = dict(name="exp", surface="suggestions", metric="click_through", guardrails=("handoff",),
                  arms=(Arm("blend", 1.0), Arm("popularity", 1.0)), min_exposures=100, max_days=28, alpha=0.05)
    fields.update(overrides)
    return Experiment(**fields)


def counts(click, handoff=(10, 100)):
    """One arm's metrics: click_through = click, handoff = handoff (successes, trials)."""
    return {"click_through": Proportion(*click), "handoff": Proportion(*handoff)}


def test_wilson_interval_matches_the_published_values():
    assert abtest.wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    low, high = abtest.wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert abtest.wilson_interval(10, 10)[1] == 1.0
    assert abtest.wilson_interval(0, 0) == (None, None)


def test_compare_gives_lift_with_intervals_and_the_z_test():
    c = abtest.compare(Proportion(40, 400), Proportion(60, 400))
    assert c.difference == pytest.approx(0.05) and c.lift == pytest.approx(0.5)
    assert c.difference_ci[0] < 0.05 < c.difference_ci[1] and c.lift_ci[0] < 0.5 < c.lift_ci[1]
    assert c.p_value == pytest.approx(0.0325, abs=1e-3) and c.z > 0
    none = abtest.compare(Proportion(0, 100), Proportion(3, 100))
    assert none.lift is None and none.lift_ci == (None, None)


def test_holm_adjusts_and_keeps_the_order():
    assert abtest.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert abtest.holm([0.5]) == [0.5]


def test_required_customers_matches_the_standard_formula():
    # Standard calculators (two-sided 5 %, 80 % power) give 8,158 and 3,841 for +20 % on 5 % and 10 %.
    assert abtest.required_customers_per_arm(0.05, 0.2) == 8158
    assert abtest.required_customers_per_arm(0.10, 0.2) == 3841
    assert abtest.required_customers_per_arm(0.10, 0.2, comparisons=2) > 3841  # alpha shared by two arms
    assert abtest.required_customers_per_arm(0.10, 0.1) > abtest.required_customers_per_arm(0.10, 0.2)


@pytest.mark.parametrize("args, named", [((0.0, 0.2), "base rate"), ((0.9, 0.2), "relative lift"),
                                         ((0.1, 0.0), "relative lift"), ((0.1, 0.2, 1.5), "alpha")])
def test_required_customers_refuses_rates_that_cannot_be(args, named):
    with pytest.raises(ValueError, match=named):
        abtest.required_customers_per_arm(*args)


def test_the_power_command_prints_customers_per_arm(capsys):
    assert abtest.main(["--base-rate", "0.05", "--lift", "0.1", "--lift", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "lift +20%: 8158 customers per arm, 16316 in all" in out and "lift +10%: 31234" in out
    assert abtest.main(["--base-rate", "0.9", "--lift", "0.2"]) == 2
    assert "must be between 0 and 1" in capsys.readouterr().err


def decide(exp, arms, days=5.0):
    verdict, adjusted = abtest.decide(exp, arms, {name: m["click_through"].trials for name, m in arms.items()}, days)
    return verdict, adjusted


def test_no_verdict_before_every_arm_has_its_customers():
    verdict, _ = decide(experiment(min_exposures=500), {"blend": counts((10, 400)), "popularity": counts((90, 400))})
    assert verdict.text == "keep running" and "popularity" in verdict.reason and "fixed-horizon" in verdict.reason


def test_a_significant_improvement_wins_and_a_small_one_does_not():
    verdict, adjusted = decide(experiment(), {"blend": counts((40, 400)), "popularity": counts((70, 400))})
    assert verdict.text == "winner: popularity" and adjusted["popularity"] < 0.05
    verdict, _ = decide(experiment(), {"blend": counts((40, 400)), "popularity": counts((45, 400))})
    assert verdict.text == "no difference"


def test_a_significantly_worse_arm_is_no_difference_and_keeps_the_control():
    verdict, _ = decide(experiment(), {"blend": counts((70, 400)), "popularity": counts((40, 400))})
    assert verdict.text == "no difference" and "keep blend" in verdict.reason


def test_a_guardrail_stops_an_arm_that_hands_off_more():
    arms = {"blend": counts((40, 400), (20, 400)), "popularity": counts((70, 400), (60, 400))}
    verdict, _ = decide(experiment(), arms)
    assert verdict.text == "stopped by a guardrail: popularity handoff"
    # within the tolerance (10 points worse allowed) it wins instead
    verdict, _ = decide(experiment(guardrail_tolerance=0.10), arms)
    assert verdict.text == "winner: popularity"


def test_lower_is_better_metrics_win_downwards():
    exp = experiment(metric="handoff", guardrails=())
    arms = {"blend": {"handoff": Proportion(80, 400)}, "popularity": {"handoff": Proportion(40, 400)}}
    verdict, _ = abtest.decide(exp, arms, {"blend": 400, "popularity": 400}, 5.0)
    assert verdict.text == "winner: popularity"


def test_max_days_ends_an_experiment_short_of_customers():
    verdict, _ = decide(experiment(min_exposures=1000, max_days=28), {"blend": counts((40, 400)), "popularity": counts((45, 400))},
                        days=28.5)
    assert verdict.text == "no difference" and "max_days" in verdict.reason


def test_holm_correction_applies_across_treatment_arms():
    exp = experiment(arms=(Arm("blend", 1.0), Arm("popularity", 1.0), Arm("item_item", 1.0)))
    # p 0.025 and 0.033: each significant alone, neither after Holm over two arms (0.051)
    arms = {"blend": counts((40, 400)), "popularity": counts((61, 400)), "item_item": counts((60, 400))}
    verdict, adjusted = decide(exp, arms)
    assert verdict.text == "no difference" and adjusted == {"popularity": pytest.approx(0.0508, abs=1e-3),
                                                            "item_item": pytest.approx(0.0508, abs=1e-3)}
