"""The statistics of an experiment: rates with confidence intervals, lift, corrected tests, verdicts, power.

    wilson_interval(30, 400)                                  # (low, high) of 30/400 at 95 %
    compare(Proportion(40, 400), Proportion(60, 400))         # lift of B over A, its CI, z, p
    required_customers_per_arm(0.05, 0.2)                     # customers per arm for +20 % at 80 % power
    decide(experiment, arms, days_run)                        # keep running | winner: b | no difference | stopped by a guardrail: b handoff

Pure functions over counts (no database), so the report, the simulation
benchmark and the tests share one definition. The test is fixed-horizon:
`decide` declares nothing but "keep running" until every arm has the
experiment's ``min_exposures`` customers (or ``max_days`` have passed), and
then tests once; looking at the p-values earlier and stopping when one dips
under alpha would make false winners far more common than alpha.

Treatment arms are compared with the control (the first arm) by the two-sided
pooled two-proportion z-test (`two_proportion_z_test`); with more than one
treatment arm the p-values are Holm-adjusted, so the chance of any false
winner stays at or below alpha. Guardrails are tested per arm without
correction (a safety check errs towards stopping).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from statistics import NormalDist
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from bot.insight.experiments import LOWER_IS_BETTER, Experiment, two_proportion_z_test

KEEP_RUNNING = "keep running"
NO_DIFFERENCE = "no difference"
WINNER = "winner"
GUARDRAIL = "stopped by a guardrail"
# The relative lifts the report sizes samples for (10 % and 20 % better than the control's rate).
PLANNING_LIFTS = (0.10, 0.20)


def _z(confidence: float) -> float:
    """The two-sided normal quantile for `confidence` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclasses.dataclass(frozen=True)
class Proportion:
    """`successes` out of `trials` (customers, or ratings for thumbs_up)."""

    successes: int
    trials: int

    @property
    def rate(self) -> Optional[float]:
        return self.successes / self.trials if self.trials else None


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Tuple[Optional[float], Optional[float]]:
    """The Wilson score interval of a rate; (None, None) with no trials.

    Unlike the textbook p ± z·se it stays inside [0, 1] and keeps its
    coverage for rates near 0 (click-through often is).
    """
    if trials <= 0:
        return None, None
    z = _z(confidence)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (0.0 if successes <= 0 else centre - half), (1.0 if successes >= trials else centre + half)


def difference_interval(a: Proportion, b: Proportion, confidence: float = 0.95) -> Tuple[Optional[float], Optional[float]]:
    """Newcombe's interval (from the two Wilson intervals) of rate(b) - rate(a); (None, None) without trials."""
    if a.trials <= 0 or b.trials <= 0:
        return None, None
    la, ua = wilson_interval(a.successes, a.trials, confidence)
    lb, ub = wilson_interval(b.successes, b.trials, confidence)
    pa, pb = a.rate, b.rate
    low = (pb - pa) - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = (pb - pa) + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return low, high


def relative_lift_interval(a: Proportion, b: Proportion, confidence: float = 0.95) -> Tuple[Optional[float], Optional[float]]:
    """The interval of rate(b) / rate(a) - 1 from the log risk ratio (Katz); (None, None) when either has no success."""
    if min(a.successes, b.successes) <= 0 or min(a.trials, b.trials) <= 0:
        return None, None
    log_ratio = math.log(b.rate / a.rate)
    se = math.sqrt(1 / b.successes - 1 / b.trials + 1 / a.successes - 1 / a.trials)
    z = _z(confidence)
    return math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A treatment arm against the control on one metric."""

    difference: Optional[float]  # rate(treatment) - rate(control)
    difference_ci: Tuple[Optional[float], Optional[float]]
    lift: Optional[float]  # rate(treatment) / rate(control) - 1
    lift_ci: Tuple[Optional[float], Optional[float]]
    z: float
    p_value: float  # two-sided, uncorrected


def compare(control: Proportion, treatment: Proportion, confidence: float = 0.95) -> Comparison:
    """Lift of `treatment` over `control` with confidence intervals, and the two-sided z-test."""
    z, p = two_proportion_z_test(treatment.successes, treatment.trials, control.successes, control.trials)
    both = control.trials > 0 and treatment.trials > 0
    difference = treatment.rate - control.rate if both else None
    lift = treatment.rate / control.rate - 1 if both and control.successes > 0 else None
    return Comparison(difference, difference_interval(control, treatment, confidence), lift,
                      relative_lift_interval(control, treatment, confidence), z, p)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm-adjusted p-values (same order as given): compare each with alpha to keep the family-wise error at alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def required_customers_per_arm(base_rate: float, relative_lift: float, alpha: float = 0.05, power: float = 0.8,
                               comparisons: int = 1) -> int:
    """Customers per arm a two-sided two-proportion z-test needs to detect `relative_lift` over `base_rate`.

    The standard formula n = (z_{1-a/2} sqrt(2 p(1-p)) + z_{power} sqrt(p1 q1 + p2 q2))^2 / (p2 - p1)^2
    with p the mean of p1 = base_rate and p2 = base_rate * (1 + relative_lift);
    `comparisons` treatment arms share alpha (Bonferroni, a little
    conservative for the Holm correction the report applies).
    """
    if not 0 < base_rate < 1:
        raise ValueError(f"base rate must be between 0 and 1, got {base_rate}")
    target = base_rate * (1 + relative_lift)
    if relative_lift == 0 or not 0 < target < 1:
        raise ValueError(f"a relative lift of {relative_lift} on {base_rate} gives a rate of {target}, which must be "
                         f"between 0 and 1 and differ from the base rate")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be between 0 and 1, got {alpha} and {power}")
    if comparisons < 1:
        raise ValueError(f"comparisons must be at least 1, got {comparisons}")
    mean = (base_rate + target) / 2
    z_alpha = NormalDist().inv_cdf(1 - alpha / comparisons / 2)
    z_power = NormalDist().inv_cdf(power)
    spread = (z_alpha * math.sqrt(2 * mean * (1 - mean))
              + z_power * math.sqrt(base_rate * (1 - base_rate) + target * (1 - target)))
    return math.ceil(spread ** 2 / (target - base_rate) ** 2)


def improvement(metric: str, difference: Optional[float]) -> Optional[float]:
    """How much better the treatment is than the control (sign flipped where lower is better)."""
    if difference is None:
        return None
    return -difference if metric in LOWER_IS_BETTER else difference


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the report says about an experiment, and why."""

    status: str  # KEEP_RUNNING | WINNER | NO_DIFFERENCE | GUARDRAIL
    arm: Optional[str] = None  # the winner, or the arm a guardrail stopped
    metric: Optional[str] = None  # the guardrail metric that stopped it
    reason: str = ""

    @property
    def text(self) -> str:
        """The plain verdict: "winner: popularity", "stopped by a guardrail: popularity handoff", ..."""
        if self.status == WINNER:
            return f"{WINNER}: {self.arm}"
        if self.status == GUARDRAIL:
            return f"{GUARDRAIL}: {self.arm} {self.metric}"
        return self.status


def guardrail_breached(experiment: Experiment, metric: str, control: Proportion, treatment: Proportion) -> bool:
    """Whether `treatment` is significantly worse than `control` on `metric` by more than the tolerance.

    "Significantly": the whole (1 - alpha) interval of how much worse it is
    (absolute rate) lies above ``guardrail_tolerance``.
    """
    low, high = difference_interval(control, treatment, 1 - experiment.alpha)
    if low is None:
        return False
    worse_low = -high if metric not in LOWER_IS_BETTER else low  # the lower end of "how much worse"
    return worse_low > experiment.guardrail_tolerance


def decide(experiment: Experiment, arms: Mapping[str, Mapping[str, Proportion]], customers: Mapping[str, int],
           days_run: float) -> Tuple[Verdict, Dict[str, float]]:
    """(verdict, Holm-adjusted p-value per treatment arm) from per-arm, per-metric counts.

    `arms` maps arm name -> metric -> Proportion (every declared arm, the
    control first as declared); `customers` the exposed customers per arm;
    `days_run` the days since the first exposure.
    """
    names = [arm.name for arm in experiment.arms]
    control, treatments = names[0], names[1:]
    metric = experiment.metric
    p_values = [compare(arms[control][metric], arms[name][metric]).p_value for name in treatments]
    adjusted = dict(zip(treatments, holm(p_values)))
    short = [name for name in names if customers.get(name, 0) < experiment.min_exposures]
    if short and days_run < experiment.max_days:
        return Verdict(KEEP_RUNNING, reason=(
            f"{', '.join(short)} under {experiment.min_exposures} customers after {days_run:.1f} of "
            f"{experiment.max_days:g} days; the test is fixed-horizon, so no verdict before then")), adjusted
    for name in treatments:
        for guardrail in experiment.guardrails:
            if guardrail_breached(experiment, guardrail, arms[control][guardrail], arms[name][guardrail]):
                return Verdict(GUARDRAIL, arm=name, metric=guardrail, reason=(
                    f"{name} is worse than {control} on {guardrail} by more than {experiment.guardrail_tolerance:g} "
                    f"at alpha {experiment.alpha:g}")), adjusted
    better = [name for name in treatments if adjusted[name] < experiment.alpha
              and (improvement(metric, compare(arms[control][metric], arms[name][metric]).difference) or 0) > 0]
    if better:
        best = max(better, key=lambda name: improvement(metric, arms[name][metric].rate - arms[control][metric].rate))
        return Verdict(WINNER, arm=best, reason=(
            f"{best} beats {control} on {metric}, Holm-adjusted p {adjusted[best]:.3g} < {experiment.alpha:g}")), adjusted
    worse = [name for name in treatments if adjusted[name] < experiment.alpha]
    why = (f"max_days ({experiment.max_days:g}) reached with {', '.join(short)} under {experiment.min_exposures} customers"
           if short else f"no arm beats {control} on {metric} at alpha {experiment.alpha:g} (Holm-adjusted)")
    if worse:
        why += f"; {', '.join(worse)} significantly worse: keep {control}"
    return Verdict(NO_DIFFERENCE, reason=why), adjusted


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The power calculator on the command line: customers per arm for a lift over a base rate."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bot.insight.abtest",
        description="Customers per arm a two-proportion z-test needs to find a relative lift over a base rate.")
    parser.add_argument("--base-rate", type=float, required=True, help="the control's rate, e.g. 0.05 for 5 %% click-through")
    parser.add_argument("--lift", type=float, action="append", required=True,
                        help="relative lift to detect, e.g. 0.2 for +20 %% (repeat for several)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level, two-sided (default 0.05)")
    parser.add_argument("--power", type=float, default=0.8, help="chance of finding the lift when it is there (default 0.8)")
    parser.add_argument("--arms", type=int, default=2, help="arms including the control (alpha is shared by the others)")
    args = parser.parse_args(argv)
    try:
        for lift in args.lift:
            n = required_customers_per_arm(args.base_rate, lift, args.alpha, args.power, comparisons=max(1, args.arms - 1))
            print(f"base rate {args.base_rate:g}, lift {lift:+.0%}: {n} customers per arm, {n * args.arms} in all "
                  f"(alpha {args.alpha:g}, power {args.power:g}, {args.arms} arms)")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
