"""Experiments: split customers between arms by a stable hash, and compare the arms.

    arm_for("cust-42", "recommender", ["blend", "off"], [0.5, 0.5])  # same answer forever
    recommender_arm("cust-42")       # the arm the suggestion code should use
    two_proportion_z_test(30, 400, 18, 410)  # -> (z, two-sided p)

The assignment hashes ``experiment:customer_id`` with SHA-256, so it is the
same in every process and on every run (Python's `hash()` is salted per
process and would not be), and adding a customer never moves another one.

The recommender experiment is configured by ``ASSISTANT_RECOMMENDER_EXPERIMENT``
as ``arm:weight,arm:weight`` (for example ``blend:50,popularity:25,off:25``);
unset, every customer gets ``blend`` (no experiment running). ``off`` means
no suggestions at all.
"""
from __future__ import annotations

import hashlib
import math
import os
from typing import Dict, Optional, Sequence, Tuple

RECOMMENDER_EXPERIMENT = "recommender"
DEFAULT_RECOMMENDER_ARMS: Dict[str, float] = {"blend": 1.0}
# Arms the suggestion code understands: the full blend, popularity only, or no suggestions.
KNOWN_RECOMMENDER_ARMS = ("blend", "popularity", "content", "off")


class ExperimentConfigError(ValueError):
    """An experiment names no arms, a negative weight or weights that sum to zero."""


def _bucket(customer_id: str, experiment: str) -> float:
    """A number in [0, 1) fixed by the experiment and the customer id."""
    digest = hashlib.sha256(f"{experiment}:{customer_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_for(customer_id: str, experiment: str, arms: Sequence[str], weights: Optional[Sequence[float]] = None) -> str:
    """The arm of `experiment` that `customer_id` is in; stable across processes and runs.

    `weights` (default: equal) need not sum to one; a customer's place on the
    line [0, 1) decides the arm, so changing the weights only moves the
    customers near a boundary.
    """
    arms = list(arms)
    weights = [1.0] * len(arms) if weights is None else [float(w) for w in weights]
    if not arms or len(weights) != len(arms):
        raise ExperimentConfigError(f"experiment '{experiment}' needs arms with one weight each, got {arms} and {weights}")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ExperimentConfigError(f"experiment '{experiment}' weights must be ≥ 0 and not all 0, got {weights}")
    point = _bucket(str(customer_id), experiment) * sum(weights)
    edge = 0.0
    for arm, weight in zip(arms, weights):
        edge += weight
        if point < edge:
            return arm
    return arms[-1]  # only reachable through rounding at the very top


def parse_arms(spec: str) -> Dict[str, float]:
    """``"blend:50,off:50"`` -> ``{"blend": 50.0, "off": 50.0}``; a bare name weighs 1."""
    arms: Dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        try:
            arms[name.strip()] = float(weight) if weight else 1.0
        except ValueError as exc:
            raise ExperimentConfigError(f"experiment arm '{part}': the weight after ':' must be a number") from exc
    if not arms:
        raise ExperimentConfigError(f"no arms in experiment spec {spec!r}; write it as arm:weight,arm:weight")
    return arms


def recommender_arms(environ: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """The arms and weights of the recommender experiment now in force."""
    environ = os.environ if environ is None else environ
    spec = environ.get("ASSISTANT_RECOMMENDER_EXPERIMENT", "").strip()
    if not spec:
        return dict(DEFAULT_RECOMMENDER_ARMS)
    arms = parse_arms(spec)
    unknown = sorted(set(arms) - set(KNOWN_RECOMMENDER_ARMS))
    if unknown:
        raise ExperimentConfigError(
            f"ASSISTANT_RECOMMENDER_EXPERIMENT names unknown arm(s) {unknown}; known arms: {list(KNOWN_RECOMMENDER_ARMS)}"
        )
    return arms


def recommender_arm(customer_id: str, environ: Optional[Dict[str, str]] = None) -> str:
    """The recommender strategy for this customer: "blend", "popularity", "content" or "off"."""
    arms = recommender_arms(environ)
    return arm_for(customer_id, RECOMMENDER_EXPERIMENT, list(arms), list(arms.values()))


def two_proportion_z_test(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> Tuple[float, float]:
    """(z, two-sided p-value) for "arm A and arm B have the same rate" (pooled z-test).

    Returns (0.0, 1.0) when either arm has no trials or the pooled rate is 0 or 1,
    where the test says nothing.
    """
    if trials_a <= 0 or trials_b <= 0:
        return 0.0, 1.0
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    if se == 0:
        return 0.0, 1.0
    z = (successes_a / trials_a - successes_b / trials_b) / se
    return z, math.erfc(abs(z) / math.sqrt(2))
