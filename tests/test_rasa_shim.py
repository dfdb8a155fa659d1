"""The per-message costs removed from Rasa (bot/rasa_fixes.py) change no behaviour."""
import logging

import bot.rasa_fixes as fixes


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
