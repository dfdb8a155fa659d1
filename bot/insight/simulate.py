"""The simulation benchmark of the experiment report: does it find a true lift at the stated power, and
declare no winner more often than alpha when there is none?

    python -m bot.insight.simulate                 # 200 seeded runs per scenario, prints the table

Each run makes synthetic customers who arrive one after another, are split
by the experiment's own hash (`Experiment.assign`), are exposed one to three
times, click with the probability of their arm and are handed to a person
with the same probability in every arm (the guardrail). Customers keep
arriving until every arm has ``min_exposures`` of them, sized by
`abtest.required_customers_per_arm` for 80 % power; then the report's own
counting (`experiment_report.arm_figures`) and verdict (`abtest.decide`) run
once, as the fixed-horizon test prescribes.

The command keeps the rows in memory and hands them straight to
`arm_figures`; `judge(..., engine)` instead writes them to a database through
the product's writers (`assign_and_log` for assignments and exposures,
`record_interaction` for clicks; see `write_run`) and `experiment_report`
reads them back. Both give the same figures (tests/test_experiment_report.py
checks it); the in-memory path is what makes 200 runs per scenario take
about two minutes instead of hours (one transaction per exposure).

It lives in bot/ because it runs the report, and training/ never imports bot.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from bot.insight import abtest
from bot.insight.experiment_report import DAY, FOLLOW_UP_DAYS, Outcomes, arm_figures, experiment_report, summarise
from bot.insight.experiments import Arm, Experiment, assign_and_log
from core import db
from recommender import record_interaction

START = 1_780_000_000.0  # a fixed clock, so runs are reproducible


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Arms with their true click rates (the first is the control) and what a correct report declares."""

    name: str
    click_rates: Tuple[float, ...]
    truth: Optional[str]  # the arm that truly wins (None: no arm beats the control)
    planned_lift: float = 0.20  # the relative lift min_exposures is sized for (80 % power)
    handoff_rate: float = 0.10  # the same in every arm: a guardrail stop is a false alarm
    alpha: float = 0.05

    def experiment(self) -> Experiment:
        """The declaration the run is judged under: min_exposures from the power calculator."""
        names = tuple(f"arm{i}" for i in range(len(self.click_rates)))
        n = abtest.required_customers_per_arm(self.click_rates[0], self.planned_lift, self.alpha,
                                              comparisons=len(names) - 1)
        return Experiment(name=f"sim-{self.name}", surface="suggestions",
                          arms=tuple(Arm(name, 1.0, {"strategy": "blend"}) for name in names),
                          metric="click_through", guardrails=("handoff",), min_exposures=n, max_days=10_000,
                          alpha=self.alpha)


SCENARIOS = (
    Scenario("A/A, 2 arms", (0.10, 0.10), None),
    Scenario("A/B, +20 % on B", (0.10, 0.12), "arm1"),
    Scenario("A/A/A, 3 arms", (0.10, 0.10, 0.10), None),
    Scenario("A/A/B, +20 % on the third", (0.10, 0.10, 0.12), "arm2"),
)


@dataclasses.dataclass
class Run:
    """The rows one simulated run logged, in the report's shapes."""

    exposures: List[Tuple[str, str, str, float]]  # (arm, customer_id, conversation_id, ts)
    outcomes: Outcomes
    as_of: float


def simulate_run(experiment: Experiment, click_rates: Sequence[float], handoff_rate: float, seed: int) -> Run:
    """One run: customers arrive until every arm has min_exposures of them; their exposures, clicks and handoffs."""
    rng = random.Random(seed)
    rate = dict(zip((a.name for a in experiment.arms), click_rates))
    count = {a.name: 0 for a in experiment.arms}
    exposures: List[Tuple[str, str, str, float]] = []
    clicks: List[Tuple[str, float]] = []
    handoffs: List[Tuple[str, str, float]] = []
    window = FOLLOW_UP_DAYS * DAY
    ts = START
    i = 0
    while min(count.values()) < experiment.min_exposures:
        customer = f"sim{seed}-{i}"
        i += 1
        ts += rng.expovariate(1 / 60.0)  # about one new customer a minute
        arm = experiment.assign(customer)
        count[arm] += 1
        visits = [ts] + sorted(ts + rng.uniform(0, window) for _ in range(rng.randint(0, 2)))
        for k, when in enumerate(visits):
            exposures.append((arm, customer, f"{customer}/c{k}", when))
        if rng.random() < rate[arm]:  # a clicker may click more than once: still one success
            clicks.extend((customer, ts + rng.uniform(0, window / 2)) for _ in range(rng.randint(1, 3)))
        if rng.random() < handoff_rate:
            handoffs.append((None, f"{customer}/c0", ts + rng.uniform(0, window / 2)))
    return Run(exposures, Outcomes(clicks=clicks, handoffs=handoffs), as_of=ts + window + 1)


def write_run(engine, experiment: Experiment, run: Run) -> None:
    """The run's rows into the database through the product's own writers, in the order they happened.

    Exposures go through `assign_and_log` (which stores each customer's arm
    at the first one and logs every one; the arm it returns must be the one
    simulated), clicks through `record_interaction`. Handoffs are inserted
    here: the handoff queue stamps them with the wall clock, and the
    simulation runs on its own clock.
    """
    for arm, customer, conversation, ts in sorted(run.exposures, key=lambda row: row[3]):
        served = assign_and_log(engine, experiment, customer, conversation, now=ts)
        if served.name != arm:
            raise RuntimeError(f"assign_and_log served {customer} arm {served.name}, the simulation expected {arm}")
    for customer, ts in run.outcomes.clicks:
        record_interaction(engine, customer, "sim-item", "click", conversation_id=None, timestamp=ts)
    if run.outcomes.handoffs:
        with engine.begin() as conn:
            conn.execute(db.handoffs.insert(), [{"conversation_id": v, "customer_id": c, "reason": "asked",
                                                 "created_at": t, "updated_at": t} for c, v, t in run.outcomes.handoffs])


def judge(experiment: Experiment, run: Run, engine=None) -> Dict:
    """The report of one run: from the rows in memory, or written to `engine` and read back."""
    if engine is not None:
        write_run(engine, experiment, run)
        return experiment_report(engine, [experiment], as_of=run.as_of)[0]
    arms, facts = arm_figures(experiment, run.exposures, run.outcomes, run.as_of)
    return summarise(experiment, arms, facts, run.as_of)


@dataclasses.dataclass
class Result:
    scenario: Scenario
    customers_per_arm: int
    runs: int
    winners: Dict[str, int]  # verdicts "winner: <arm>" by arm
    guardrail_stops: int
    seconds: float

    @property
    def any_winner(self) -> int:
        return sum(self.winners.values())

    @property
    def true_winner(self) -> int:
        return self.winners.get(self.scenario.truth, 0) if self.scenario.truth else 0


def run_scenario(scenario: Scenario, runs: int, seed: int = 0) -> Result:
    """`runs` seeded runs of `scenario` (run k uses seed + k) and how often each verdict came out."""
    experiment = scenario.experiment()
    winners: Dict[str, int] = {}
    stops = 0
    began = time.perf_counter()
    for r in range(runs):
        report = judge(experiment, simulate_run(experiment, scenario.click_rates, scenario.handoff_rate, seed + r))
        if report["verdict_status"] == abtest.WINNER:
            arm = report["verdict"].split(": ", 1)[1]
            winners[arm] = winners.get(arm, 0) + 1
        stops += report["verdict_status"] == abtest.GUARDRAIL
    return Result(scenario, experiment.min_exposures, runs, winners, stops, time.perf_counter() - began)


def _share(k: int, n: int) -> str:
    low, high = abtest.wilson_interval(k, n)
    return f"{k / n:.3f} [{low:.3f}, {high:.3f}]"


def table(results: Sequence[Result]) -> List[str]:
    """The benchmark table: power on the true winner, any-winner rate (false positives where there is none)."""
    lines = ["| scenario | click rates | customers per arm | runs | true winner found (power) | any winner | "
             "guardrail stops | seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.scenario
        power = _share(r.true_winner, r.runs) if s.truth else "-"
        lines.append(f"| {s.name} | {', '.join(f'{x:g}' for x in s.click_rates)} | {r.customers_per_arm} | {r.runs} | "
                     f"{power} | {_share(r.any_winner, r.runs)} | {_share(r.guardrail_stops, r.runs)} | {r.seconds:.1f} |")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.insight.simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="seeded runs per scenario (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run (run k uses seed + k)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        print("error: --runs must be at least 1", file=sys.stderr)
        return 2
    results = [run_scenario(s, args.runs, args.seed) for s in SCENARIOS]
    print("\n".join(table(results)))
    print(f"alpha 0.05; min_exposures sized for 80 % power at +20 % (Bonferroni over the treatment arms); "
          "shares with 95 % Wilson intervals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
