"""Frustration with the assistant, read in the NLU pipeline: a Rasa component any project can name.

    pipeline:
      - name: nlu.TransformerIntentClassifier
      - name: retrieval.AnswerRetriever
      - name: FallbackClassifier
      - name: nlu.FrustrationReader      # after the classifiers: it may replace their intent

For every typed message it writes ``frustration`` into the parse data, as
`retrieval.AnswerRetriever` writes ``retrieval``::

    {"frustrated": bool, "score": 1.5, "signals": {"lexicon": 1.0, ...},
     "evidence": ["useless", "??"], "intent": "card_arrival",
     "sentiment": {"label": "negative", "confidence": 0.93, "negative": 0.93,
                   "reason": "Customer Service Issue", "score": -0.9} | null}

and, when the message is frustrated, sets the intent to ``frustrated`` (the
classifier's intent stays in ``frustration.intent`` and in ``intent_ranking``;
``request_human`` is kept: it goes to a person its own way)
so that the dialogue's rules decide what follows (bot/data/rules.yml hands the
conversation to a person). The decision is `nlu.sentiment.frustrated`: the
word-list detector (`nlu.frustration`) and, where it is trained
(``python -m training.train_sentiment``), the sentiment model's reading.
Asking the same thing again is a signal across turns, so the dialogue judges
it (bot/policies.py), not this component.

The word lists, the labelled examples and the sentiment model (trained on
customers' messages to airlines) are English. They are used only when the
customers' language is English: the ``language:`` of config.yml at the
project root (`core.language.configured_language`), or the component's own
``language`` knob, which a pipeline trained from another file sets. In any
other language the reading has capitals and ``?!`` bursts only, and
``sentiment`` is null.

The reading runs ahead of Rasa's pipeline on the model thread when the server
prefetches the message (`core.serving.prefetch`); `process` then finds it in
its cache. Called directly (Rasa's HTTP API, `rasa shell nlu`), it computes inline.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message

from core.payloads import is_payload
from core.serving import LRUCache, register_prefetch
from nlu.frustration import FrustrationDetector
from nlu.sentiment import HandoffRule, frustrated

logger = logging.getLogger(__name__)

FRUSTRATION = "frustration"  # the parse data key
FRUSTRATED_INTENT = "frustrated"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class FrustrationReader(GraphComponent):
    """Writes ``frustration`` (score, signals, evidence, sentiment) into each message; frustrated ones get the intent ``frustrated``."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Every knob of the component, with its default."""
        return {
            # Points of the word-list detector that flag a message (nlu/frustration.py).
            "threshold": 1.0,
            # Compare messages with the labelled examples through the shared sentence encoder.
            "use_encoder": True,
            # The sentiment model's folder; None: artifacts/sentiment. Missing: the detector decides alone.
            "sentiment_dir": None,
            # The intent a frustrated message gets; None leaves the intent alone (the data only).
            "intent": FRUSTRATED_INTENT,
            # Intents kept even when the message is frustrated: they have their own way to a person.
            # (A frustrated complaint becomes "frustrated": the apology fits it, the evidence reaches the agent.)
            "keep_intents": ["request_human"],
            # The customers' language; None: the `language:` of config.yml at the project root. The
            # English word lists, examples and sentiment model are used only when it is English.
            "language": None,
        }

    def __init__(self, config: Dict[Text, Any], detector: FrustrationDetector, sentiment: Any, rule: HandoffRule) -> None:
        """Use `create`; this wires an already loaded detector and sentiment model."""
        self.component_config = config
        self.detector = detector
        self.sentiment = sentiment
        self.rule = rule
        self._cache = LRUCache(4096)

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "FrustrationReader":
        """Load the detector (with the process's shared encoder) and, where trained, the sentiment model.

        Raises `core.language.LanguageConfigError` naming config.yml when the
        ``language`` knob is unset and that file's ``language:`` cannot be read.
        """
        from core.language import configured_language, is_english
        from core.settings import get_settings

        config = {**cls.get_default_config(), **config}
        language = config["language"] or configured_language()
        english = is_english(language)
        if not english:
            logger.info("frustration: language %s, so the English word lists, examples and sentiment model are "
                        "left out (capitals and ?! bursts still count)", language)
        encoder = None
        if config["use_encoder"] and english:  # the examples and the sentiment model it serves are English
            try:
                from core.encoder import load_encoder

                encoder = load_encoder(None)  # the same cached encoder as retrieval
            except Exception as exc:  # the word list alone still works
                logger.warning("frustration: word list only, the sentence encoder did not load (%s)", exc)
        detector = FrustrationDetector(threshold=float(config["threshold"]), encoder=encoder, language=language)
        sentiment = None
        if encoder is not None:
            sentiment = _load_sentiment(config["sentiment_dir"], encoder)
        reader = cls(config, detector, sentiment, HandoffRule.from_settings(get_settings()))
        reader.read("warm up the compiled pass")  # compile now, not on the first customer's message
        register_prefetch(("frustration", resource.name), reader.read_many)
        return reader

    # ------------------------------------------------------------- reading
    def read(self, text: str) -> Dict[str, Any]:
        """The ``frustration`` parse data of `text` (cached by text)."""
        found = self._cache.get(text)
        if found is not None:
            return found
        verdict = self.detector.assess(text)
        mood = None
        if self.sentiment is not None and self.detector.encoder is not None and text.strip():
            from core.encoder import embed_few  # cached: the retriever and the detector share this vector

            mood = self.sentiment.read_for_handoff(text, embed_few(self.detector.encoder, [text])[0],
                                                   verdict.frustrated, self.rule.close_reading_from)
        reading = {
            "frustrated": bool(frustrated(verdict, mood, self.rule)),
            "score": verdict.score,
            "signals": dict(verdict.signals),
            "evidence": list(verdict.evidence),
            "sentiment": mood.as_dict() if mood is not None else None,
        }
        self._cache.put(text, reading)
        return reading

    def read_many(self, texts: List[str]) -> None:
        """`read` each text now (the model thread's prefetch), for `process` to find."""
        for text in texts:
            self.read(text)

    def process(self, messages: List[Message]) -> List[Message]:
        """Add ``frustration`` to each typed message; a frustrated one gets the configured intent."""
        new_intent = self.component_config.get("intent")
        kept = set(self.component_config.get("keep_intents") or ())
        for message in messages:
            text = message.get(TEXT) or ""
            if not text.strip() or is_payload(text):
                continue
            reading = dict(self.read(text))
            reading["intent"] = (message.get(INTENT) or {}).get("name")
            message.set(FRUSTRATION, reading, add_to_output=True)
            if reading["frustrated"] and new_intent and reading["intent"] not in kept:
                message.set(INTENT, {"name": new_intent, "confidence": 1.0}, add_to_output=True)
        return messages


def _load_sentiment(folder: Optional[str], encoder: Any):
    """The trained sentiment model sharing `encoder`'s lower layers, or None (logged) without one."""
    from nlu.sentiment import DEFAULT_DIR, load_if_present

    try:
        model = load_if_present(Path(folder) if folder else DEFAULT_DIR)
        if model is None:
            logger.info("no sentiment model in %s (python -m training.train_sentiment): the word list decides alone",
                        folder or DEFAULT_DIR)
            return None
        shared = model.share_layers_with(encoder)
        model.warm()
        logger.info("frustration reads sentiment too (close reading %s)",
                    "from the encoder's shared layers" if shared else "by the whole reader")
        return model
    except Exception as exc:  # a broken artifact: the word list decides alone
        logger.warning("sentiment model not loaded (%s): the word list decides alone", exc)
        return None
