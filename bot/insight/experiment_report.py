"""Per-experiment, per-arm figures and verdicts from the logged exposures and the outcomes that followed them.

    report = experiment_report(db.connect(), load_experiments(), as_of=time.time())
    for e in report: print(e["name"], e["verdict"])

The unit of analysis is the customer: a customer's first exposure to an
experiment (``experiment_exposures``) puts them in the arm logged then and
starts their observation window (``follow_up_days``, 14 by default); their
later exposures add to the arm's exposure count but not to its sample. An
outcome counts when it happens inside the window, at or after the first
exposure and before ``as_of``:

- click_through: customers with an ``interactions`` row of kind ``click`` / customers;
- conversion: customers with an ``interactions`` row of kind ``purchase`` / customers;
- thumbs_up: ``answer_ratings`` rated up / ratings, by these customers (matched
  on customer id, or on a conversation they were exposed in);
- handoff: customers with a ``handoffs`` row (same matching) / customers;
- containment: customers without one / customers (customer level: 1 - handoff).

`arm_figures` does the counting over plain rows, so the simulation benchmark
(`bot.insight.simulate`) can count rows it holds in memory with the very code
the report runs on rows read from the database.
"""
from __future__ import annotations

import dataclasses
import time
from bisect import bisect_left
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import sqlalchemy as sa

from bot.insight import abtest
from bot.insight.experiments import METRICS, Experiment
from core import db

DAY = 86400.0
FOLLOW_UP_DAYS = 14.0


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """The outcome rows the metrics are counted from, as plain tuples."""

    clicks: Sequence[Tuple[str, float]] = ()  # (customer_id, ts)
    purchases: Sequence[Tuple[str, float]] = ()  # (customer_id, ts)
    ratings: Sequence[Tuple[Optional[str], Optional[str], int, float]] = ()  # (customer_id, conversation_id, rating, ts)
    handoffs: Sequence[Tuple[Optional[str], Optional[str], float]] = ()  # (customer_id, conversation_id, created_at)


@dataclasses.dataclass
class ArmFigures:
    """One arm: exposed customers, exposures, and each metric as successes / trials."""

    arm: str
    customers: int = 0
    exposures: int = 0
    metrics: Dict[str, abtest.Proportion] = dataclasses.field(default_factory=dict)


def _times_by_customer(rows: Iterable[Tuple[str, float]]) -> Dict[str, List[float]]:
    times: Dict[str, List[float]] = defaultdict(list)
    for customer, ts in rows:
        times[customer].append(ts)
    for values in times.values():
        values.sort()
    return times


def _any_within(times: Sequence[float], start: float, end: float) -> bool:
    """Whether a sorted `times` has a value in [start, end)."""
    i = bisect_left(times, start)
    return i < len(times) and times[i] < end


def arm_figures(experiment: Experiment, exposures: Iterable[Tuple[str, str, Optional[str], float]], outcomes: Outcomes,
                as_of: float, follow_up_days: float = FOLLOW_UP_DAYS) -> Tuple[Dict[str, ArmFigures], Dict[str, Any]]:
    """(figures per declared arm, facts about the log) from exposure rows (arm, customer_id, conversation_id, ts).

    Facts: ``first_exposure`` (ts or None), ``moved_customers`` (customers
    logged in more than one arm; always 0 when assignment works) and
    ``undeclared_arms`` (customers per arm no longer declared, left out).
    """
    first: Dict[str, Tuple[float, str]] = {}
    exposures_of: Dict[str, int] = defaultdict(int)
    arms_of: Dict[str, set] = defaultdict(set)
    conversation_owner: Dict[str, str] = {}
    for arm, customer, conversation, ts in sorted(exposures, key=lambda row: row[3]):
        first.setdefault(customer, (ts, arm))
        exposures_of[customer] += 1
        arms_of[customer].add(arm)
        if conversation:
            conversation_owner.setdefault(conversation, customer)

    def owner(customer: Optional[str], conversation: Optional[str]) -> Optional[str]:
        """The exposed customer a rating or handoff belongs to: by customer id, else by conversation."""
        return customer if customer in first else conversation_owner.get(conversation or "")

    clicks, purchases = _times_by_customer(outcomes.clicks), _times_by_customer(outcomes.purchases)
    handoffs = _times_by_customer((owner(customer, conversation), ts) for customer, conversation, ts in outcomes.handoffs
                                  if owner(customer, conversation))
    ratings: Dict[str, List[Tuple[float, int]]] = defaultdict(list)
    for customer, conversation, rating, ts in outcomes.ratings:
        if owner(customer, conversation):
            ratings[owner(customer, conversation)].append((ts, rating))

    window = follow_up_days * DAY
    declared = {arm.name: ArmFigures(arm.name) for arm in experiment.arms}
    counts = {name: defaultdict(lambda: [0, 0]) for name in declared}
    undeclared: Dict[str, int] = defaultdict(int)
    for customer, (start, arm) in first.items():
        if arm not in declared:
            undeclared[arm] += 1
            continue
        end = min(start + window, as_of)
        figures, tally = declared[arm], counts[arm]
        figures.customers += 1
        figures.exposures += exposures_of[customer]
        handed = _any_within(handoffs.get(customer, ()), start, end)
        for metric, hit in (("click_through", _any_within(clicks.get(customer, ()), start, end)),
                            ("conversion", _any_within(purchases.get(customer, ()), start, end)),
                            ("handoff", handed), ("containment", not handed)):
            tally[metric][0] += hit
            tally[metric][1] += 1
        for ts, rating in ratings.get(customer, ()):
            if start <= ts < end:
                tally["thumbs_up"][0] += rating > 0
                tally["thumbs_up"][1] += 1
    for name, figures in declared.items():
        figures.metrics = {metric: abtest.Proportion(*counts[name][metric]) for metric in METRICS}
    facts = {"first_exposure": min((ts for ts, _ in first.values()), default=None),
             "moved_customers": sum(1 for arms in arms_of.values() if len(arms) > 1),
             "undeclared_arms": dict(undeclared)}
    return declared, facts


def summarise(experiment: Experiment, arms: Mapping[str, ArmFigures], facts: Mapping[str, Any],
              as_of: float) -> Dict[str, Any]:
    """The report of one experiment as plain data: per-arm rates with CIs, lift vs the control, verdict, sample sizes."""
    control = experiment.control.name
    started = facts["first_exposure"]
    days_run = (as_of - started) / DAY if started is not None else 0.0
    verdict, adjusted = abtest.decide(experiment, {n: a.metrics for n, a in arms.items()},
                                      {n: a.customers for n, a in arms.items()}, days_run)
    rows = []
    for name, figures in arms.items():
        metrics = {}
        for metric, proportion in figures.metrics.items():
            low, high = abtest.wilson_interval(proportion.successes, proportion.trials)
            entry: Dict[str, Any] = {"successes": proportion.successes, "trials": proportion.trials,
                                     "rate": proportion.rate, "ci": (low, high)}
            if name != control:
                c = abtest.compare(arms[control].metrics[metric], proportion)
                entry.update(difference=c.difference, difference_ci=c.difference_ci, lift=c.lift, lift_ci=c.lift_ci,
                             z=c.z, p_value=c.p_value)
            metrics[metric] = entry
        if name != control:
            metrics[experiment.metric]["p_adjusted"] = adjusted[name]
        rows.append({"arm": name, "customers": figures.customers, "exposures": figures.exposures, "metrics": metrics})
    base = arms[control].metrics[experiment.metric].rate
    planning = {}
    for lift in abtest.PLANNING_LIFTS:
        try:
            planning[lift] = abtest.required_customers_per_arm(
                base, lift, experiment.alpha, comparisons=max(1, len(arms) - 1))
        except (TypeError, ValueError):  # no control rate yet, or one of 0 or 1
            planning[lift] = None
    return {
        "name": experiment.name, "surface": experiment.surface, "enabled": experiment.enabled,
        "control": control, "metric": experiment.metric, "guardrails": list(experiment.guardrails),
        "alpha": experiment.alpha, "min_exposures": experiment.min_exposures, "max_days": experiment.max_days,
        "guardrail_tolerance": experiment.guardrail_tolerance, "started": started, "days_run": days_run,
        "arms": rows, "verdict": verdict.text, "verdict_status": verdict.status, "verdict_reason": verdict.reason,
        "required_per_arm": planning, "moved_customers": facts["moved_customers"],
        "undeclared_arms": facts["undeclared_arms"],
    }


def read_rows(engine, experiment: str, as_of: float) -> Tuple[List[Tuple[str, str, Optional[str], float]], Outcomes]:
    """The exposures of `experiment` before `as_of`, and the outcome rows from its first exposure to `as_of`."""
    e, i, r, h = db.experiment_exposures, db.interactions, db.answer_ratings, db.handoffs
    with engine.connect() as conn:
        exposures = [tuple(row) for row in conn.execute(
            sa.select(e.c.arm, e.c.customer_id, e.c.conversation_id, e.c.ts)
            .where(e.c.experiment == experiment).where(e.c.ts < as_of))]
        if not exposures:
            return [], Outcomes()
        start = min(row[3] for row in exposures)
        kinds = defaultdict(list)
        for customer, kind, ts in conn.execute(
                sa.select(i.c.customer_id, i.c.kind, i.c.ts).where(i.c.kind.in_(("click", "purchase")))
                .where(i.c.ts >= start).where(i.c.ts < as_of)):
            kinds[kind].append((customer, ts))
        ratings = [tuple(row) for row in conn.execute(
            sa.select(r.c.customer_id, r.c.conversation_id, r.c.rating, r.c.ts).where(r.c.ts >= start).where(r.c.ts < as_of))]
        handoffs = [tuple(row) for row in conn.execute(
            sa.select(h.c.customer_id, h.c.conversation_id, h.c.created_at)
            .where(h.c.created_at >= start).where(h.c.created_at < as_of))]
    return exposures, Outcomes(kinds["click"], kinds["purchase"], ratings, handoffs)


def experiment_report(engine, experiments: Sequence[Experiment], as_of: Optional[float] = None,
                      follow_up_days: float = FOLLOW_UP_DAYS) -> List[Dict[str, Any]]:
    """The report of each declared experiment from everything logged before `as_of` (default: now).

    An experiment is judged on its whole run, not on the analytics period:
    cutting the run into periods would test it again and again (peeking).
    """
    as_of = time.time() if as_of is None else as_of
    report = []
    for experiment in experiments:
        exposures, outcomes = read_rows(engine, experiment.name, as_of)
        arms, facts = arm_figures(experiment, exposures, outcomes, as_of, follow_up_days)
        report.append(summarise(experiment, arms, facts, as_of))
    return report
