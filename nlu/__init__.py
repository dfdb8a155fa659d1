"""Transformer intent classification fine-tuned with PEFT, the sentiment of a message, and frustration.

The public names, the only ones `bot/` may import (import-linter checks it,
docs/architecture.md):

- `TransformerIntentClassifier`: the Rasa 3 component (named so in config.yml);
- the sentiment reader of `nlu.sentiment`: `Sentiment`, `SentimentModel`,
  `SENTIMENT_DIR` (its default artifact folder), `load_sentiment_model`,
  `sentiment_model_is_current` (trained, with its fine-tuned reader),
  `frustrated` (the handoff test) and its thresholds `HandoffRule`, `record_sentiment` (`record_sentiments` for a batch), `latest_sentiments`,
  `most_upset_first`, `sentiment_trend` (its table, ``message_sentiment``);
- `FrustrationReader`: the Rasa component (named so in config.yml) that writes
  ``frustration`` into the parse data and gives frustrated messages the intent
  ``frustrated``; `FrustrationDetector`: its explainable word-list detector
  (`nlu.frustration`), with its nearest-labelled-examples vote.

`nlu.model.IntentModel` is the model the classifier wraps, shared with the
offline trainer (`training/` may import any module of this package). Every
name is imported on first use so that scripts that only need the model do
not pay for importing Rasa.
"""
from typing import Dict, Tuple

from core.exports import lazy_exports

# public name -> (module, name there)
_PUBLIC: Dict[str, Tuple[str, str]] = {
    "TransformerIntentClassifier": ("nlu.classifier", "TransformerIntentClassifier"),
    "Sentiment": ("nlu.sentiment", "Sentiment"),
    "SentimentModel": ("nlu.sentiment", "SentimentModel"),
    "SENTIMENT_DIR": ("nlu.sentiment", "DEFAULT_DIR"),
    "load_sentiment_model": ("nlu.sentiment", "load_if_present"),
    "sentiment_model_is_current": ("nlu.sentiment", "is_current"),
    "frustrated": ("nlu.sentiment", "frustrated"),
    "HandoffRule": ("nlu.sentiment", "HandoffRule"),
    "record_sentiment": ("nlu.sentiment", "record"),
    "record_sentiments": ("nlu.sentiment", "record_many"),
    "latest_sentiments": ("nlu.sentiment", "latest"),
    "most_upset_first": ("nlu.sentiment", "most_upset_first"),
    "sentiment_trend": ("nlu.sentiment", "trend"),
    "FrustrationDetector": ("nlu.frustration", "FrustrationDetector"),
    "FrustrationReader": ("nlu.frustration_reader", "FrustrationReader"),
}

__all__ = list(_PUBLIC)

__getattr__ = lazy_exports(__name__, _PUBLIC)
