"""The intent model: a sentence transformer with a PEFT adapter and a cosine head.

Kept free of Rasa so that the offline trainer (`training/finetune_intent.py`)
and the Rasa component (`nlu/classifier.py`) share one implementation and one
folder format:

    folder/
      adapter/            PEFT's standard adapter folder (adapter_config.json,
                          adapter_model.safetensors): loads with plain PEFT
      head.safetensors    the class prototypes and the logit scale
      entities.safetensors  the token head (only when the data had entities)
      intent_model.json   labels, entity tags, calibrated temperature and its
                          validation ECE, the open-intent detector, model settings

Why it trains fast on a CPU:
- Only the top ``trainable_layers`` transformer layers get adapters (by
  default the top 3, or all of them when the data annotates entities). The
  layers below are frozen, so their output is computed once per utterance
  and cached; each epoch runs only the top layers forward and backward
  (BERT-style, DistilBERT and MPNet bases; a DeBERTa-v2 base runs whole, see
  `nlu/base_models.py`, where the adapter targets are found as well).
- Batches are bucketed by length and padded per batch (dynamic padding).
- The head is a cosine classifier initialised from the class centroids of
  the base encoder's (already good) sentence embeddings, so training starts
  near a nearest-centroid classifier instead of from noise.

Unknown requests: after training, `nlu.open_intent.OpenIntentDetector` is
fitted on the tuned encoder's embeddings (a few centroids per intent, its
threshold set on the validation split), so each reading also says whether
the request belongs to none of the trained intents.

Entities: when the training examples carry annotated entities, a token head
(one linear layer over the last layer's token states, BIO tags from
`nlu.entities.TagScheme`) trains jointly with the intent head, its loss added
to the intent loss; serving runs the encoder once for both.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from core.encoder import ModelNotFoundError, resolve_model_path
from core.files import replacing_folder
from nlu.base_models import accepts_pooling_flag, adapter_targets, check_base_folder, layer_runner
from nlu.entities import IGNORE, TagScheme, check_annotations, span_scores
from nlu.neighbours import NeighbourVote
from nlu.open_intent import OpenIntentDetector

logger = logging.getLogger(__name__)

META_FILE = "intent_model.json"
HEAD_FILE = "head.safetensors"
ENTITY_FILE = "entities.safetensors"
NEIGHBOURS_FILE = "neighbours.safetensors"
ADAPTER_DIR = "adapter"
FORMAT_VERSION = 1


INTENT_ONLY_LAYERS = 3  # "auto" trainable layers for intents alone (BANKING77: 93.8 % in 6.1 min)


class IntentModelError(RuntimeError):
    """An intent model folder is missing, incomplete or corrupt."""


@dataclasses.dataclass
class IntentModelConfig:
    """Every knob of the intent model (the Rasa component exposes the same keys)."""

    base_model: str = "bundled"  # "bundled" or a local sentence-transformers/HF folder
    adapter: str = "lora"  # lora | ia3
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Adapters on the top N layers; the rest is frozen and cached. "auto": the top 3 for intents alone,
    # every layer when the data annotates entities (tagging needs the lower layers: SNIPS slot F1 85.5
    # with the top 3, 91.2 with all 6, same 4,000 utterances and epochs; docs/benchmarks.md).
    trainable_layers: Union[int, str] = "auto"
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 1e-3  # adapters
    head_learning_rate: float = 5e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.1
    max_length: int = 64
    validation_split: float = 0.1  # held out for early stopping and calibration
    patience: int = 2  # epochs without validation gain before stopping
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default
    entity_loss_weight: float = 1.0  # weight of the token (entity) loss beside the intent loss
    open_intent: bool = True  # fit the unknown-request detector (nlu/open_intent.py) after training
    false_unknown_rate: float = 0.1  # share of known validation requests the detector's threshold flags
    centroids_per_intent: int = 8  # the detector's centroids per intent
    # Blend a vote of the k nearest training examples into the probabilities (nlu/neighbours.py), at a
    # weight chosen on the validation split by log-loss (0, i.e. no vote, unless the vote lowers it).
    neighbour_vote: bool = True
    neighbours: int = 10
    neighbour_sharpness: float = 20.0

    def __post_init__(self) -> None:
        if isinstance(self.trainable_layers, str) and self.trainable_layers.strip().isdigit():  # from a command line
            self.trainable_layers = int(self.trainable_layers)

    @classmethod
    def from_dict(cls, values: Dict) -> "IntentModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown intent model setting(s) {unknown}; known settings: {sorted(known)}"
            )
        config = cls(**values)
        if config.adapter not in ("lora", "ia3"):
            raise ValueError(f"adapter must be 'lora' or 'ia3', got {config.adapter!r}")
        if config.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {config.device!r}")
        if isinstance(config.neighbours, bool) or not isinstance(config.neighbours, int) or config.neighbours < 1:
            raise ValueError(f"neighbours must be a whole number of training examples (1 or more), got {config.neighbours!r}")
        if isinstance(config.neighbour_sharpness, bool) or not isinstance(config.neighbour_sharpness, (int, float)) \
                or not config.neighbour_sharpness > 0:
            raise ValueError(f"neighbour_sharpness must be a number above 0, got {config.neighbour_sharpness!r}")
        layers = config.trainable_layers
        if layers != "auto" and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
            raise ValueError(f"trainable_layers must be a whole number of layers (1 or more) or 'auto', got {layers!r}")
        return config

    def with_layers_for(self, base, entities: bool) -> "IntentModelConfig":
        """This config with "auto" trainable layers made a number for `base` and data with or without entities."""
        if self.trainable_layers != "auto":
            return self
        layers = int(base.config.num_hidden_layers) if entities else INTENT_ONLY_LAYERS
        return dataclasses.replace(self, trainable_layers=layers)


def pick_device(setting: str) -> str:
    """'auto' becomes 'cuda' when a GPU is visible, else 'cpu'."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no GPU is visible; use 'auto' or 'cpu'")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def seed_everything(seed: int) -> None:
    """Same seed, same data: same model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_peft_config(config: IntentModelConfig, base):
    """PEFT's own config object for the chosen adapter type, its targets found in `base`'s modules
    (`nlu.base_models.adapter_targets`: LoRA on query, key, value, attention output and both
    feed-forward layers of the top `trainable_layers` blocks; IA3 on key, value and feed-forward out)."""
    from peft import IA3Config, LoraConfig

    target, feedforward = adapter_targets(base, config.trainable_layers, config.adapter)
    if config.adapter == "lora":
        return LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=target,
            bias="none",
        )
    return IA3Config(target_modules=target, feedforward_modules=feedforward)


def length_buckets(lengths: Sequence[int], batch_size: int, rng: Optional[random.Random]) -> List[List[int]]:
    """Batches of indices with similar lengths; shuffled order when `rng` is given."""
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)  # ties broken randomly so batches differ between epochs
    order.sort(key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


class Reading(NamedTuple):
    """What the model reads in one message."""

    proba: np.ndarray  # calibrated intent probabilities, in the order of `IntentModel.labels`
    entities: List[Dict]  # Rasa entity dicts without `extractor`
    unknown: Optional[bool]  # True: the request belongs to none of the intents; None: no detector
    unknown_score: Optional[float]  # the detector's score (higher: more likely unknown)


class IntentModel:
    """Transformer + PEFT adapter + cosine head; fit, predict, save, load."""

    def __init__(self, config: IntentModelConfig, labels: Sequence[str], encoder, tokenizer, head, temperature: float = 1.0,
                 tags: Optional[TagScheme] = None, tagger=None):
        self.config = config
        self.labels = list(labels)
        self.encoder = encoder  # PeftModel while training, the merged base model after load
        self.tokenizer = tokenizer
        self.head = head
        self.temperature = float(temperature)
        self.tags = tags if tags else None  # entity kinds; None: no token head
        self.tagger = tagger  # torch.nn.Linear(hidden, len(tags)) or None
        # Expected calibration error on the validation split after temperature scaling, and its size (`_calibrate`).
        self.calibration: Dict[str, float] = {}
        self.detector: Optional[OpenIntentDetector] = None  # unknown requests; fitted after training
        self.neighbours: Optional[NeighbourVote] = None  # the training examples' vote; fitted after training
        self.device = pick_device(config.device)
        self.history: List[Dict[str, float]] = []
        # Serving only (set by `load`): a compiled logits pass and the recent messages' probabilities.
        self._serving_logits = None
        self._serving_top = None  # the same, from the hidden states after the frozen layers
        self._served = None
        self._runner = None  # nlu.base_models.LayerRunner of the base model's family, found on first use

    # ----------------------------------------------------------------- build
    @staticmethod
    def _load_base(config: IntentModelConfig):
        """(transformer, tokenizer) of `config.base_model`; a folder lacking weights or tokenizer
        files is named with what it lacks (`ModelNotFoundError`) before anything is loaded."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the load report lists pooler keys we do not use
        path = resolve_model_path(config.base_model)
        check_base_folder(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        extra = {"add_pooling_layer": False} if accepts_pooling_flag(AutoConfig.from_pretrained(path)) else {}
        base = AutoModel.from_pretrained(path, **extra)
        return base, tokenizer

    # -------------------------------------------------------------- encoding
    def _tokenize(self, texts: Sequence[str]) -> List[List[int]]:
        return self.tokenizer(
            [t if t.strip() else "[empty]" for t in texts],
            truncation=True,
            max_length=self.config.max_length,
            add_special_tokens=True,
        )["input_ids"]

    def _tokenize_spans(self, texts: Sequence[str]):
        """(token ids, character offsets, word index of each token) per text: what the token head
        needs to map tags to characters. Special tokens have offsets (0, 0) and no word."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise IntentModelError(
                f"entities need a tokenizer that reports character offsets (a 'fast' tokenizer, tokenizer.json); "
                f"the base model's {type(self.tokenizer).__name__} does not")
        encoded = self.tokenizer(
            [t if t.strip() else "[empty]" for t in texts],
            truncation=True,
            max_length=self.config.max_length,
            add_special_tokens=True,
            return_offsets_mapping=True,
        )
        words = [encoded.word_ids(i) for i in range(len(texts))]
        offsets = [[tuple(o) if w is not None and text.strip() else (0, 0) for o, w in zip(offs, ws)]
                   for text, offs, ws in zip(texts, encoded["offset_mapping"], words)]
        return encoded["input_ids"], offsets, words

    def _pad(self, seqs: Sequence[Sequence[int]]):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _mean_pool(hidden, mask):
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def _sentence(self, states, mask):
        """The normalised mean-pooled sentence embedding of the last layer's `states` (float32)."""
        return torch.nn.functional.normalize(self._mean_pool(states.float(), mask), dim=-1)

    def _bert(self):
        model = self.encoder
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    @property
    def _layers(self):
        """How this family's embeddings and blocks run (`nlu.base_models.layer_runner`)."""
        if self._runner is None:
            self._runner = layer_runner(self._bert())
        return self._runner

    @property
    def splits(self) -> bool:
        """Whether the frozen lower blocks run apart from the tuned ones (cached in training, shareable
        when serving): BERT-style, DistilBERT and MPNet models; others (DeBERTa-v2) run whole."""
        return self._layers.split

    def _run_layers(self, hidden, mask, start: int, stop: Optional[int] = None):
        return self._layers.run(self._bert(), hidden, mask, start, stop)

    def _encode(self, ids, mask):
        """The last layer's hidden states of the padded `ids`."""
        return self._layers.encode(self._bert(), ids, mask)

    def _frozen_prefix(self, ids, mask):
        bert = self._bert()
        return self._layers.run(bert, self._layers.embed(bert, ids), mask, 0, self._split)

    @property
    def _split(self) -> int:
        return max(0, self._bert().config.num_hidden_layers - self.config.trainable_layers)

    def embed(self, texts: Sequence[str], batch_size: int = 64):
        """Normalised sentence embeddings of `texts` (eval mode, no gradients)."""
        seqs = self._tokenize(texts)
        out = torch.zeros((len(seqs), self._bert().config.hidden_size))
        if self.encoder.training:  # eval() walks every module: not on each served message
            self.encoder.eval()
        with torch.inference_mode():
            for batch in length_buckets([len(s) for s in seqs], batch_size, None):
                ids, mask = self._pad([seqs[i] for i in batch])
                out[batch] = self._sentence(self._encode(ids, mask), mask).cpu()
        return out

    def logits(self, texts: Sequence[str], batch_size: int = 64):
        """Uncalibrated logits, one row per text."""
        return self._logits_and_embeddings(texts, batch_size)[0]

    def _logits_and_embeddings(self, texts: Sequence[str], batch_size: int = 64):
        """(uncalibrated logits, sentence embeddings), one row per text."""
        emb = self.embed(texts, batch_size)
        with torch.inference_mode():
            return self.head(emb.to(self.device)).float().cpu(), emb

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Calibrated class probabilities (temperature-scaled softmax), one row per text.

        A loaded (serving) model answers a few texts from its cache of recent
        messages, filled by `core.serving.prefetch` on the model thread, and
        computes the rest with its compiled pass (`parse`).
        """
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self._served is None or len(texts) > 8:
            return self._calibrated(*self._logits_and_embeddings(texts, batch_size))
        return np.stack([reading.proba for reading in self.parse(texts)])

    # ------------------------------------------------------------- readings
    def has_read(self, texts: Sequence[str]) -> bool:
        """Whether `parse` would answer every one of `texts` from its cache (a prefetch read them)."""
        return self._served is not None and all(self._served.get(("parse", t)) is not None for t in texts)

    def parse(self, texts: Sequence[str], batch_size: int = 64) -> List[Reading]:
        """Intent probabilities, entities and the unknown-request verdict per text, from one pass of
        the encoder.

        Entities are Rasa's dicts without `extractor` (the component adds it);
        a model trained without entities returns none, one without a detector
        says None for `unknown`. A loaded (serving) model answers from its
        cache of recent messages and its compiled pass.
        """
        if not texts:
            return []
        if self._served is None or len(texts) > 8:
            return self._readings(*self._eager(texts, batch_size))
        out: List = [self._served.get(("parse", t)) for t in texts]
        missing = [i for i, row in enumerate(out) if row is None]
        if missing:
            for i, fresh in zip(missing, self._serve_parse([texts[i] for i in missing])):
                self._served.put(("parse", texts[i]), fresh)
                out[i] = fresh
        return [r._replace(entities=[dict(e) for e in r.entities]) for r in out]

    def _readings(self, logits, emb, found) -> List[Reading]:
        proba = self._calibrated(logits, emb)
        if self.detector is None:
            return [Reading(p, f, None, None) for p, f in zip(proba, found)]
        scores = self.detector.scores(emb.float().cpu().numpy(), proba)
        flags = scores > self.detector.threshold
        return [Reading(p, f, bool(u), float(x)) for p, f, u, x in zip(proba, found, flags, scores)]

    def _eager(self, texts: Sequence[str], batch_size: int = 64) -> Tuple["torch.Tensor", "torch.Tensor", List[List[Dict]]]:
        """(uncalibrated logits, sentence embeddings, entities per text) in one pass of the encoder
        (no entities, and no character offsets needed, without a token head)."""
        if self.tagger is not None:
            seqs, offsets, words = self._tokenize_spans(texts)
        else:
            seqs = self._tokenize(texts)
        logits = torch.zeros((len(seqs), len(self.labels)))
        emb = torch.zeros((len(seqs), self._bert().config.hidden_size))
        found: List[List[Dict]] = [[] for _ in seqs]
        if self.encoder.training:
            self.encoder.eval()
        with torch.inference_mode():
            for batch in length_buckets([len(s) for s in seqs], batch_size, None):
                ids, mask = self._pad([seqs[i] for i in batch])
                states = self._encode(ids, mask)
                sentence = self._sentence(states, mask)
                emb[batch] = sentence.cpu()
                logits[batch] = self.head(sentence).float().cpu()
                if self.tagger is None:
                    continue
                probs = torch.softmax(self.tagger(states.float()), dim=-1).cpu().numpy()
                for row, i in enumerate(batch):
                    found[i] = self.tags.decode(texts[i], offsets[i], words[i], probs[row, : len(seqs[i])])
        return logits, emb, found

    def _serve_parse(self, texts: Sequence[str]) -> List[Reading]:
        """Readings of a few texts through the compiled pass (built on first use): read-only
        probabilities, entities as tuples (cached: `parse` hands out copies)."""
        if self._serving_logits is None:
            self._serving_logits = self._compile()
        if self.tagger is not None:
            seqs, offsets, words = self._tokenize_spans(texts)
        else:
            seqs = self._tokenize(texts)
        ids, mask = self._pad(seqs)
        with torch.inference_mode():
            outputs = self._serving_logits(ids, mask)
        found: List = [()] * len(texts)
        if self.tagger is not None:
            probs = torch.softmax(outputs[2].float(), dim=-1).cpu().numpy()
            found = [tuple(self.tags.decode(texts[i], offsets[i], words[i], probs[i, : len(seqs[i])])) for i in range(len(texts))]
        out = []
        for reading in self._readings(outputs[0], outputs[1], found):
            proba = np.ascontiguousarray(reading.proba)
            proba.setflags(write=False)
            out.append(reading._replace(proba=proba))
        return out

    def _calibrated(self, logits, emb=None) -> np.ndarray:
        """Temperature-scaled softmax of `logits`, as numpy; with the sentence embeddings `emb`, the
        training examples' neighbour vote blended in (when the model has one)."""
        proba = torch.softmax(logits.float().cpu() / self.temperature, dim=-1).numpy()
        if self.neighbours is None or emb is None:
            return proba
        return self.neighbours.blend(proba, emb.float().cpu().numpy())

    # ------------------------------------------------ shared lower layers
    @property
    def frozen_layers(self) -> int:
        """How many bottom layers fine-tuning left as the base model's (0: all were tuned)."""
        return self._split

    def same_lower_layers(self, transformer) -> bool:
        """Whether `transformer` (a model of the same family) has this model's embeddings and frozen layers.

        Then its hidden states after `frozen_layers` layers are this model's
        own, and `predict_proba_prefixed` can start from them. Weights served
        in int8 are compared within their quantisation step.
        """
        if not self.splits:
            return False
        mine = self._bert()
        try:
            theirs = layer_runner(transformer)
            if type(theirs) is not type(self._layers):
                return False
            pairs = [(mine.embeddings, transformer.embeddings)] + [
                (self._layers.blocks(mine)[i], theirs.blocks(transformer)[i]) for i in range(self._split)]
        except (AttributeError, IndexError, TypeError):
            return False
        if not pairs[1:]:
            return False
        for a, b in pairs:
            left, right = _float_tensors(a), _float_tensors(b)
            if left.keys() != right.keys():
                return False
            for name, (tensor, step, rounding) in left.items():
                other = right[name][0]
                if tensor.shape != other.shape or not torch.allclose(tensor, other, rtol=rounding, atol=step + 1e-5):
                    return False
        return True

    def predict_proba_prefixed(self, text: str, hidden, exact: bool = True) -> np.ndarray:
        """Probabilities of `text` from `hidden`, its (1, tokens, hidden) states after the frozen layers.

        `hidden` comes from an encoder that `same_lower_layers` accepted
        (`core.encoder.prefix_of`): only the tuned layers and the head run.
        Cached with `predict_proba`'s answers; with `exact` False (the caller
        left some tokens' states out: an approximation) cached apart.
        """
        from core.serving import cached_rows

        read = self._served.get(("parse", text)) if exact and self._served is not None else None
        if read is not None:  # the model thread's `prefetch` read the whole message already
            return read.proba

        def compute(_texts):
            if self._serving_top is None:
                self._serving_top = self._compile_top()
            mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=self.device)
            with torch.inference_mode():
                logits, emb = self._serving_top(hidden.to(self.device), mask)
            return self._calibrated(logits, emb)

        return cached_rows(self._served, "proba" if exact else "proba-approximate", [text], compute)[0]

    def _compile_top(self):
        """`(hidden after the frozen layers, mask) -> logits` as one TorchScript call."""
        dtype = next(self._bert().embeddings.parameters()).dtype

        def inputs(texts):
            ids, mask = self._pad(self._tokenize(texts))
            with torch.inference_mode():
                return self._frozen_prefix(ids, mask).float(), mask

        return self._trace(
            lambda hidden, mask: self._run_layers(hidden.to(dtype), mask, self._split), inputs,
            [["where is my new card"], ["hi"], ["my card payment was declined twice at the shop today"]],
            "intent model (tuned layers)", with_embedding=True,
        )

    def _compile(self):
        """`(ids, mask) -> logits` as one TorchScript call (see `core.serving`), checked against `logits`."""

        return self._trace(
            self._encode, lambda texts: self._pad(self._tokenize(texts)),
            [["where is my new card"], ["hi"], ["my card payment was declined twice at the shop today", "hello"]],
            "intent model", with_tags=self.tagger is not None, with_embedding=True,
        )

    def _trace(self, layers: Callable, inputs: Callable, examples: Sequence[Sequence[str]], name: str,
               with_tags: bool = False, with_embedding: bool = False):
        """`(x, mask) -> logits`, or `(logits, sentence embedding[, token head's logits])` when
        `with_embedding`, where `layers(x, mask)` gives the last layer's states, as one TorchScript
        call (`core.serving.compile_for_serving`): traced on `inputs(examples[0])`, checked on the other
        examples against the eager pass."""
        from core.serving import compile_for_serving

        model = self

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder, self.head = model.encoder, model.head
                self.tagger = model.tagger if with_tags else None

            def forward(self, x, mask):
                states = layers(x, mask)
                sentence = model._sentence(states, mask)
                logits = self.head(sentence).float()
                if not with_embedding:
                    return logits
                if self.tagger is None:
                    return logits, sentence
                return logits, sentence, self.tagger(states.float())

        if self.encoder.training:
            self.encoder.eval()
        return compile_for_serving(Logits(), inputs(examples[0]), [inputs(e) for e in examples[1:]], name=name)

    # --------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        config: Optional[IntentModelConfig] = None,
        validation: Optional[Tuple[Sequence[str], Sequence[str]]] = None,
        progress: bool = True,
        pretrained_adapter: Optional[str] = None,
        log: Callable[[str], None] = logger.info,
        continue_training: bool = False,
        entities: Optional[Sequence[Sequence[Dict]]] = None,
        validation_entities: Optional[Sequence[Sequence[Dict]]] = None,
    ) -> "IntentModel":
        """Fine-tune an adapter and head on (text, label) pairs.

        A stratified `validation_split` of the data (or the given
        `validation` pair) drives early stopping and temperature calibration.
        With `pretrained_adapter`, that adapter is loaded and frozen and only
        the head is fitted (class centroids, then calibration); with
        `continue_training` as well, the loaded adapter keeps training (the
        retraining loop continues from the live adapter this way).

        `entities` (one list of annotations per text: entity, start, end and
        optionally role and group) trains the token head jointly; each list
        is checked first (`nlu.entities.check_annotations`), so a broken
        annotation stops training before any work with an error naming the
        example. Early stopping then weighs intent accuracy and entity F1
        equally.
        """
        from peft import PeftModel, get_peft_model
        from tqdm.auto import tqdm

        config = config or IntentModelConfig()
        if len(texts) != len(labels) or not texts:
            raise ValueError("fit needs the same, non-zero number of texts and labels")
        label_names = sorted(set(labels))
        if len(label_names) < 2:
            raise ValueError("fit needs at least two different intents")
        entities = cls._checked_entities(texts, entities, "training example")
        if validation is not None:
            validation_entities = cls._checked_entities(validation[0], validation_entities, "validation example")
        tags = TagScheme.from_annotations(entities + (validation_entities or []))
        seed_everything(config.seed)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        base, tokenizer = cls._load_base(config)
        config = config.with_layers_for(base, bool(tags))
        if pretrained_adapter:
            folder = Path(pretrained_adapter)
            folder = folder / ADAPTER_DIR if (folder / ADAPTER_DIR).is_dir() else folder
            encoder = PeftModel.from_pretrained(base, str(folder), is_trainable=continue_training)
        else:
            encoder = get_peft_model(base, build_peft_config(config, base))
        head = CosineHead(base.config.hidden_size, len(label_names))
        tagger = torch.nn.Linear(base.config.hidden_size, len(tags)) if tags else None
        model = cls(config, label_names, encoder, tokenizer, head, tags=tags, tagger=tagger)
        encoder.to(model.device)
        head.to(model.device)
        if tagger is not None:
            tagger.to(model.device)

        index = {name: i for i, name in enumerate(label_names)}
        y = np.array([index[l] for l in labels])
        if validation is not None:
            train_idx = np.arange(len(texts))
            keep = [i for i, l in enumerate(validation[1]) if l in index]
            val_texts, val_y = [validation[0][i] for i in keep], np.array([index[validation[1][i]] for i in keep])
            val_entities = [validation_entities[i] for i in keep] if validation_entities else [[] for _ in keep]
        else:
            train_idx, val_idx = stratified_split(y, config.validation_split, config.seed)
            val_texts, val_y = [texts[i] for i in val_idx], y[val_idx]
            val_entities = [entities[i] for i in val_idx]
        train_texts, train_y = [texts[i] for i in train_idx], y[train_idx]

        # Frozen prefix: computed once per utterance, reused every epoch (families that run
        # whole, see `nlu.base_models.WholeModel`, keep the token ids and run every block each step).
        started = time.perf_counter()
        if tags:
            seqs, offsets, _ = model._tokenize_spans(train_texts)
            token_tags = [tags.token_labels(entities[i], offs) for i, offs in zip(train_idx, offsets)]
        else:
            seqs, token_tags = model._tokenize(train_texts), None
        lengths = [len(s) for s in seqs]
        cached: List = [None] * len(seqs)
        encoder.eval()
        if not model.splits:
            cached = [torch.tensor(s, dtype=torch.long) for s in seqs]
            log(f"base model type '{base.config.model_type}' runs whole: no cache of its frozen layers")
        else:
            with torch.inference_mode():
                for batch in tqdm(length_buckets(lengths, 128, None), desc="caching frozen layers", disable=not progress, leave=False):
                    ids, mask = model._pad([seqs[i] for i in batch])
                    hidden = model._frozen_prefix(ids, mask)
                    for row, i in enumerate(batch):
                        cached[i] = hidden[row, : len(seqs[i])].clone()

        # Head starts at the class centroids of the untrained encoder.
        buckets = length_buckets(lengths, 128, None)
        train_emb = torch.cat([model._embed_cached(cached, lengths, batch, train=False) for batch in buckets])
        emb_y = train_y[np.concatenate(buckets)]  # the order of train_emb
        head.init_from_centroids(train_emb, torch.as_tensor(emb_y, device=train_emb.device))
        log(f"prepared {len(train_texts)} training utterances in {time.perf_counter() - started:.1f}s"
            + (f"; {len(tags.kinds)} entity kinds: {', '.join(tags.tag_names[1::2])}" if tags else ""))

        # With a frozen pretrained adapter the intent head stays at the centroids; only a token head trains.
        head_only = bool(pretrained_adapter and not continue_training)
        if head_only:
            for p in encoder.parameters():
                p.requires_grad_(False)
            if not tags:
                model._calibrate(val_texts, val_y)
                model._fit_after_training(cached, lengths, train_y, val_texts, val_y, log)
                return model

        adapter_params = [p for p in encoder.parameters() if p.requires_grad]
        groups = [] if head_only else [
            {"params": adapter_params, "lr": config.learning_rate},
            {"params": list(head.parameters()), "lr": config.head_learning_rate},
        ]
        if tagger is not None:
            groups.append({"params": list(tagger.parameters()), "lr": config.head_learning_rate})
        trained_params = [p for g in groups for p in g["params"]]
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(cached) / config.batch_size)
        total = steps_per_epoch * config.epochs
        warmup = max(1, int(total * config.warmup_ratio))
        # Linear warm-up, then linear decay to zero at the last planned step.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup)),
        )
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        tag_loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
        rng = random.Random(config.seed)
        best = (-1.0, None)
        stale = 0
        y_tensor = torch.as_tensor(train_y, device=model.device)
        for epoch in range(1, config.epochs + 1):
            encoder.train()
            head.train()
            running, seen = 0.0, 0
            bar = tqdm(length_buckets(lengths, config.batch_size, rng), desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
            for batch in bar:
                states, mask = model._states_cached(cached, lengths, batch, train=True)
                loss = 0.0 if head_only else loss_fn(head(model._sentence(states, mask)), y_tensor[batch])
                if tagger is not None:
                    gold = torch.full(mask.shape, IGNORE, dtype=torch.long, device=model.device)
                    for row, i in enumerate(batch):
                        gold[row, : lengths[i]] = torch.as_tensor(token_tags[i])
                    dropped = torch.nn.functional.dropout(states.float(), 0.1, training=True)
                    loss = loss + config.entity_loss_weight * tag_loss_fn(tagger(dropped).flatten(0, 1), gold.flatten())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trained_params, 1.0)
                optimizer.step()
                schedule.step()
                running += loss.item() * len(batch)
                seen += len(batch)
                bar.set_postfix(loss=f"{running / seen:.3f}")
            score, note = model._validation_score(val_texts, val_y, val_entities)
            model.history.append({"epoch": epoch, "train_loss": running / max(1, seen), "seconds": time.perf_counter() - started, **note})
            log(f"epoch {epoch}: train loss {running / max(1, seen):.4f}, "
                + ", ".join(f"validation {k.replace('val_', '').replace('_', ' ')} {v:.4f}" for k, v in note.items()))
            if not len(val_y) or score > best[0]:
                best = (score, copy.deepcopy(model._trainable_state()))
                stale = 0
            else:
                stale += 1
                if stale >= config.patience:
                    log(f"early stop after epoch {epoch}: no validation gain for {stale} epochs")
                    break
        if best[1] is not None:
            model._load_trainable_state(best[1])
        model._calibrate(val_texts, val_y)
        model._fit_after_training(cached, lengths, train_y, val_texts, val_y, log)
        return model

    def _fit_after_training(self, cached, lengths, train_y: np.ndarray, val_texts: Sequence[str], val_y: np.ndarray,
                            log: Callable[[str], None]) -> None:
        """The neighbour vote, then the open-intent detector (on the blended probabilities), from the
        tuned encoder's embeddings of the training utterances (their cached lower layers) and of the
        validation split (the vote's weight, the detector's threshold)."""
        self.neighbours = None
        if not (self.config.neighbour_vote or self.config.open_intent) or len(val_y) < 2:
            return
        buckets = length_buckets(lengths, 128, None)
        train_emb = torch.cat([self._embed_cached(cached, lengths, batch, train=False) for batch in buckets]).cpu().numpy()
        emb_y = train_y[np.concatenate(buckets)]
        val_logits, val_emb = self._logits_and_embeddings(val_texts)
        val_proba, val_emb = self._calibrated(val_logits), val_emb.numpy()
        if self.config.neighbour_vote:
            self.neighbours, tried = NeighbourVote.fit(
                train_emb, emb_y, val_emb, np.asarray(val_y), val_proba, len(self.labels),
                k=self.config.neighbours, sharpness=self.config.neighbour_sharpness)
            if tried:
                chosen = self.neighbours.weight if self.neighbours is not None else 0.0
                log("neighbour vote: validation log-loss by weight "
                    + ", ".join(f"{w:g}: {a:.4f}" for w, a in tried.items()) + f"; weight {chosen:g}")
                self.calibration["neighbour_weight"] = chosen
            if self.neighbours is not None:
                val_proba = self.neighbours.blend(val_proba, val_emb)
                self.calibration["validation_ece_blended"] = expected_calibration_error(val_proba, np.asarray(val_y))
        if not self.config.open_intent:
            return
        self.detector = OpenIntentDetector.fit(
            train_emb, emb_y, val_emb, np.asarray(val_y), val_proba,
            false_unknown_rate=self.config.false_unknown_rate, centroids_per_class=self.config.centroids_per_intent,
            seed=self.config.seed)
        log(f"open-intent detector: {len(self.detector.centroids)} centroids, threshold set to flag "
            f"{self.config.false_unknown_rate:.0%} of the {len(val_y)} known validation requests")

    @staticmethod
    def _checked_entities(texts: Sequence[str], entities: Optional[Sequence[Sequence[Dict]]], what: str) -> List[List[Dict]]:
        """`entities` as one list per text (empty lists when None), each annotation checked."""
        if entities is None:
            return [[] for _ in texts]
        if len(entities) != len(texts):
            raise ValueError(f"fit got {len(entities)} entity lists for {len(texts)} texts")
        for n, (text, annotations) in enumerate(zip(texts, entities), start=1):
            check_annotations(text, annotations or [], f"{what} {n}")
        return [list(a or []) for a in entities]

    def _validation_score(self, texts: Sequence[str], y: np.ndarray, entities: Sequence[Sequence[Dict]]) -> Tuple[float, Dict[str, float]]:
        """(score for early stopping, figures for the history): intent accuracy, averaged with entity F1
        when the model has a token head and the validation examples have entities."""
        if not len(y):
            return float("nan"), {"val_accuracy": float("nan")}
        if self.tagger is None or not any(entities):
            accuracy = self.accuracy(texts, y)
            return accuracy, {"val_accuracy": accuracy}
        logits, _, found = self._eager(texts)
        accuracy = float((logits.argmax(-1).numpy() == np.asarray(y)).mean())
        f1 = span_scores(entities, found)["f1"]
        return (accuracy + f1) / 2, {"val_accuracy": accuracy, "val_entity_f1": f1}

    def _states_cached(self, cached, lengths, batch, train: bool):
        """(last layer's token states, mask) of the cached utterances in `batch`."""
        batch = list(batch)
        context = torch.enable_grad() if train else torch.inference_mode()
        if not self.splits:  # `cached` holds token ids: the whole model runs
            ids, mask = self._pad([cached[i].tolist() for i in batch])
            with context:
                return self._encode(ids, mask), mask
        width = max(lengths[i] for i in batch)
        dim = cached[batch[0]].shape[-1]
        hidden = torch.zeros((len(batch), width, dim), device=self.device)
        mask = torch.zeros((len(batch), width), dtype=torch.long, device=self.device)
        for row, i in enumerate(batch):
            hidden[row, : lengths[i]] = cached[i]
            mask[row, : lengths[i]] = 1
        with context:
            return self._run_layers(hidden, mask, self._split), mask

    def _embed_cached(self, cached, lengths, batch, train: bool):
        states, mask = self._states_cached(cached, lengths, batch, train)
        with torch.enable_grad() if train else torch.inference_mode():
            return self._sentence(states, mask)

    def _trainable_state(self) -> Dict:
        state = {k: v.detach().clone() for k, v in self.encoder.named_parameters() if v.requires_grad}
        state.update({f"head.{k}": v.detach().clone() for k, v in self.head.state_dict().items()})
        if self.tagger is not None:
            state.update({f"tagger.{k}": v.detach().clone() for k, v in self.tagger.state_dict().items()})
        return state

    def _load_trainable_state(self, state: Dict) -> None:
        params = dict(self.encoder.named_parameters())
        for key, value in state.items():
            if not key.startswith(("head.", "tagger.")):
                params[key].data.copy_(value)
        self.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        if self.tagger is not None:
            self.tagger.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("tagger.")})

    def accuracy(self, texts: Sequence[str], y: np.ndarray) -> float:
        """Share of `texts` whose top prediction is the label index in `y`."""
        if not len(texts):
            return float("nan")
        return float((self.logits(texts).argmax(-1).numpy() == np.asarray(y)).mean())

    def _calibrate(self, texts: Sequence[str], y: np.ndarray) -> None:
        """Temperature scaling on held-out data so that confidences mean what they say."""
        if len(texts) < 5:
            self.temperature = 1.0
            return
        logits = self.logits(texts).clone()  # leave inference mode for autograd
        target = torch.as_tensor(np.asarray(y), dtype=torch.long)
        log_t = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
            loss.backward()
            return loss

        optimizer.step(closure)
        self.temperature = float(log_t.detach().exp().clamp(0.05, 20.0))
        probs = torch.softmax(logits.detach() / self.temperature, dim=-1).numpy()
        self.calibration = {
            "validation_ece": expected_calibration_error(probs, np.asarray(y)),
            "validation_examples": int(len(texts)),
        }

    # ------------------------------------------------------------ persisting
    def save(self, folder: Path) -> Path:
        """Write the adapter (PEFT format), the head and the label map as `folder`, replacing it whole."""
        from safetensors.torch import save_file

        folder = Path(folder)
        if not hasattr(self.encoder, "save_pretrained") or not hasattr(self.encoder, "peft_config"):
            raise IntentModelError("a merged model cannot be saved again; save before loading for inference")
        with replacing_folder(folder) as staging:  # a loader never finds half a model
            self.encoder.save_pretrained(str(staging / ADAPTER_DIR))
            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(staging / HEAD_FILE))
            if self.tagger is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.tagger.state_dict().items()}, str(staging / ENTITY_FILE))
            if self.neighbours is not None:
                save_file({k: torch.from_numpy(v) for k, v in self.neighbours.tensors().items()}, str(staging / NEIGHBOURS_FILE))
            meta = {
                "format_version": FORMAT_VERSION,
                "labels": self.labels,
                "entities": self.tags.to_dict() if self.tags else None,
                "temperature": self.temperature,
                "calibration": self.calibration,
                "open_intent": self.detector.to_dict() if self.detector is not None else None,
                "neighbours": self.neighbours.settings() if self.neighbours is not None else None,
                "config": dataclasses.asdict(self.config),
                "history": self.history,
            }
            (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path, device: Optional[str] = None, merge: bool = True, precision: str = "fp32") -> "IntentModel":
        """Load a folder written by `save`, offline; merges the adapter for fast inference.

        `precision` 'bf16' keeps the merged transformer in bfloat16 for serving
        (see `core.encoder.inference_precision`); 'int8' quantises its linear
        layers' weights to 8 bits (dynamic quantisation: activations are
        quantised per call), about three times faster than float32 on one
        core, where the CPU has a quantised engine (float32 elsewhere, with a
        warning). The head stays float32.
        """
        from peft import PeftModel
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path, head_path, adapter_path = folder / META_FILE, folder / HEAD_FILE, folder / ADAPTER_DIR
        for needed in (meta_path, head_path, adapter_path / "adapter_config.json"):
            if not needed.exists():
                raise IntentModelError(
                    f"intent model file '{needed}' is missing; retrain with `rasa train` or "
                    f"`python -m training.finetune_intent`"
                )
        # Each step names the file it reads, so a corrupt one is named in the error.
        step = meta_path
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            config = IntentModelConfig.from_dict(meta["config"])
            if device:
                config.device = device
            step = None  # the base model: ModelNotFoundError names what is missing
            base, tokenizer = cls._load_base(config)
            step = adapter_path
            encoder = PeftModel.from_pretrained(base, str(adapter_path))
            step = head_path
            head_state = load_file(str(head_path))
            tags = TagScheme.from_dict(meta["entities"]) if meta.get("entities") else None
            step = folder / ENTITY_FILE
            if tags and not step.exists():
                raise IntentModelError(
                    f"intent model file '{step}' is missing (the model was trained with entities); retrain it")
            tagger_state = load_file(str(step)) if tags else None
            step = meta_path
            detector = OpenIntentDetector.from_dict(meta["open_intent"]) if meta.get("open_intent") else None
            neighbours = None
            if meta.get("neighbours"):
                step = folder / NEIGHBOURS_FILE
                if not step.exists():
                    raise IntentModelError(f"intent model file '{step}' is missing (the model votes with its training examples); retrain it")
                neighbours = NeighbourVote.restore(meta["neighbours"], {k: v.numpy() for k, v in load_file(str(step)).items()})
        except (ModelNotFoundError, IntentModelError):
            raise
        except Exception as exc:  # corrupt JSON, safetensors or adapter weights
            where = f"'{step}'" if step is not None else f"the base model of '{folder}'"
            raise IntentModelError(f"intent model file {where} is corrupt ({type(exc).__name__}: {exc}); retrain it") from exc
        head = CosineHead(base.config.hidden_size, len(meta["labels"]))
        try:
            head.load_state_dict(head_state)
        except RuntimeError as exc:
            raise IntentModelError(f"'{head_path}' does not match the label map in '{meta_path}': {exc}") from exc
        tagger = None
        if tags:
            tagger = torch.nn.Linear(base.config.hidden_size, len(tags))
            try:
                tagger.load_state_dict(tagger_state)
            except RuntimeError as exc:
                raise IntentModelError(f"'{folder / ENTITY_FILE}' does not match the entity tags in '{meta_path}': {exc}") from exc
        model = cls(config, meta["labels"], encoder, tokenizer, head, meta.get("temperature", 1.0), tags=tags, tagger=tagger)
        model.history = meta.get("history", [])
        model.calibration = meta.get("calibration") or {}
        model.detector = detector
        model.neighbours = neighbours
        if merge:
            model.encoder = encoder.merge_and_unload()  # plain BertModel: no adapter cost per call
            if precision == "bf16":
                model.encoder.to(torch.bfloat16)
            elif precision == "int8":
                model.encoder = quantized_int8(model.encoder)
        model.encoder.to(model.device).eval()
        model.head.to(model.device).eval()
        if model.tagger is not None:
            model.tagger.to(model.device).eval()
        if merge:
            from core.serving import LRUCache

            model._served = LRUCache(4096)
        return model

    def prefetch(self, texts: Sequence[str]) -> None:
        """Classify `texts` now (on the model thread) so that `predict_proba` finds them cached."""
        if self._served is not None:
            self.parse(list(texts))


def _float_tensors(module) -> Dict[str, Tuple["torch.Tensor", float, float]]:
    """Every weight of `module` as (float32 tensor, absolute, relative tolerance): int8 weights
    dequantised (within one step), bfloat16 ones within their rounding."""
    out: Dict[str, Tuple[torch.Tensor, float, float]] = {}
    for name, sub in module.named_modules():
        weight = getattr(sub, "weight", None)
        if callable(weight) and hasattr(sub, "bias") and callable(sub.bias):  # dynamically quantised Linear
            packed = weight()
            step = float(packed.q_scale()) if packed.qscheme() == torch.per_tensor_affine else float(packed.q_per_channel_scales().max())
            out[f"{name}.weight"] = (packed.dequantize().float(), step, 0.0)
            if sub.bias() is not None:
                out[f"{name}.bias"] = (sub.bias().detach().float(), 0.0, 0.0)
            continue
        for pname, param in sub.named_parameters(recurse=False):
            rounding = 2.0 ** -8 if param.dtype == torch.bfloat16 else 0.0
            out[f"{name}.{pname}"] = (param.detach().float(), 0.0, rounding)
    return out


def quantized_int8(module):
    """`module` with its Linear layers dynamically quantised to int8, or `module` itself (warned)
    where this PyTorch build has no quantised engine for the CPU."""
    import warnings

    engines = [e for e in ("x86", "fbgemm", "qnnpack") if e in torch.backends.quantized.supported_engines]
    if not engines:
        logger.warning("int8 serving asked for, but this PyTorch has no quantised CPU engine: serving float32")
        return module
    torch.backends.quantized.engine = engines[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager API's notice that torchao is its successor
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8).eval()


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top prediction: the gap between confidence and accuracy,
    averaged over `bins` equal-width confidence bins weighted by their share of examples."""
    probs, y = np.asarray(probs), np.asarray(y)
    if not len(y):
        return float("nan")
    confidence, predicted = probs.max(-1), probs.argmax(-1)
    correct = (predicted == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(total)


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) holding out `fraction` of each class with ≥3 examples."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * fraction)) if len(idx) >= 3 else 0
        if fraction > 0 and len(idx) >= 3:
            n_val = max(1, n_val)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.array(sorted(train)), np.array(sorted(val), dtype=int)


class CosineHead(torch.nn.Module):
    """Logits = scale * cos(embedding, class prototype)."""

    def __init__(self, dim: int, classes: int, scale: float = 20.0):
        super().__init__()
        self.prototypes = torch.nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale)))

    def init_from_centroids(self, emb: "torch.Tensor", y: "torch.Tensor") -> None:
        """Set each prototype to the normalised mean embedding of its class."""
        with torch.no_grad():
            for c in range(self.prototypes.shape[0]):
                members = emb[y == c]
                if len(members):
                    self.prototypes[c] = torch.nn.functional.normalize(members.mean(0), dim=-1)

    def forward(self, emb: "torch.Tensor") -> "torch.Tensor":
        protos = torch.nn.functional.normalize(self.prototypes, dim=-1)
        return self.log_scale.exp() * emb @ protos.T
