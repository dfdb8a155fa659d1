"""Experiments: declared in one place, each customer's arm fixed at the first exposure, every exposure logged.

    experiments = load_experiments()          # bot/experiments.yml, validated (ExperimentConfigError names the problem)
    arm_for("cust-42", "suggestions", ["blend", "off"], [0.5, 0.5])   # the hash split, same in every process

An experiment (``bot/experiments.yml``, path in the ``experiments_file``
setting) has a name, a surface (``suggestions``: which ranking strategy the
recommender uses; ``answers``: the retrieval threshold and whether answers
are re-ranked by ratings), arms with weights and parameters, the metric that
decides, guardrail metrics, a minimum number of exposures per arm and a
longest run time. See the file for the fields.

Assignment hashes ``experiment:customer_id`` with SHA-256, so it is the same
in every process and on every run (Python's `hash()` is salted per process
and would not be), and adding a customer never moves another one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

# What each surface's arms may be. Suggestions: the recommender's ranking strategy
# (``off``: no suggestions). Answers: any arm name; its parameters say what it changes.
SURFACES = ("suggestions", "answers")
SUGGESTION_STRATEGIES = ("off", "popularity", "content", "item_item", "sequence", "blend")
ANSWER_PARAMETERS = {"threshold": float, "rerank": bool}
# The metrics an experiment can be decided or guarded by (bot.insight.analytics computes them per arm).
METRICS = {
    "click_through": "exposures followed by a click on a suggestion in the same conversation",
    "conversion": "exposures followed by a purchase by the customer within the follow-up window",
    "thumbs_up": "rated answers rated up",
    "handoff": "exposures whose conversation was handed to a person (lower is better)",
    "containment": "exposures whose conversation ended without a person",
}
LOWER_IS_BETTER = frozenset({"handoff"})


class ExperimentConfigError(ValueError):
    """An experiment declaration that cannot run (the message names the file, experiment and field)."""


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


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    weight: float
    # suggestions: {"strategy": one of SUGGESTION_STRATEGIES} (default: the arm's name);
    # answers: {"threshold": float, "rerank": bool}, each optional (default: the settings, rerank on).
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    surface: str
    arms: Tuple[Arm, ...]
    metric: str
    guardrails: Tuple[str, ...] = ()
    min_exposures: int = 1000  # per arm, before a verdict other than "keep running"
    max_days: float = 28.0  # a run longer than this ends with the verdict it has
    alpha: float = 0.05
    guardrail_tolerance: float = 0.0  # how much worse (absolute rate) a guardrail may get
    enabled: bool = True

    @property
    def control(self) -> Arm:
        """The first arm: what the others are compared with."""
        return self.arms[0]

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def assign(self, customer_id: str) -> str:
        """The arm the hash split gives `customer_id` under the weights now declared (before any exposure)."""
        return arm_for(customer_id, self.name, [a.name for a in self.arms], [a.weight for a in self.arms])


def _fail(where: str, problem: str) -> ExperimentConfigError:
    return ExperimentConfigError(f"{where}: {problem}")


def _arm(where: str, surface: str, raw: Any) -> Arm:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or not str(raw.get("name") or "").strip():
        raise _fail(where, f"each arm needs a name, got {raw!r}")
    name = str(raw["name"]).strip()
    where = f"{where}, arm '{name}'"
    try:
        weight = float(raw.get("weight", 1.0))
    except (TypeError, ValueError):
        raise _fail(where, f"weight {raw.get('weight')!r} is not a number") from None
    if weight < 0 or math.isnan(weight):
        raise _fail(where, f"weight {weight} is negative")
    params = {k: v for k, v in raw.items() if k not in ("name", "weight")}
    if surface == "suggestions":
        strategy = str(params.get("strategy", name))
        if strategy not in SUGGESTION_STRATEGIES:
            raise _fail(where, f"unknown suggestion strategy '{strategy}'; known: {', '.join(SUGGESTION_STRATEGIES)}")
        unknown = sorted(set(params) - {"strategy"})
        params = {"strategy": strategy}
    else:
        unknown = sorted(set(params) - set(ANSWER_PARAMETERS))
        for key, kind in ANSWER_PARAMETERS.items():
            if key in params and not isinstance(params[key], (kind, int) if kind is float else kind):
                raise _fail(where, f"{key} must be {'a number' if kind is float else 'true or false'}, got {params[key]!r}")
        if "threshold" in params:
            params["threshold"] = float(params["threshold"])
            if not 0.0 <= params["threshold"] <= 1.0:
                raise _fail(where, f"threshold {params['threshold']} is not between 0 and 1")
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown}")
    return Arm(name=name, weight=weight, params=params)


def experiment_from_dict(raw: Any, where: str = "experiment") -> Experiment:
    """One validated `Experiment` from its declaration; `ExperimentConfigError` names what is wrong."""
    if not isinstance(raw, dict):
        raise _fail(where, f"an experiment is a mapping, got {raw!r}")
    name = str(raw.get("name") or "").strip()
    if not name:
        raise _fail(where, "the experiment has no name")
    where = f"{where} '{name}'"
    known = {f.name for f in dataclasses.fields(Experiment)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown}; known: {sorted(known)}")
    surface = raw.get("surface")
    if surface not in SURFACES:
        raise _fail(where, f"surface must be one of {list(SURFACES)}, got {surface!r}")
    arms = tuple(_arm(where, surface, a) for a in (raw.get("arms") or []))
    if len(arms) < 1:
        raise _fail(where, "it names no arms")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise _fail(where, f"arm names repeat: {names}")
    if not sum(a.weight for a in arms) > 0:
        raise _fail(where, f"the weights {[a.weight for a in arms]} do not sum to a positive number")
    metric = raw.get("metric")
    if metric not in METRICS:
        raise _fail(where, f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    guardrails = tuple(raw.get("guardrails") or ())
    for guardrail in guardrails:
        if guardrail not in METRICS:
            raise _fail(where, f"unknown guardrail metric {guardrail!r}; known: {', '.join(METRICS)}")
    try:
        experiment = Experiment(
            name=name, surface=surface, arms=arms, metric=metric, guardrails=guardrails,
            min_exposures=int(raw.get("min_exposures", 1000)), max_days=float(raw.get("max_days", 28.0)),
            alpha=float(raw.get("alpha", 0.05)), guardrail_tolerance=float(raw.get("guardrail_tolerance", 0.0)),
            enabled=bool(raw.get("enabled", True)),
        )
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"a number field is not a number ({exc})") from None
    if not 0 < experiment.alpha < 1:
        raise _fail(where, f"alpha {experiment.alpha} is not between 0 and 1")
    if experiment.min_exposures < 1 or experiment.max_days <= 0:
        raise _fail(where, "min_exposures and max_days must be positive")
    return experiment


def load_experiments(path: Union[str, Path, None] = None) -> List[Experiment]:
    """The experiments declared in `path` (default: the ``experiments_file`` setting); [] when it is absent.

    Raises `ExperimentConfigError` naming the file and the experiment when
    anything is wrong, so a server refuses to start rather than run a
    broken experiment; two enabled experiments on one surface are refused too.
    """
    if path is None:
        from core.settings import get_settings

        path = get_settings().experiments_file
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExperimentConfigError(f"{path}: cannot be read as YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("experiments", []), list):
        raise ExperimentConfigError(f"{path}: expected a mapping with a list under 'experiments'")
    experiments = [experiment_from_dict(raw, f"{path}: experiment {i + 1}") for i, raw in enumerate(data.get("experiments") or [])]
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ExperimentConfigError(f"{path}: experiment names repeat: {names}")
    surfaces = [e.surface for e in experiments if e.enabled]
    for surface in set(surfaces):
        if surfaces.count(surface) > 1:
            raise ExperimentConfigError(f"{path}: more than one enabled experiment on the '{surface}' surface")
    return experiments


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
