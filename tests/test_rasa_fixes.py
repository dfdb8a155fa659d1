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
