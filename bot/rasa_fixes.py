"""Per-message costs of Rasa 3.6 that the project removes, applied when its channels load.

- `RemoteAction._validate_action_result` calls ``jsonschema.validate`` on every
  custom action's response, which checks the schema itself and builds a new
  validator each time (about a quarter of a custom action's cost in the Rasa
  server). The schema never changes, so the checked validator is built once.
  Same schema, same errors: a malformed response still raises
  ``ValidationError`` with Rasa's hint appended.
- `MessageProcessor.parse_message` runs the NLU graph (the transformer intent
  classifier and the answer retriever) on the event loop's own thread, so
  while one message is being encoded the server can do nothing else. Here it
  can run on one dedicated NLU thread (ASSISTANT_NLU_THREAD=1; off by default
  until it is shown to pay on a quiet machine): PyTorch releases the interpreter lock
  while it computes, so the loop goes on reading trackers, predicting actions
  and answering other conversations on the second core meanwhile. Messages
  of one conversation still go one at a time (Rasa's lock store), and the
  logging context (conversation id) travels with the message.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional


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


_NLU_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlu")


async def _parse_message(self, message, tracker=None, only_output_properties: bool = True) -> Dict[str, Any]:
    """Rasa 3.6's `MessageProcessor.parse_message`, with the graph run on the NLU thread."""
    if self.http_interpreter:
        return await _ORIGINAL["parse_message"](self, message, tracker, only_output_properties)
    from rasa.shared.core.trackers import DialogueStateTracker

    if tracker is None:
        tracker = DialogueStateTracker.from_events(message.sender_id, [])
    run = functools.partial(
        contextvars.copy_context().run, self._parse_message_with_graph, message, tracker, only_output_properties
    )
    parse_data = await asyncio.get_running_loop().run_in_executor(_NLU_THREAD, run)
    self._update_full_retrieval_intent(parse_data)
    self._check_for_unseen_features(parse_data)
    return parse_data


_ORIGINAL: Dict[str, Optional[Any]] = {}


def apply() -> None:
    """Install the fixes (idempotent)."""
    from rasa.core.actions.action import RemoteAction
    from rasa.core.processor import MessageProcessor

    if getattr(RemoteAction._validate_action_result, "__module__", "") != __name__:
        RemoteAction._validate_action_result = _validate_action_result
    nlu_thread = os.environ.get("ASSISTANT_NLU_THREAD", "0").lower() in ("1", "true", "yes")
    if nlu_thread and getattr(MessageProcessor.parse_message, "__module__", "") != __name__:
        _ORIGINAL["parse_message"] = MessageProcessor.parse_message
        MessageProcessor.parse_message = _parse_message


apply()
