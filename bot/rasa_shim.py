"""The project's changes to Rasa 3.6's own code, installed once when the Rasa server starts.

`install()` is called by `bot.channels.base.DeskChannel.watch`, which Rasa
runs while it registers the project's channels (named in credentials.yml) on
its web app, before the server starts and before it loads the model and
builds the agent. That is the earliest point inside `rasa run` where project
code runs (the endpoints file is read earlier, the tracker and lock stores
are built later), and it is the same for `python -m bot.serve`, `make run`,
the tests and the Docker image's plain `rasa run`. Importing this module
changes nothing.

Each change replaces a function of Rasa, so each is checked first: Rasa must
be the studied version (`STUDIED_RASA_VERSION`), and the source of every
function replaced or relied upon (`STUDIED_SOURCES`: sha256 of
``inspect.getsource``) must be the studied one. On any difference
`install()` raises `RasaShimMismatch` naming the version or the function,
and `install_or_exit()` stops the server with exit status 70: the server
refuses to start rather than run Rasa code nobody read against the change.
After a Rasa upgrade: read each named function's new source against its
replacement here, then record the new hash.

What is replaced, and why:

- `RemoteAction._validate_action_result` calls ``jsonschema.validate`` on every
  custom action's response, which checks the schema itself and builds a new
  validator each time (about a quarter of a custom action's cost in the Rasa
  server). The schema never changes, so the checked validator is built once.
  Same schema, same errors: a malformed response still raises
  ``ValidationError`` with Rasa's hint appended.
- The message processor and the memoization and rule policies deep-copy
  the dialogue states, events and slots of every prediction only to pass
  them to ``structlogger.debug``, which then drops them unless debug logging
  is on: 6.5 % of the server's time under load (py-spy). Those three
  modules use ``copy.deepcopy`` for nothing else, so they get a ``copy``
  whose ``deepcopy`` copies only while Rasa logs at debug level (their whole
  source is hashed).
- `DaskGraphRunner.run` prunes the graph schema for its targets (a
  recursion without memo that revisits shared branches), rebuilds the dask
  graph, formats its inputs (the whole tracker) into a debug message and
  runs dask's general scheduler, for each of the three or so graph runs of
  a message (7 % of the event loop outside the components). The pruned
  graph is kept per target list and run by `run_graph`, which evaluates the
  same graph (each node: a callable and the names of the nodes it needs)
  the way ``dask.get`` does.
- `Agent._create_tracker_store` wraps the tracker store in Rasa's
  `FailSafeTrackerStore` without its error hook, so a failing store is
  logged and the conversation silently continues in memory. The
  replacement passes the desk's `tracker_store_failed` as the wrapper's
  ``on_tracker_store_error`` argument: during a customer's message the
  message is refused instead (`bot.failures`).
- `rasa.core.agent.load_agent` (how `rasa run` and Rasa's model API build
  an agent) is wrapped so that the action server's endpoint is the desk's
  `WatchedActionEndpoint` (a kept-alive session; a failed call is noted
  in the customer's turn) for every agent, from its construction on.

Not here, because Rasa has an extension point for it: the lock stores
(`bot/lock_store.py`, named in endpoints.yml) re-check a waiting message's
ticket every 20 ms instead of every second.

Also at install: the interpreter's GIL switch interval is shortened so that
the model thread (`core.serving`) is not starved by the event loop.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import inspect
import logging
import sys
from typing import Any, Dict, List, Optional, Sequence

import rasa
from jsonschema import ValidationError, exceptions
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction
from rasa.core.tracker_store import FailSafeTrackerStore, InMemoryTrackerStore
from rasa.engine.exceptions import GraphRunError
from rasa.shared.constants import DOCS_BASE_URL

from bot.failures import WatchedActionEndpoint, tracker_store_failed
from core.serving import tune_for_serving

logger = logging.getLogger(__name__)

STUDIED_RASA_VERSION = "3.6.21"

# "module:qualified name" -> sha256 of inspect.getsource of what Rasa 3.6.21 has there.
# A module alone ("rasa.core.processor") is hashed whole.
STUDIED_SOURCES: Dict[str, str] = {
    # replaced
    "rasa.core.actions.action:RemoteAction._validate_action_result":
        "f8cdb4be6812396167ced74161b2ccd65c5ea676ad86d7d359d8c322d9d8dc42",
    "rasa.engine.runner.dask:DaskGraphRunner.run":
        "45f0f52f574f3aa9546a552bf671183e171092c18b66e97f5771a7fa295de37e",
    "rasa.core.agent:Agent._create_tracker_store":
        "97499b594b45581b2c6d8ff7adb9083af24eba85654995a40350de65633ca574",
    "rasa.core.agent:load_agent":
        "abc2a4cb13cbbd2b630bab929d3a13c3732cfa3f2384b535787cf4d8c615545a",
    "rasa.core.processor":
        "f42dfbf26e2ffcb66e08cf4180d1de1cce2a8f59389d5d3b4ea12a95b1f186dd",
    "rasa.core.policies.memoization":
        "e4519f1a04ecdcce2241f5bd01f33b0b886d8a2136329da104946acaff31b775",
    "rasa.core.policies.rule_policy":
        "952d1a13906511ac9b8d1c3dcd27148b24bbcd6610ebb13bff23f2fb1667b2b5",
    # relied upon by the replacements
    "rasa.core.actions.action:RemoteAction.action_response_format_spec":
        "091b74aa3738d1262cf3c028386aaf9dd4f0d5c1374b62392411d70a79104a46",
    "rasa.engine.runner.dask:DaskGraphRunner._build_dask_graph":
        "5bb99f974d512a36acb61caaf77aafc851b90c04ce4d02c262f230c75086cbee",
    "rasa.engine.runner.dask:DaskGraphRunner._add_inputs_to_graph":
        "d04a0ca2df6241c16997b89d63e2ca89cd1d43bd5f9920843a2a86cb4286ac73",
    "rasa.engine.graph:GraphSchema.minimal_graph_schema":
        "58dfb30335499fff7640e0d4ea6c0a715e23abc27e641b05636798db7bb4f9fe",
    "rasa.core.tracker_store:FailSafeTrackerStore.__init__":
        "a1d5d95d2f96830b72e12729e0e200ceb97da2a9e4443e9568ca7ccadd8154f2",
    "rasa.core.tracker_store:FailSafeTrackerStore.on_tracker_store_error":
        "6faca7ba72b36da4594c789a1ee9d86ea185a8785a1e0543199b63bf02937e12",
    "rasa.core.tracker_store:FailSafeTrackerStore.on_tracker_store_retrieve_error":
        "162b49564c52ab49f2be6a40ed56d11564e6607fdcd6975d44e678f69ca6ce9d",
    "rasa.core.tracker_store:FailSafeTrackerStore.retrieve":
        "35d77318b0cc79771af3c667bc8c34cd5a56e494eaa8c4d713fd754b9d00d276",
    "rasa.core.tracker_store:FailSafeTrackerStore.retrieve_full_tracker":
        "5272a6be0919b511c874fde07a8666777d09f5a11ba29e66f1f923f5ef85e2a0",
    "rasa.core.tracker_store:FailSafeTrackerStore.save":
        "8426dc08f58d71102f7c031ade8a26b0b1458c8bae162be7b091d288699a5e9b",
    "rasa.core.tracker_store:FailSafeTrackerStore.keys":
        "2383a042130a7ce533e546dab8b0ebd5e9573c551fb593129d29bd7c8b8d8e28",
    "rasa.core.agent:Agent.__init__":
        "ccaa168ffee74e4e74b2bf510088b68ebc666679cfe2b4bc7766978bb17305f7",
    "rasa.core.agent:Agent.load_model":  # also mirrored by bot.model_swap.install_processor (hot swap)
        "f4c1ab4c5c7af6349384fc0a2d3a1cffdc5f277f08378d07fd0cd247cd4d5fa7",
    "rasa.core.agent:Agent._set_fingerprint":  # called by bot.model_swap.install_processor
        "ee1ee14d0bd0ac96223d9c1bafb0bbeb403b01df0aca258d1fdeb689781f478c",
    "rasa.utils.endpoints:EndpointConfig.session":
        "e55aa13d9d4fb4bc440ac33b870a97ee162b76dda7ccb6bf68433567475fdffb",
    "rasa.utils.endpoints:EndpointConfig.request":
        "ccdb778aed8208e23cde3c3f47eac7fbbbb735dac8f7ef7254d54451c64ad608",
    # relied upon by the lock stores of bot/lock_store.py (wait_time_in_seconds)
    "rasa.core.lock_store:LockStore.lock":
        "8b9b716c031a34445100c32e7123859553831d2ac4747ae2b47a581f137ea371",
}

EXIT_CODE = 70  # EX_SOFTWARE: this Rasa is not the one the shim was written for

DEBUG_ONLY_DEEPCOPY_MODULES = ("rasa.core.processor", "rasa.core.policies.memoization", "rasa.core.policies.rule_policy")


class RasaShimMismatch(RuntimeError):
    """Rasa differs from the version or the source the shim was written against."""


# --------------------------------------------------------------- the checks
_ORIGINALS: Dict[str, Any] = {}  # what Rasa had at each replaced name before install()
_installed = False


def _resolve(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        target = getattr(target, part)
    return target


def _studied_object(name: str) -> Any:
    """What Rasa has under `name`, or had before install() replaced it."""
    return _ORIGINALS[name] if name in _ORIGINALS else _resolve(name)


def source_hash(name: str) -> str:
    """sha256 of the source of Rasa's `name` (the original, also after install())."""
    try:
        source = inspect.getsource(_studied_object(name))
    except (ImportError, AttributeError, OSError, TypeError) as exc:
        raise RasaShimMismatch(
            f"bot/rasa_shim.py changes or relies on Rasa's {name}, which this Rasa does not have "
            f"({type(exc).__name__}: {exc}); the server refuses to start"
        ) from exc
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def check() -> None:
    """Raise `RasaShimMismatch`, naming what differs, unless Rasa is the studied version and source."""
    if rasa.__version__ != STUDIED_RASA_VERSION:
        raise RasaShimMismatch(
            f"bot/rasa_shim.py was written for Rasa {STUDIED_RASA_VERSION} and this is Rasa {rasa.__version__}: "
            "re-read each function in its STUDIED_SOURCES against the new Rasa before changing STUDIED_RASA_VERSION; "
            "the server refuses to start"
        )
    for name, studied in STUDIED_SOURCES.items():
        found = source_hash(name)
        if found != studied:
            raise RasaShimMismatch(
                f"bot/rasa_shim.py changes or relies on Rasa's {name}, whose source is not the one studied "
                f"(sha256 {found}, studied {studied}): re-read it against the shim, then record the new hash; "
                "the server refuses to start"
            )


def install() -> None:
    """Check Rasa (see `check`), then replace its functions; once per process (idempotent)."""
    global _installed
    check()
    if _installed:
        return
    from rasa.core import agent as agent_module
    from rasa.engine.runner.dask import DaskGraphRunner

    _replace(RemoteAction, "_validate_action_result", "rasa.core.actions.action:RemoteAction._validate_action_result",
             _validate_action_result)
    _replace(DaskGraphRunner, "run", "rasa.engine.runner.dask:DaskGraphRunner.run", _graph_run)
    _replace(agent_module.Agent, "_create_tracker_store", "rasa.core.agent:Agent._create_tracker_store",
             staticmethod(_create_tracker_store))
    _replace(agent_module, "load_agent", "rasa.core.agent:load_agent", _watching_load_agent(agent_module.load_agent))
    for name in DEBUG_ONLY_DEEPCOPY_MODULES:
        module = importlib.import_module(name)
        if module.copy is not copy:
            raise RasaShimMismatch(f"{name}.copy is not the copy module (replaced by someone else?); the server refuses to start")
        module.copy = _CopyForDebugLogs
    tune_for_serving()
    _installed = True


def install_or_exit() -> None:
    """`install()`, or stop the process with `EXIT_CODE`, printing what differs (at server start)."""
    try:
        install()
    except RasaShimMismatch as exc:
        logger.error("%s", exc)
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CODE) from None


def _replace(owner: Any, attribute: str, name: str, replacement: Any) -> None:
    _ORIGINALS[name] = getattr(owner, attribute)  # a staticmethod's function, as inspect reads it
    setattr(owner, attribute, replacement)


# ------------------------------------------------ action response validation
@functools.lru_cache(maxsize=None)
def _action_response_validator():
    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate_action_result(self, result: Dict[str, Any]) -> bool:
    error = exceptions.best_match(_action_response_validator().iter_errors(result))
    if error is None:
        return True
    error.message += (
        ". Failed to validate Action server response from API, make sure your response from the "
        f"Action endpoint is valid. For more information about the format visit {DOCS_BASE_URL}/custom-actions"
    )
    raise error if isinstance(error, ValidationError) else ValidationError(error.message)


# ------------------------------------------------------ deep copies for logs
class _CopyForDebugLogs:
    """The `copy` module for modules whose every ``deepcopy`` feeds a debug log (see module doc)."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value, memo=None):
        if logging.getLogger("rasa").isEnabledFor(logging.DEBUG):
            return copy.deepcopy(value, memo)
        return value  # structlog drops the record: nothing will read or keep the value


# --------------------------------------------------------------- graph runs
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


# ------------------------------------------------- the desk's hooks in Rasa
def _create_tracker_store(store: Any, domain: Any) -> FailSafeTrackerStore:
    """`Agent._create_tracker_store`, giving Rasa's fail-safe wrapper the desk's error hook."""
    if store is not None:
        store.domain = domain
        tracker_store = store
    else:
        tracker_store = InMemoryTrackerStore(domain)
    return FailSafeTrackerStore(tracker_store, on_tracker_store_error=tracker_store_failed)


def _watching_load_agent(original):
    """`rasa.core.agent.load_agent`, with the action endpoint watched by the desk (see module doc)."""

    @functools.wraps(original)
    async def load_agent(model_path=None, model_server=None, remote_storage=None, endpoints=None, loop=None):
        if endpoints is not None and endpoints.action is not None and not isinstance(endpoints.action, WatchedActionEndpoint):
            endpoints.action = WatchedActionEndpoint.wrap(endpoints.action)
        return await original(model_path=model_path, model_server=model_server, remote_storage=remote_storage,
                              endpoints=endpoints, loop=loop)

    return load_agent
