"""The dialogue's own judgement of when a person should take over, across turns.

Rules (bot/data/rules.yml) hand a conversation to a person on what one
message says: an explicit request (``request_human``), a complaint, or a
message the NLU read as frustrated (``frustrated``, set by
`nlu.FrustrationReader`). A rule cannot compare one message with the ones
before it, so `HandoffPolicy`, named in config.yml, does what needs the
conversation:

- ``frustration``: the customer asks again what they asked in one of their
  last three typed messages (word overlap at least `repeat_overlap`, within
  `repeat_window_s`, pleasantries such as "thanks" not counted; words as
  `core.language.words` splits them, so Chinese is compared by character
  bigrams);
- ``fallbacks``: the second message in a row that neither the intents nor the
  past answers could answer (``nlu_fallback`` and no retrieved answer over
  the retrieval threshold).

It then predicts ``action_handoff`` (above the other policies: priority 7) and
sets the slot ``handoff_reason``, which the action stores with the handoff and
words the customer's notice by.

It also asks first when the request for a person is itself uncertain: a
``request_human`` read with less than `confirm_below` confidence (calibrated)
gets ``utter_confirm_handoff`` ("Would you like me to pass you to one of our
advisers?", yes / no buttons) instead of the rule's handoff; the answer is
ruled in bot/data/handoff.yml. It says nothing while a form runs, after a
button press, or when a rule already hands over. `rasa test` covers it with the
conversation tests in bot/tests/.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Text

from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ConversationResumed, Restarted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from core.language import word_overlap, words
from core.payloads import is_payload

HANDOFF_ACTION = "action_handoff"
CONFIRM_ACTION = "utter_confirm_handoff"
REQUEST_HUMAN = "request_human"
REASON_SLOT = "handoff_reason"
FALLBACK_INTENT = "nlu_fallback"
# Intents whose rules hand over (or that are not questions): the policy leaves them to the rules.
RULED_INTENTS = frozenset({"request_human", "complaint", "frustrated"})


def is_fallback(parse_data: Dict[str, Any], retrieval_threshold: float) -> bool:
    """Whether the assistant could not answer: NLU fell back and no past answer scored high enough."""
    if (parse_data.get("intent") or {}).get("name") != FALLBACK_INTENT:
        return False
    best = (parse_data.get("retrieval") or {}).get("best_score")
    return best is None or float(best) < retrieval_threshold


def _just_ran(tracker: DialogueStateTracker, action: str) -> bool:
    """Whether `action` is the latest action and no customer message came after it."""
    for event in reversed(tracker.events):
        if isinstance(event, UserUttered):
            return False
        if isinstance(event, ActionExecuted):
            return event.action_name == action
    return False


def recent_typed_messages(events, most: int = 4) -> List[UserUttered]:
    """The customer's last `most` typed messages (not button presses) since the assistant last took over.

    Read from the end, so the cost does not grow with the conversation: a hand-back, a
    new session or a restart ends the search (old fallbacks do not count again).
    """
    found: List[UserUttered] = []
    for event in reversed(events):
        if isinstance(event, (ConversationResumed, SessionStarted, Restarted)):
            break
        if isinstance(event, UserUttered) and not is_payload(event.text or ""):
            found.append(event)
            if len(found) == most:
                break
    return found[::-1]


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True)
class HandoffPolicy(Policy):
    """Predicts ``action_handoff`` when the customer asks again or is not understood twice in a row."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Every knob of the policy, with its default (None: the setting of the same name)."""
        return {
            "priority": 7,  # above RulePolicy (6): a handoff is not second-guessed by memorised answers
            "repeat_overlap": 0.75,  # word overlap that counts as asking again
            "repeat_min_words": 3,  # shorter messages ("no", "card") repeat by nature
            "repeat_window_s": 15 * 60,  # asking again counts within a burst of conversation
            "repeat_ignored_intents": None,  # setting repeat_ignored_intents: greet, thanks, ...
            "retrieval_threshold": None,  # setting retrieval_threshold: a past answer this good answers
            "confirm_below": 0.8,  # a request for a person read less surely than this is confirmed first
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        featurizer: Any = None,
    ) -> None:
        config = {**self.get_default_config(), **config}
        super().__init__(config, model_storage, resource, execution_context, featurizer)
        from core.settings import get_settings

        settings = get_settings()
        ignored = config["repeat_ignored_intents"]
        if ignored is None:
            ignored = settings.repeat_ignored_intents
        if isinstance(ignored, str):
            ignored = ignored.split(",")
        self.ignored = frozenset(i.strip() for i in ignored if i and i.strip())
        threshold = config["retrieval_threshold"]
        self.retrieval_threshold = float(settings.retrieval_threshold if threshold is None else threshold)

    def train(self, training_trackers: List[TrackerWithCachedStates], domain: Domain, **kwargs: Any) -> Resource:
        """Nothing to learn: the judgement is the configuration."""
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Optional[Dict[Text, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        """``action_handoff`` with certainty and the reason in a slot, or no opinion."""
        probabilities = self._default_predictions(domain)
        if _just_ran(tracker, HANDOFF_ACTION) and ACTION_LISTEN_NAME in domain.action_names_or_texts:
            # The action pauses the dialogue, so nothing is predicted after it when it worked; when it
            # could not queue (it says so) the assistant listens again. `rasa test` predicts here too.
            probabilities[domain.index_for_action(ACTION_LISTEN_NAME)] = 1.0
            return self._prediction(probabilities)
        if self.asks_first(tracker) and CONFIRM_ACTION in domain.action_names_or_texts:
            probabilities[domain.index_for_action(CONFIRM_ACTION)] = 1.0
            return self._prediction(probabilities)
        reason = self.reason_to_hand_off(tracker)
        if reason is None or HANDOFF_ACTION not in domain.action_names_or_texts:
            return self._prediction(probabilities)
        probabilities[domain.index_for_action(HANDOFF_ACTION)] = 1.0
        return self._prediction(probabilities, optional_events=[SlotSet(REASON_SLOT, reason)])

    def asks_first(self, tracker: DialogueStateTracker) -> bool:
        """Whether the customer's message asks for a person, but was read too unsurely to act on."""
        if tracker.latest_action_name != ACTION_LISTEN_NAME or tracker.is_paused() or tracker.latest_message is None:
            return False
        intent = tracker.latest_message.intent or {}
        if intent.get("name") != REQUEST_HUMAN:
            return False
        return float(intent.get("confidence") or 0.0) < float(self.config["confirm_below"])

    def reason_to_hand_off(self, tracker: DialogueStateTracker) -> Optional[str]:
        """'frustration' | 'fallbacks' | None for the customer's message just received."""
        if tracker.latest_action_name != ACTION_LISTEN_NAME or tracker.active_loop_name or tracker.is_paused():
            return None
        typed = recent_typed_messages(tracker.events)
        latest = tracker.latest_message
        if not typed or latest is None or (typed[-1] is not latest and typed[-1].message_id != latest.message_id):
            return None  # the latest message was a button press
        intent = (latest.intent or {}).get("name")
        if intent in RULED_INTENTS:
            return None
        if self._asks_again(latest, typed[:-1]):
            return "frustration"
        if len(typed) >= 2 and is_fallback(latest.parse_data or {}, self.retrieval_threshold) \
                and is_fallback(typed[-2].parse_data or {}, self.retrieval_threshold):
            return "fallbacks"
        return None

    def _asks_again(self, latest: UserUttered, earlier: List[UserUttered]) -> bool:
        if len(words(latest.text)) < int(self.config["repeat_min_words"]):
            return False
        if (latest.intent or {}).get("name") in self.ignored:
            return False
        since = (latest.timestamp or time.time()) - float(self.config["repeat_window_s"])
        recent = [e.text for e in earlier
                  if e.text and (e.timestamp or 0) >= since and (e.intent or {}).get("name") not in self.ignored][-3:]
        return any(word_overlap(latest.text, text) >= float(self.config["repeat_overlap"]) for text in recent)
