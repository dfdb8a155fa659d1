"""Experiments: declared in one place, each customer's arm fixed at the first exposure, every exposure logged.

    experiments = load_experiments()          # bot/experiments.yml, validated (ExperimentConfigError names the problem)
    arm_for("cust-42", "suggestions", ["blend", "off"], [0.5, 0.5])   # the hash split, same in every process
    arm = apply_experiment("suggestions", "cust-42", "rest:web:cust-42")   # None: no experiment on that surface

An experiment (``bot/experiments.yml``, path in the ``experiments_file``
setting) has a name, a surface (``suggestions``: which ranking strategy the
recommender uses; ``answers``: the retrieval threshold and whether answers
are re-ranked by ratings), arms with weights and parameters, the metric that
decides, guardrail metrics, a minimum number of exposures per arm and a
longest run time. See the file for the fields.

Assignment hashes ``experiment:customer_id`` with SHA-256, so it is the same
in every process and on every run (Python's `hash()` is salted per process
and would not be), and adding a customer never moves another one.

Serving (`apply_experiment`, `assign_and_log`): the first time a customer
meets an experiment, the arm the hash split gives under the weights declared
then is stored in ``experiment_assignments`` (insert-or-ignore, then read
back, so processes racing on one customer agree); from then on that stored
arm is theirs, whatever the weights become. Each time an arm is applied one
row goes to ``experiment_exposures`` (experiment, arm, customer,
conversation, time); outcomes join on it. This module is the only writer of
both tables. An arm removed from the declaration after customers were
exposed to it: those customers keep their stored arm (it is theirs again if
the arm comes back), are served the control, and their exposures are logged
under ``removed:<arm>`` so that they count in no arm's figures. When the
database fails, the customer is still served (the stored arm known to this
process, else the hash split), nothing is logged, the error goes to the log
and to ``assistant_errors_total{kind="experiments"}``.

The declaration is read once per process (`declared`); the servers read it at
start and refuse to start when it is broken (`declared_or_exit`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from core import db, metrics

logger = logging.getLogger(__name__)

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


# ------------------------------------------------------------------ the declaration in force in this process

REMOVED_ARM = "removed:"  # prefix of the arm logged for a customer whose stored arm is no longer declared
_declared: Optional[List[Experiment]] = None
_declared_lock = threading.Lock()


def declared() -> List[Experiment]:
    """The experiments of the ``experiments_file`` setting, read once per process (`reset_experiments` forgets them).

    Raises `ExperimentConfigError` when the file is broken (the servers check
    it at start, `declared_or_exit`).
    """
    global _declared
    with _declared_lock:
        if _declared is None:
            _declared = load_experiments()
        return _declared


def reset_experiments() -> None:
    """Forget the declaration read and the assignments known (tests; a changed ``experiments_file``)."""
    global _declared
    with _declared_lock:
        _declared = None
    with _assigned_lock:
        _assigned.clear()


def declared_or_exit(server: str) -> List[Experiment]:
    """`declared()`, or stop the process with exit status 2 printing what is wrong (a server's start-up)."""
    try:
        return declared()
    except ExperimentConfigError as exc:
        logger.error("cannot start %s: %s", server, exc)
        print(f"cannot start {server}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def active_experiment(surface: str, experiments: Optional[Sequence[Experiment]] = None) -> Optional[Experiment]:
    """The enabled experiment on `surface` (``suggestions`` or ``answers``) among `experiments` (default: `declared()`)."""
    if surface not in SURFACES:
        raise ValueError(f"unknown experiment surface {surface!r}; known: {', '.join(SURFACES)}")
    for experiment in declared() if experiments is None else experiments:
        if experiment.enabled and experiment.surface == surface:
            return experiment
    return None


# ------------------------------------------------------------------ assignment and exposures

# (experiment, customer) -> the stored arm, as read from experiment_assignments by this process.
# Bounded: past MAX_KNOWN_ASSIGNMENTS the older half is dropped (and read again when needed).
MAX_KNOWN_ASSIGNMENTS = 200_000
_assigned: Dict[Tuple[str, str], str] = {}
_assigned_lock = threading.Lock()


def _remember(key: Tuple[str, str], arm: str) -> None:
    with _assigned_lock:
        if len(_assigned) >= MAX_KNOWN_ASSIGNMENTS:
            for old in list(itertools.islice(_assigned, MAX_KNOWN_ASSIGNMENTS // 2)):
                del _assigned[old]
        _assigned[key] = arm


def forget_assignments(ids: Sequence[str]) -> int:
    """Drop what this process knows of these customers' arms (an erasure); returns how many it knew."""
    wanted = {str(i) for i in ids}
    with _assigned_lock:
        doomed = [key for key in _assigned if key[1] in wanted]
        for key in doomed:
            del _assigned[key]
    return len(doomed)


def served_arm(experiment: Experiment, stored: str) -> Tuple[Arm, str]:
    """(the arm served, the arm name logged) for a customer whose stored arm is `stored`.

    A stored arm no longer declared: the control is served and the exposure
    is logged as ``removed:<stored>``, counted in no arm's figures.
    """
    try:
        return experiment.arm(stored), stored
    except KeyError:
        return experiment.control, (REMOVED_ARM + stored)[:64]


def _stored_arm(conn: sa.engine.Connection, experiment: Experiment, customer_id: str, now: float) -> str:
    """The customer's arm in experiment_assignments, stored now from the hash split when they have none."""
    table = db.experiment_assignments
    conn.execute(db.insert_ignoring_duplicates(conn, table, ("experiment", "customer_id")),
                 {"experiment": experiment.name, "customer_id": customer_id, "arm": experiment.assign(customer_id),
                  "assigned_at": now})
    return conn.execute(sa.select(table.c.arm).where(table.c.experiment == experiment.name,
                                                     table.c.customer_id == customer_id)).scalar_one()


def assign_and_log(engine: Engine, experiment: Experiment, customer_id: str, conversation_id: Optional[str],
                   now: Optional[float] = None) -> Arm:
    """The arm of `experiment` to serve `customer_id` now; the exposure is logged (one row) before it is returned.

    A customer's first exposure stores their arm (the hash split under the
    weights declared now); later ones read it, from this process's memory
    when it knows it (one INSERT per exposure). A database failure costs the
    log, never the answer: the arm is served all the same (module docstring).
    """
    now = time.time() if now is None else float(now)
    customer_id = str(customer_id)
    key = (experiment.name, customer_id)
    stored = _assigned.get(key)
    try:
        with engine.begin() as conn:
            if stored is None:
                stored = _stored_arm(conn, experiment, customer_id, now)
            arm, logged = served_arm(experiment, stored)
            conn.execute(db.experiment_exposures.insert().values(
                experiment=experiment.name, arm=logged, customer_id=customer_id, conversation_id=conversation_id, ts=now))
    except sa.exc.SQLAlchemyError:
        return _unlogged(experiment, customer_id)
    _remember(key, stored)
    return arm


def _unlogged(experiment: Experiment, customer_id: str) -> Arm:
    """The arm served when the exposure cannot be logged: the stored one this process knows, else the hash split."""
    metrics.ERRORS.labels("experiments").inc()
    logger.exception("exposure of customer %r to experiment %s not logged; serving their arm all the same",
                     customer_id, experiment.name)
    return served_arm(experiment, _assigned.get((experiment.name, customer_id)) or experiment.assign(customer_id))[0]


def apply_experiment(surface: str, customer_id: str, conversation_id: Optional[str]) -> Optional[Arm]:
    """The arm `customer_id` is served on `surface` now, its exposure logged; None when no experiment runs there.

    Never raises for the database or the declaration: an unreachable
    database serves the hash-split arm unlogged, a declaration that cannot
    be read (a process started without `declared_or_exit`) runs no experiment;
    both are logged and counted in ``assistant_errors_total{kind="experiments"}``.
    """
    global _declared
    try:
        experiment = active_experiment(surface)
    except ExperimentConfigError as exc:
        metrics.ERRORS.labels("experiments").inc()
        logger.error("no experiment runs in this process: %s", exc)
        with _declared_lock:
            _declared = []  # said once; read again only after a restart (as a good declaration would be)
        return None
    if experiment is None:
        return None
    try:
        engine = db.connect()
    except (db.DatabaseUnavailableError, sa.exc.SQLAlchemyError, OSError):  # OSError: a SQLite folder that cannot be made
        return _unlogged(experiment, str(customer_id))
    return assign_and_log(engine, experiment, customer_id, conversation_id)
