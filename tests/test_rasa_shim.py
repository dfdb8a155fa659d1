"""The Rasa shim (bot/rasa_shim.py): refuses a Rasa it was not written for, installs once, changes no behaviour."""
import asyncio
import logging
import sqlite3
import subprocess
import sys

import pytest
import rasa

import bot.rasa_shim as shim
from core.settings import PROJECT_ROOT

shim.install()  # what the channels do when Rasa registers them
fixes = shim


def test_debug_only_deep_copies_are_skipped_unless_rasa_logs_at_debug_level():
    import importlib

    states = [{"user": {"intent": "greet"}}, {"prev_action": {"action_name": "utter_greet"}}]
    rasa_logger = logging.getLogger("rasa")
    level = rasa_logger.level
    try:
        for name in fixes.DEBUG_ONLY_DEEPCOPY_MODULES:
            module = importlib.import_module(name)
            rasa_logger.setLevel(logging.INFO)
            assert module.copy.deepcopy(states) is states
            rasa_logger.setLevel(logging.DEBUG)
            copied = module.copy.deepcopy(states)
            assert copied == states and copied is not states and copied[0] is not states[0]
            assert module.copy.copy(states) is not states  # the rest of `copy` is untouched
    finally:
        rasa_logger.setLevel(level)


def test_those_modules_use_deepcopy_only_in_debug_log_calls():
    """Guard for a Rasa upgrade: every deepcopy in the patched modules sits in a structlogger.debug call."""
    import importlib
    import inspect
    import re

    for name in fixes.DEBUG_ONLY_DEEPCOPY_MODULES:
        source = inspect.getsource(importlib.import_module(name))
        calls = re.findall(r"structlogger\.debug\((?:[^()]|\([^()]*(?:\([^()]*\))*[^()]*\))*\)", source)
        inside = sum(call.count("copy.deepcopy(") for call in calls)
        assert inside == source.count("copy.deepcopy("), name


def test_graph_runs_give_what_dask_gives():
    import dask

    calls = []

    def node(name):
        def run(*inputs):
            calls.append(name)
            return name, [i[1] if isinstance(i, tuple) else i for i in inputs]
        return run

    graph = {
        "__message__": ("__message__", {"text": "hi"}),
        "tokens": (node("tokens"), "__message__"),
        "intent": (node("intent"), "tokens", "__message__"),
        "entities": (node("entities"), "tokens"),
        "parsed": (node("parsed"), "intent", "entities", "not a node"),
        "unused": (node("unused"), "tokens"),
    }
    ours = fixes.run_graph(graph, ["parsed", "__message__"])
    assert calls.count("tokens") == 1 and "unused" not in calls
    calls.clear()
    assert ours == dict(dask.get(graph, ["parsed", "__message__"]))


def test_the_graph_runner_is_replaced_and_keeps_the_pruned_graph():
    from rasa.engine.runner.dask import DaskGraphRunner

    assert DaskGraphRunner.run is fixes._graph_run
    # Compared with Rasa's own runner on a trained model's graph: tests/e2e/test_rasa_shim_graph.py


def test_action_responses_are_validated_as_rasa_validates_them():
    import jsonschema
    import pytest
    from rasa.core.actions.action import RemoteAction

    assert RemoteAction._validate_action_result is fixes._validate_action_result
    good = {"events": [{"event": "slot", "name": "x", "value": 1}], "responses": [{"text": "hi"}]}
    assert fixes._validate_action_result(None, good)
    jsonschema.validate(good, RemoteAction.action_response_format_spec())
    bad = {"events": "not a list", "responses": []}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, RemoteAction.action_response_format_spec())
    with pytest.raises(jsonschema.ValidationError, match="Failed to validate Action server response"):
        fixes._validate_action_result(None, bad)


# ------------------------------------------------------------------ refusals
def test_another_rasa_version_is_refused_naming_both_versions(monkeypatch):
    monkeypatch.setattr(rasa, "__version__", "3.6.22")
    with pytest.raises(shim.RasaShimMismatch, match=r"written for Rasa 3\.6\.21 and this is Rasa 3\.6\.22"):
        shim.install()


@pytest.mark.parametrize("name", list(shim.STUDIED_SOURCES))
def test_a_changed_source_is_refused_naming_the_function(monkeypatch, name):
    monkeypatch.setitem(shim.STUDIED_SOURCES, name, "0" * 64)  # as if Rasa's source no longer matched
    with pytest.raises(shim.RasaShimMismatch, match=f"Rasa's {name}, whose source is not the one studied"):
        shim.install()


def test_a_function_rasa_no_longer_has_is_refused_naming_it(monkeypatch):
    monkeypatch.setitem(shim.STUDIED_SOURCES, "rasa.core.agent:Agent._renamed_in_rasa_4", "0" * 64)
    with pytest.raises(shim.RasaShimMismatch, match=r"Rasa's rasa\.core\.agent:Agent\._renamed_in_rasa_4, which this Rasa does not have"):
        shim.install()


def test_the_server_start_exits_naming_the_function(monkeypatch, capsys):
    monkeypatch.setitem(shim.STUDIED_SOURCES, "rasa.engine.runner.dask:DaskGraphRunner.run", "0" * 64)
    with pytest.raises(SystemExit) as stopped:
        shim.install_or_exit()
    assert stopped.value.code == shim.EXIT_CODE
    assert "DaskGraphRunner.run" in capsys.readouterr().err


def test_the_studied_hashes_are_of_the_originals_also_after_install():
    shim.check()  # install() ran above: the check reads what Rasa had, not the replacements
    from rasa.engine.runner.dask import DaskGraphRunner

    assert DaskGraphRunner.run is shim._graph_run
    assert shim._ORIGINALS["rasa.engine.runner.dask:DaskGraphRunner.run"] is not shim._graph_run


def test_import_changes_nothing_and_a_refused_install_leaves_rasa_as_it_was():
    """In a fresh interpreter: importing the shim and the channels replaces nothing; a refusal replaces nothing."""
    script = """
import rasa
from rasa.core import agent
from rasa.core.actions.action import RemoteAction
from rasa.engine.runner.dask import DaskGraphRunner
stock = (DaskGraphRunner.run, RemoteAction._validate_action_result, agent.Agent._create_tracker_store, agent.load_agent)
import bot.channels.web, bot.channels.rest, bot.rasa_shim as shim
def now():
    return (DaskGraphRunner.run, RemoteAction._validate_action_result, agent.Agent._create_tracker_store, agent.load_agent)
assert now() == stock, "changed at import"
rasa.__version__ = "9.9.9"
try:
    shim.install()
except shim.RasaShimMismatch as exc:
    assert "9.9.9" in str(exc)
else:
    raise AssertionError("not refused")
assert now() == stock, "changed by a refused install"
rasa.__version__ = shim.STUDIED_RASA_VERSION
shim.install()
assert DaskGraphRunner.run is shim._graph_run
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


# -------------------------------------------------------------- idempotence
def test_install_twice_replaces_once():
    from rasa.core import agent
    from rasa.core.actions.action import RemoteAction
    from rasa.engine.runner.dask import DaskGraphRunner

    before = (DaskGraphRunner.run, RemoteAction._validate_action_result, agent.Agent._create_tracker_store, agent.load_agent)
    originals = dict(shim._ORIGINALS)
    shim.install()
    shim.install()
    assert (DaskGraphRunner.run, RemoteAction._validate_action_result, agent.Agent._create_tracker_store, agent.load_agent) == before
    assert shim._ORIGINALS == originals
    assert agent.load_agent.__wrapped__ is originals["rasa.core.agent:load_agent"]  # wrapped once, around Rasa's own


# ------------------------------------------- the desk's hooks, at agent build
class _BrokenStore:
    """A tracker store whose database is gone."""

    def __init__(self):
        from rasa.shared.core.domain import Domain

        self.domain, self.event_broker = Domain.empty(), None

    async def retrieve(self, sender_id):
        raise sqlite3.OperationalError("unable to open database file")

    async def save(self, tracker):
        raise sqlite3.OperationalError("unable to open database file")


def test_every_agent_refuses_a_customer_message_when_its_tracker_store_fails(caplog):
    from rasa.core.agent import Agent
    from rasa.core.tracker_store import FailSafeTrackerStore

    from bot import failures

    agent = Agent(tracker_store=_BrokenStore())
    assert isinstance(agent.tracker_store, FailSafeTrackerStore)
    with failures.watching_turn():  # during a customer's message
        with pytest.raises(failures.StorageUnavailable, match="unable to open database file"):
            asyncio.run(agent.tracker_store.retrieve("c"))
    with caplog.at_level(logging.ERROR):  # elsewhere (Rasa's HTTP API): logged, Rasa falls back to memory
        assert asyncio.run(agent.tracker_store.retrieve("c")) is None
    assert "the tracker store failed" in caplog.text


def test_agents_rasa_loads_watch_the_action_server():
    from rasa.core import agent as agent_module
    from rasa.core.utils import AvailableEndpoints
    from rasa.utils.endpoints import EndpointConfig

    from bot.failures import WatchedActionEndpoint

    endpoints = AvailableEndpoints(action=EndpointConfig("http://localhost:1/webhook", headers={"X-Action-Secret": "s"}))
    with pytest.warns(UserWarning):  # no model: Rasa warns and builds the agent anyway
        agent = asyncio.run(agent_module.load_agent(endpoints=endpoints))
    assert isinstance(agent.action_endpoint, WatchedActionEndpoint)
    assert agent.action_endpoint.url == "http://localhost:1/webhook" and agent.action_endpoint.headers == {"X-Action-Secret": "s"}
    again = asyncio.run(agent_module.load_agent(endpoints=endpoints))  # Rasa's model API loads with the same endpoints
    assert again.action_endpoint is agent.action_endpoint
