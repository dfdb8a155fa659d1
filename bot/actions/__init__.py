"""Custom actions of the assistant, served by ``rasa run actions --actions bot.actions``.

The Rasa SDK imports every module of this package and registers each action
it finds; the imports below make the core modules' actions available to
anyone who imports the package directly.
"""
from bot.actions import answers, dialogue, history, suggestions  # noqa: F401
