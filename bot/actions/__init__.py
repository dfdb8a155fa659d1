"""Custom actions of the assistant, served by ``python -m bot.action_server --actions bot.actions`` (Rasa SDK's server behind a shared-secret check).

The Rasa SDK imports every module of this package and registers each action
it finds; the imports below make the core modules' actions available to
anyone who imports the package directly.
"""
from bot.actions import answers, dialogue, forms, history, privacy, satisfaction, suggestions  # noqa: F401
from bot.actions import instrument as _instrument

# Each action's run time on the action server's /metrics, its logs under the conversation id.
_instrument.instrument_actions(answers, dialogue, forms, history, privacy, satisfaction, suggestions)
_instrument.serve_on_action_server()  # GET /metrics beside the SDK's /health (only inside the action server)

# Erasure requests and the retention purge, run by every action-server process (bot/privacy/worker.py).
from bot.privacy import worker as _privacy_worker  # noqa: E402

_privacy_worker.start_in_background()  # only inside the action server
