"""Per-message costs of Rasa 3.6 that the project removes, applied when its channels load.

- `RemoteAction._validate_action_result` calls ``jsonschema.validate`` on every
  custom action's response, which checks the schema itself and builds a new
  validator each time (about a quarter of a custom action's cost in the Rasa
  server). The schema never changes, so the checked validator is built once.
  Same schema, same errors: a malformed response still raises
  ``ValidationError`` with Rasa's hint appended.
- `LockStore.lock` makes a message that waits behind another of the same
  conversation re-check its ticket once a second, so a customer who sends
  twice quickly waits up to a second for nothing. It re-checks every
  `LOCK_POLL_S` (20 ms) instead: a dictionary lookup in memory, one GET on Redis.
- The message processor and the memoization and rule policies deep-copy
  the dialogue states, events and slots of every prediction only to pass
  them to ``structlogger.debug``, which then drops them unless debug logging
  is on: 6.5 % of the server's time under load (py-spy). Those three
  modules use ``copy.deepcopy`` for nothing else, so they get a ``copy``
  whose ``deepcopy`` copies only while Rasa logs at debug level.
- `DaskGraphRunner.run` prunes the graph schema for its targets (a
  recursion without memo that revisits shared branches), rebuilds the dask
  graph, formats its inputs (the whole tracker) into a debug message and
  runs dask's general scheduler, for each of the three or so graph runs of
  a message (7 % of the event loop outside the components). The pruned
  graph is kept per target list and run by `run_graph`, which evaluates the
  same graph (each node: a callable and the names of the nodes it needs)
  the way ``dask.get`` does.
- The interpreter's GIL switch interval is shortened so that the model
  thread (`core.serving`) is not starved by the event loop.
"""
from __future__ import annotations

import copy
import functools
import logging
from typing import Any, Dict, List, Optional, Sequence


@functools.lru_cache(maxsize=None)
def _action_response_validator():
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate_action_result(self, result: Dict[str, Any]) -> bool:
    from jsonschema import ValidationError, exceptions
    from rasa.shared.constants import DOCS_BASE_URL

    error = exceptions.best_match(_action_response_validator().iter_errors(result))
    if error is None:
        return True
    error.message += (
        ". Failed to validate Action server response from API, make sure your response from the "
        f"Action endpoint is valid. For more information about the format visit {DOCS_BASE_URL}/custom-actions"
    )
    raise error if isinstance(error, ValidationError) else ValidationError(error.message)


LOCK_POLL_S = 0.02


def _polling_lock(original):
    def lock(self, conversation_id, lock_lifetime=None, wait_time_in_seconds=LOCK_POLL_S):
        from rasa.core.lock_store import LOCK_LIFETIME

        return original(self, conversation_id, LOCK_LIFETIME if lock_lifetime is None else lock_lifetime, wait_time_in_seconds)

    lock.__wrapped__ = original
    return lock


class _CopyForDebugLogs:
    """The `copy` module for modules whose every ``deepcopy`` feeds a debug log (see module doc)."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value, memo=None):
        if logging.getLogger("rasa").isEnabledFor(logging.DEBUG):
            return copy.deepcopy(value, memo)
        return value  # structlog drops the record: nothing will read or keep the value


def run_graph(graph: Dict[str, Any], targets: Sequence[str]) -> Dict[str, Any]:
    """``dict(dask.get(graph, targets))`` for Rasa's graphs, without the scheduler.

    A node is ``(callable, *names of the nodes it needs)``; anything else
    (Rasa's inputs, ``(name, value)`` tuples) is a value. Each node runs
    once, after the nodes it needs; exceptions propagate as with dask.get.
    """
    done: Dict[str, Any] = {}

    def value(key: str) -> Any:
        if key in done:
            return done[key]
        task = graph[key]
        if isinstance(task, tuple) and task and callable(task[0]):
            args = [value(a) if isinstance(a, str) and a in graph else a for a in task[1:]]
            result = task[0](*args)
        else:
            result = task
        done[key] = result
        return result

    return dict(value(target) for target in targets)


def _graph_run(self, inputs: Optional[Dict[str, Any]] = None, targets: Optional[List[str]] = None) -> Dict[str, Any]:
    """`DaskGraphRunner.run`, with the pruned graph kept per target list (see module doc)."""
    from rasa.engine.exceptions import GraphRunError

    run_targets = targets if targets else self._graph_schema.target_names
    kept = self.__dict__.setdefault("_kept_graphs", {})
    template = kept.get(tuple(run_targets))
    if template is None:
        template = kept[tuple(run_targets)] = self._build_dask_graph(
            self._graph_schema.minimal_graph_schema(run_targets)
        )
    graph = dict(template)
    if inputs:
        self._add_inputs_to_graph(inputs, graph)
    if _runner_logger.isEnabledFor(logging.DEBUG):
        _runner_logger.debug(f"Running graph with inputs: {inputs}, targets: {targets} and {self._execution_context}.")
    try:
        return run_graph(graph, run_targets)
    except RuntimeError as exc:
        raise GraphRunError("Error running runner.") from exc


_runner_logger = logging.getLogger("rasa.engine.runner.dask")

DEBUG_ONLY_DEEPCOPY_MODULES = ("rasa.core.processor", "rasa.core.policies.memoization", "rasa.core.policies.rule_policy")


def apply() -> None:
    """Install the fixes (idempotent)."""
    from rasa.core.actions.action import RemoteAction
    from rasa.core.lock_store import LockStore

    if getattr(RemoteAction._validate_action_result, "__module__", "") != __name__:
        RemoteAction._validate_action_result = _validate_action_result
    if getattr(LockStore.lock, "__module__", "") != __name__:
        LockStore.lock = _polling_lock(LockStore.lock)
    from rasa.engine.runner.dask import DaskGraphRunner

    DaskGraphRunner.run = _graph_run
    import importlib

    for name in DEBUG_ONLY_DEEPCOPY_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "copy", None) is copy:
            module.copy = _CopyForDebugLogs
    from core.serving import tune_for_serving

    tune_for_serving()


apply()
