"""Transformer intent classification fine-tuned with PEFT.

`nlu.TransformerIntentClassifier` is the Rasa 3 component (named so in
config.yml); `nlu.model.IntentModel` is the model it wraps, shared with the
offline trainer. The component is imported on first use so that scripts that
only need the model do not pay for importing Rasa.
"""
from typing import Any

__all__ = ["TransformerIntentClassifier"]


def __getattr__(name: str) -> Any:
    if name == "TransformerIntentClassifier":
        from nlu.classifier import TransformerIntentClassifier

        return TransformerIntentClassifier
    raise AttributeError(f"module 'nlu' has no attribute {name!r}")
