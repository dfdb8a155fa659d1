"""The experiment split is stable per customer, follows the weights, and the z-test is right.

Serving (assignment, exposures, start-up refusal): tests/test_experiment_serving.py.
"""
import subprocess
import sys

import pytest

from bot.insight.experiments import (
    arm_for,
    two_proportion_z_test,
)
from core.settings import PROJECT_ROOT


def test_the_same_customer_always_gets_the_same_arm_even_in_another_process():
    customers = [f"cust-{i}" for i in range(50)]
    here = [arm_for(c, "recommender", ["blend", "off"]) for c in customers]
    assert here == [arm_for(c, "recommender", ["blend", "off"]) for c in customers]
    code = (
        "from bot.insight.experiments import arm_for;"
        "print(','.join(arm_for(f'cust-{i}', 'recommender', ['blend', 'off']) for i in range(50)))"
    )
    # PYTHONHASHSEED differs per process: the split must not depend on it.
    other = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, check=True)
    assert other.stdout.strip().split(",") == here


def test_the_split_follows_the_weights_and_uses_every_arm():
    arms = [arm_for(f"c{i}", "exp", ["a", "b", "c"], [50, 30, 20]) for i in range(4000)]
    shares = {arm: arms.count(arm) / len(arms) for arm in "abc"}
    assert shares["a"] == pytest.approx(0.5, abs=0.03)
    assert shares["b"] == pytest.approx(0.3, abs=0.03)
    assert shares["c"] == pytest.approx(0.2, abs=0.03)


def test_different_experiments_split_customers_independently():
    first = [arm_for(f"c{i}", "one", ["x", "y"]) for i in range(400)]
    second = [arm_for(f"c{i}", "two", ["x", "y"]) for i in range(400)]
    agreement = sum(a == b for a, b in zip(first, second)) / 400
    assert 0.4 < agreement < 0.6


def test_z_test_matches_a_worked_example():
    # 60/400 vs 40/400: pooled 0.125, se 0.023385, z 2.1381, p 0.0325
    z, p = two_proportion_z_test(60, 400, 40, 400)
    assert z == pytest.approx(2.1381, abs=1e-3)
    assert p == pytest.approx(0.0325, abs=1e-3)
    assert two_proportion_z_test(0, 0, 3, 10) == (0.0, 1.0)
