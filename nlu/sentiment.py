"""Sentiment of a customer message: negative, neutral or positive, with a confidence.

Two readings of the message, blended:

- a fine-tuned copy of the bundled sentence encoder (all-MiniLM-L6-v2 with a
  LoRA adapter on its top layers and a three-way head, trained with
  `nlu.model.IntentModel` like the intent classifier): it reads the whole
  message, "not bad at all" included;
- logistic regression over the message's frozen sentence embedding (the
  one the desk already computes for each message, `core.encoder.embed_few`)
  and TF-IDF word n-grams.

Their log-probabilities are mixed with a weight chosen on a held-out
tenth of the training data for macro-F1
(``python -m training.train_sentiment``, trained on customers' messages to
airlines). A second logistic head names the reason of a negative message
(late flight, lost luggage, customer service, ...).

The artifact folder (default ``artifacts/sentiment``) holds ``meta.json``
(labels, settings, vocabulary, blend), ``weights.npz`` (plain arrays, no
pickles), ``metrics.json`` and ``encoder/`` (the adapter and head, in
`IntentModel`'s format). Without ``encoder/`` (an artifact of the first
version) the logistic heads decide alone; without the folder the desk
keeps the word-list detector (``nlu/frustration.py``) alone.

The frustration-to-handoff decision (`frustrated`) asks for both: the
word-list detector must find a signal AND the message must read negative
with at least `negative_threshold` confidence. Ordinary questions that
merely contain "again" or "still" ("I still have not received my card")
no longer call a person on their own.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

LABELS = ("negative", "neutral", "positive")
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "artifacts" / "sentiment"
# Reasons too rare or too vague to learn ("Can't Tell", one-off labels).
MIN_REASON_EXAMPLES = 40
SKIP_REASONS = {"", "Can't Tell"}
ENCODER_DIR = "encoder"  # the fine-tuned reader, in nlu.model.IntentModel's format
# The reader is served with int8 weights: about 3x faster than float32 on one core (p99 under
# 5 ms a message with the heads), for 0.002 macro-F1 on the airline test split
# (`python -m training.bench_sentiment` prints all three precisions).
READER_PRECISION = "int8"


_HANDLES_AND_LINKS = re.compile(r"@\w+|https?://\S+")


def normalise(text: str) -> str:
    """Lower case, without @handles and links (they name the company, not the mood)."""
    return _HANDLES_AND_LINKS.sub(" ", (text or "").lower())


def _vectorizer(vocabulary: Optional[Dict[str, int]] = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, sublinear_tf=True, preprocessor=normalise, vocabulary=vocabulary, dtype=np.float32
    )


def _char_vectorizer(vocabulary: Optional[Dict[str, int]] = None):
    """Character 2- to 5-grams within words: spelling, elongation ("soooo"), emoticons, any script."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), min_df=2, max_features=200_000, sublinear_tf=True,
        preprocessor=normalise, vocabulary=vocabulary, dtype=np.float32,
    )


class _SparseBlock:
    """One fitted TF-IDF vectoriser, scored for one text with dictionary look-ups (no scikit-learn transform)."""

    def __init__(self, vectorizer, offset: int) -> None:
        self.vectorizer = vectorizer
        self.offset = offset  # first column of this block in the stacked features
        self.vocabulary = vectorizer.vocabulary_
        self.size = len(self.vocabulary)
        self.analyse = vectorizer.build_analyzer()
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float32)
        self._last = None  # (text, features) of the last text scored

    def features(self, text: str):
        """(columns, weights) of one text: sublinear tf, idf, l2 norm, as the vectoriser computes.

        The last text's are kept: the sentiment heads and then the reason head
        score the same message one after the other.
        """
        last = self._last
        if last is not None and last[0] == text:
            return last[1]
        counts: Dict[int, int] = {}
        for term in self.analyse(text or ""):
            index = self.vocabulary.get(term)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        found = None
        if counts:
            columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts)) + self.offset
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))) \
                * self.idf[columns - self.offset]
            found = (columns, weights / np.linalg.norm(weights))
        self._last = (text, found)  # one tuple, swapped whole: safe for a reader on another thread
        return found

    def logits(self, text: str, coef: np.ndarray) -> np.ndarray:
        """This block's part of the logits of one text."""
        found = self.features(text)
        if found is None:
            return np.zeros(coef.shape[0], dtype=np.float32)
        columns, weights = found
        return coef[:, columns] @ weights


@dataclasses.dataclass(frozen=True)
class Sentiment:
    """The model's verdict on one message."""

    label: str  # negative | neutral | positive
    confidence: float  # probability of `label`
    negative: float  # probability of negative
    reason: Optional[str] = None  # for a negative message: late flight, customer service, ...
    score: Optional[float] = None  # polarity: P(positive) - P(negative), from -1 to 1

    def polarity(self) -> float:
        """`score`, or -`negative` when only that is known."""
        return float(self.score) if self.score is not None else -float(self.negative)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "negative": round(self.negative, 4),
            "reason": self.reason,
            "score": round(self.polarity(), 4),
        }


class SentimentModel:
    """Logistic-regression heads over [TF-IDF | weight * sentence embedding], blended with a fine-tuned reader.

    `tuned` is an `nlu.model.IntentModel` over the labels negative/neutral/
    positive (or None: the logistic heads decide alone); `blend_weight` is
    its share of the mixed log-probabilities (chosen on held-out data in
    training).
    """

    def __init__(self, vectorizer, embed_weight: float, coef: np.ndarray, intercept: np.ndarray,
                 reasons: Sequence[str] = (), reason_coef: Optional[np.ndarray] = None,
                 reason_intercept: Optional[np.ndarray] = None, tuned: Any = None,
                 blend_weight: float = 0.0,
                 char_vectorizer: Any = None) -> None:
        self.vectorizer = vectorizer
        self.char_vectorizer = char_vectorizer
        self.tuned = tuned
        self._shared_encoder = None  # set by `share_layers_with`
        self.blend_weight = float(blend_weight) if tuned is not None else 0.0
        self.embed_weight = float(embed_weight)
        self.coef = np.asarray(coef, dtype=np.float32)  # (classes, features)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.reasons = list(reasons)
        self.reason_coef = None if reason_coef is None else np.asarray(reason_coef, dtype=np.float32)
        self.reason_intercept = None if reason_intercept is None else np.asarray(reason_intercept, dtype=np.float32)
        # Serving: per-term columns, so that one message costs dictionary look-ups and a few small
        # dot products (scikit-learn's transform costs a millisecond or more). Columns: words | characters | embedding.
        self._blocks = [_SparseBlock(vectorizer, 0)]
        if char_vectorizer is not None:
            self._blocks.append(_SparseBlock(char_vectorizer, self._blocks[0].size))
        self._vocab_size = sum(block.size for block in self._blocks)

    # ---------------------------------------------------------- training
    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray,
            reasons: Optional[Sequence[str]] = None, c: float = 2.0, embed_weight: float = 1.0,
            min_reason_examples: int = MIN_REASON_EXAMPLES, characters: bool = True) -> "SentimentModel":
        """Fit on `texts` with their `labels` (negative/neutral/positive) and normalised `vectors`.

        Features: word 1-2-grams, character 2-5-grams within words (`characters`) and the
        sentence embedding times `embed_weight`. On the airline split the character block
        lifts the heads' macro-F1 from 0.769 to 0.788 (C 2, embedding weight 1).
        """
        from sklearn.linear_model import LogisticRegression

        unknown = set(labels) - set(LABELS)
        if unknown:
            raise ValueError(f"labels must be {', '.join(LABELS)} (got {', '.join(sorted(unknown))})")
        vectorizer = _vectorizer()
        try:
            sparse = vectorizer.fit_transform(texts)
        except ValueError:  # a handful of examples: no n-gram reaches min_df
            vectorizer = _vectorizer()
            vectorizer.set_params(min_df=1)
            sparse = vectorizer.fit_transform(texts)
        char_vectorizer = None
        if characters:
            char_vectorizer = _char_vectorizer()
            try:
                sparse = sp.hstack([sparse, char_vectorizer.fit_transform(texts)]).tocsr()
            except ValueError:  # a handful of examples: no character n-gram reaches min_df
                char_vectorizer = _char_vectorizer()
                char_vectorizer.set_params(min_df=1)
                sparse = sp.hstack([sparse, char_vectorizer.fit_transform(texts)]).tocsr()
        features = cls._stack(sparse, vectors, embed_weight)
        head = LogisticRegression(C=c, max_iter=3000).fit(features, list(labels))
        coef = np.zeros((len(LABELS), features.shape[1]), dtype=np.float32)
        intercept = np.full(len(LABELS), -1e4, dtype=np.float32)  # a class absent from training never wins
        classes = list(head.classes_)
        if len(classes) == 2:  # binary: sklearn keeps one row for the second class
            coef[LABELS.index(classes[1])], intercept[LABELS.index(classes[1])] = head.coef_[0], head.intercept_[0]
            intercept[LABELS.index(classes[0])] = 0.0
        else:
            for row, name in enumerate(classes):
                coef[LABELS.index(name)], intercept[LABELS.index(name)] = head.coef_[row], head.intercept_[row]
        names: List[str] = []
        reason_coef = reason_intercept = None
        if reasons is not None:
            counts: Dict[str, int] = {}
            for label, reason in zip(labels, reasons):
                if label == "negative" and reason not in SKIP_REASONS:
                    counts[reason] = counts.get(reason, 0) + 1
            names = sorted(r for r, n in counts.items() if n >= min_reason_examples)
            rows = [i for i, (label, reason) in enumerate(zip(labels, reasons)) if label == "negative" and reason in names]
            if len(names) >= 2:
                rhead = LogisticRegression(C=c, max_iter=3000).fit(features[rows], [reasons[i] for i in rows])
                names = list(rhead.classes_)
                reason_coef, reason_intercept = rhead.coef_, rhead.intercept_
            else:
                names = []
        return cls(vectorizer, embed_weight, coef, intercept, names, reason_coef, reason_intercept,
                   char_vectorizer=char_vectorizer)

    def choose_blend(self, texts: Sequence[str], vectors: np.ndarray, labels: Sequence[str]) -> Dict[str, Any]:
        """Pick `blend_weight` for macro-F1 on held-out `texts` (seen by neither reader), in tenths.

        Only the weight: per-class offsets searched on the same tenth lifted its
        macro-F1 (0.819) and lowered the test split's (0.787 against 0.807).
        Returns the weight and the held-out macro-F1 of each reader and of the blend.
        """
        truth = np.array([LABELS.index(label) for label in labels])
        heads = self.head_probabilities(texts, vectors)
        tuned = self.tuned_probabilities(texts)
        best = (macro_f1(truth, heads.argmax(axis=1)), 0.0)
        if tuned is not None:
            for weight in (round(0.1 * i, 1) for i in range(1, 11)):
                score = macro_f1(truth, self.blend(heads, tuned, weight).argmax(axis=1))
                if score > best[0] + 1e-9:
                    best = (score, weight)
        self.blend_weight = best[1]
        return {
            "weight": self.blend_weight,
            "heldout_macro_f1": {
                "heads": round(macro_f1(truth, heads.argmax(axis=1)), 4),
                "tuned": round(macro_f1(truth, tuned.argmax(axis=1)), 4) if tuned is not None else None,
                "blend": round(best[0], 4),
            },
        }

    @staticmethod
    def _stack(sparse, vectors: np.ndarray, embed_weight: float):
        dense = sp.csr_matrix(np.asarray(vectors, dtype=np.float32) * embed_weight)
        return sp.hstack([sparse, dense]).tocsr()

    # ---------------------------------------------------------- serving
    def _tfidf_logits(self, text: str, coef: np.ndarray) -> np.ndarray:
        """The sparse blocks' part of the logits of one text."""
        return sum(block.logits(text, coef) for block in self._blocks)

    def _logits(self, texts: Sequence[str], vectors: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        k = self._vocab_size
        dense = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1) * self.embed_weight
        words = np.stack([self._tfidf_logits(text, coef) for text in texts]) if len(texts) else 0.0
        return words + dense @ coef[:, k:].T + intercept

    @staticmethod
    def _softmax(logits: np.ndarray) -> np.ndarray:
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def head_probabilities(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """(n, 3) probabilities of the logistic heads alone."""
        return self._softmax(self._logits(texts, vectors, self.coef, self.intercept))

    def tuned_probabilities(self, texts: Sequence[str]) -> Optional[np.ndarray]:
        """(n, 3) probabilities of the fine-tuned reader, in LABELS order; None without one."""
        if self.tuned is None:
            return None
        order = [self.tuned.labels.index(label) for label in LABELS]
        if self._shared_encoder is not None and len(texts) <= 8:
            shared = [self._from_shared_layers(t) for t in texts]
            if all(s is not None for s in shared):  # the encoder's pass ran the frozen layers already
                return np.stack([self.tuned.predict_proba_prefixed(normalise(t), hidden, exact)
                                 for t, (hidden, exact) in zip(texts, shared)])[:, order]
        return np.asarray(self.tuned.predict_proba([normalise(t) for t in texts]))[:, order]

    def _from_shared_layers(self, text: str):
        """(states after the frozen layers, exact) for the tuned layers, from the encoder's pass; or
        None, and the whole reader reads `text` (not encoded since, or longer than the reader reads).

        A handle's or link's tokens leave first (the reader reads the text without them).
        """
        from core.encoder import prefix_of

        hidden = prefix_of(self._shared_encoder, text)
        if hidden is None or hidden.shape[1] > self.tuned.config.max_length:
            return None
        if self._reads_as_encoded(text):
            return hidden, True
        keep = self._kept_tokens(text, hidden.shape[1])
        return None if keep is None else (hidden[:, keep], False)

    @staticmethod
    def _reads_as_encoded(text: str) -> bool:
        """Whether the reader's input (`normalise`d) has the encoder's tokens: no @handle, no link.

        The tokenizer is uncased, so lower-casing changes nothing. For a message
        with a handle or a link the tuned layers get the states of the other tokens
        only (`_kept_tokens`): the lower layers saw the handle, so this
        approximates the reader; on the airline test split, where every message
        names an @handle, it scores as well (docs/benchmarks.md).
        """
        return bool(text and text.strip()) and normalise(text) == text.lower()

    def _kept_tokens(self, text: str, length: int) -> Optional[List[int]]:
        """Positions of the encoder's `length` tokens of `text` outside its @handles and links.

        None when the tokenisation does not line up or nothing but handles is left.
        """
        spans = [m.span() for m in _HANDLES_AND_LINKS.finditer(text)]
        encoded = self.tuned.tokenizer(text, truncation=True, max_length=length, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) != length:
            return None
        keep = [i for i, (start, end) in enumerate(offsets)
                if not (end > start and any(start < b and end > a for a, b in spans))]
        if len(keep) <= 2:  # [CLS] and [SEP] only
            return None
        return keep

    def share_layers_with(self, encoder) -> bool:
        """Let the reader start from `encoder`'s hidden states where its own frozen layers are the encoder's.

        The desk embeds every message with `encoder` anyway (`core.encoder.embed_few`);
        when the reader's embeddings and lower layers are that encoder's (checked weight
        by weight), `embed_few` keeps the hidden states after them and a close reading
        of a message of at most the reader's `max_length` tokens runs only the
        reader's tuned layers: about half its cost, the same answer for a message
        without @handle or link (see `_reads_as_encoded` for those). False (nothing
        shared, the reader runs whole) for any other encoder.
        """
        from core.encoder import keep_prefix, transformer_of

        transformer = transformer_of(encoder)
        if self.tuned is None or transformer is None or not self.tuned.same_lower_layers(transformer):
            return False
        if not keep_prefix(encoder, self.tuned.frozen_layers):
            return False
        self._shared_encoder = encoder
        return True

    @staticmethod
    def blend(heads: np.ndarray, tuned: Optional[np.ndarray], weight: float) -> np.ndarray:
        """exp(weight * log tuned + (1 - weight) * log heads), normalised per row."""
        mixed = np.log(np.clip(heads, 1e-7, 1.0))
        if tuned is not None and weight > 0:
            mixed = weight * np.log(np.clip(tuned, 1e-7, 1.0)) + (1.0 - weight) * mixed
        return SentimentModel._softmax(mixed)

    def warm(self) -> None:
        """Build the fine-tuned reader's compiled serving pass now, so the first customer does not wait for it."""
        if self.tuned is not None:
            self.tuned.predict_proba(["warm up", "this is the worst service, nobody answers"])
            if self._shared_encoder is not None:
                from core.encoder import embed_few

                text = "warm up the shared layers: nobody answers"
                embed_few(self._shared_encoder, [text])
                self.tuned_probabilities([text])

    def probabilities(self, texts: Sequence[str], vectors: np.ndarray, close: bool = True) -> np.ndarray:
        """(n, 3) probabilities of negative, neutral, positive; `close` False: the logistic heads alone
        (a fraction of a millisecond a message, against several for the fine-tuned reader)."""
        heads = self.head_probabilities(texts, vectors)
        if self.tuned is None or not close:
            return heads
        return self.blend(heads, self.tuned_probabilities(texts), self.blend_weight)

    def predict(self, texts: Sequence[str], vectors: np.ndarray, close: bool = True) -> List[Sentiment]:
        """A `Sentiment` per text; `vectors` are the texts' normalised sentence embeddings.

        `close` (the default) reads with the blend of both readers; False with the logistic heads
        alone. The desk reads closely only the messages the frustration detector flags, where the
        reading decides a handoff; every other message gets the heads' quick reading.
        """
        probs = self.probabilities(texts, vectors, close)
        reasons: List[Optional[str]] = [None] * len(texts)
        negative_rows = [i for i, p in enumerate(probs) if int(p.argmax()) == 0]
        if self.reasons and negative_rows:
            logits = self._logits([texts[i] for i in negative_rows], np.asarray(vectors)[negative_rows],
                                  self.reason_coef, self.reason_intercept)
            if len(self.reasons) == 2:  # sklearn's binary head: one score for the second reason
                picks = [1 if row[0] > 0 else 0 for row in logits]
            else:
                picks = [int(row.argmax()) for row in logits]
            for i, pick in zip(negative_rows, picks):
                reasons[i] = self.reasons[pick]
        return [
            Sentiment(LABELS[int(p.argmax())], float(p.max()), float(p[0]), reasons[i], float(p[2] - p[0]))
            for i, p in enumerate(probs)
        ]

    def predict_one(self, text: str, vector: np.ndarray, close: bool = True) -> Sentiment:
        return self.predict([text], np.asarray(vector).reshape(1, -1), close)[0]

    def read_for_handoff(self, text: str, vector: np.ndarray, flagged: bool, close_reading_from: float) -> Sentiment:
        """The reading the handoff decision needs: close where it can decide, quick elsewhere.

        Close when the frustration detector `flagged` the message, or when the
        quick reading is at least `close_reading_from` negative (a complaint the
        word list missed); the heads' n-grams are scored once for both readings.
        """
        if flagged:
            return self.predict_one(text, vector, close=True)
        quick = self.predict_one(text, vector, close=False)
        if self.tuned is not None and quick.negative >= close_reading_from:
            return self.predict_one(text, vector, close=True)
        return quick

    # ---------------------------------------------------------- storage
    def save(self, folder: Path, extra: Optional[Dict[str, Any]] = None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "labels": list(LABELS),
            "embed_weight": self.embed_weight,
            "vocabulary": {term: int(i) for term, i in self.vectorizer.vocabulary_.items()},
            "char_vocabulary": None if self.char_vectorizer is None else
            {term: int(i) for term, i in self.char_vectorizer.vocabulary_.items()},
            "reasons": self.reasons,
            "blend": {"weight": self.blend_weight},
            **(extra or {}),
        }
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        arrays = {"coef": self.coef, "intercept": self.intercept, "idf": self.vectorizer.idf_.astype(np.float32)}
        if self.char_vectorizer is not None:
            arrays["char_idf"] = self.char_vectorizer.idf_.astype(np.float32)
        if self.reason_coef is not None:
            arrays.update(reason_coef=self.reason_coef, reason_intercept=self.reason_intercept)
        np.savez(folder / "weights.npz", **arrays)
        if self.tuned is not None:
            self.tuned.save(folder / ENCODER_DIR)

    @classmethod
    def load(cls, folder: Path, precision: Optional[str] = None) -> "SentimentModel":
        """Load `folder` (written by `save`); the fine-tuned reader is merged for serving in `precision`:
        'int8' (the default, `READER_PRECISION`), 'bf16' or 'fp32' (see `nlu.model.IntentModel.load`)."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if tuple(meta.get("labels", ())) != LABELS:
            raise ValueError(f"{folder}: labels {meta.get('labels')} are not {LABELS}")
        with np.load(folder / "weights.npz", allow_pickle=False) as arrays:
            data = {k: arrays[k] for k in arrays.files}
        vectorizer = _vectorizer(meta["vocabulary"])
        vectorizer.idf_ = data["idf"]
        char_vectorizer = None
        if meta.get("char_vocabulary"):
            char_vectorizer = _char_vectorizer(meta["char_vocabulary"])
            char_vectorizer.idf_ = data["char_idf"]
        tuned = None
        if (folder / ENCODER_DIR).exists():
            from nlu.model import IntentModel

            tuned = IntentModel.load(folder / ENCODER_DIR, device="cpu", precision=precision or READER_PRECISION)
            if sorted(tuned.labels) != sorted(LABELS):
                raise ValueError(f"{folder / ENCODER_DIR}: labels {tuned.labels} are not {LABELS}")
        blend = meta.get("blend") or {}
        return cls(vectorizer, meta["embed_weight"], data["coef"], data["intercept"], meta.get("reasons", []),
                   data.get("reason_coef"), data.get("reason_intercept"), tuned,
                   blend.get("weight", 0.0), char_vectorizer)


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int = len(LABELS)) -> float:
    """Macro-averaged F1 over `classes` label indices (numpy, for the blend search's many calls)."""
    scores = []
    for c in range(classes):
        tp = float(np.sum((predicted == c) & (truth == c)))
        fp = float(np.sum((predicted == c) & (truth != c)))
        fn = float(np.sum((predicted != c) & (truth == c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def is_current(folder: Optional[Path] = None) -> bool:
    """Whether `folder` holds a trained model of this version (heads and the fine-tuned reader)."""
    folder = Path(folder or DEFAULT_DIR)
    return all((folder / name).exists() for name in ("meta.json", "weights.npz", ENCODER_DIR))


def load_if_present(folder: Optional[Path] = None) -> Optional[SentimentModel]:
    """The trained model in `folder`, or None when it has not been trained."""
    folder = Path(folder or DEFAULT_DIR)
    if not (folder / "meta.json").exists() or not (folder / "weights.npz").exists():
        return None
    return SentimentModel.load(folder)


@dataclasses.dataclass(frozen=True)
class HandoffRule:
    """When a message's frustration calls a person (`frustrated`); the settings' `frustration_*`.

    Chosen on training splits only (``python -m training.bench_sentiment --choose``):
    the most recall on the airline train split's customer-service complaints with at
    most 0.5 % of BANKING77's training questions handed over.
    """

    negative_threshold: float = 0.8  # a worded flag hands off when the message reads this negative
    complaint_threshold: float = 0.985  # no flag: a complaint about the service this surely negative
    complaint_reasons: Tuple[str, ...] = ("Customer Service Issue",)
    close_reading_from: float = 0.9  # quick reading this negative: read closely, it may be a complaint

    @classmethod
    def from_settings(cls, settings: Any) -> "HandoffRule":
        reasons = tuple(r.strip() for r in str(settings.frustration_complaint_reasons).split(",") if r.strip())
        return cls(float(settings.frustration_negative_threshold), float(settings.frustration_complaint_threshold),
                   reasons, float(settings.frustration_close_reading_from))


def frustrated(assessment: Any, sentiment: Optional[Sentiment], rule: Optional[HandoffRule] = None) -> bool:
    """The handoff decision from the word-list detector's `assessment` and the message's `sentiment`.

    Without a sentiment model (`sentiment` None) the detector decides alone.
    With one, either path hands off:

    - the detector flagged the message by what the customer wrote or did
      (`assessment.worded`: words, capitals, ?!, asking again; not its
      nearest-examples guess) and it reads negative with probability
      `rule.negative_threshold` or more; asking again (``repeat``) is
      behaviour, not wording, and hands off on its own;
    - whatever the word list says, it is a complaint about the service:
      negative with `rule.complaint_threshold` or more, for one of
      `rule.complaint_reasons` (the reason head; `read_for_handoff` makes
      sure such a message got the close reading).
    """
    rule = rule or HandoffRule()
    if sentiment is None:
        return bool(assessment.frustrated)
    if assessment.frustrated and "repeat" in assessment.signals:
        return True
    if getattr(assessment, "worded", assessment.frustrated) and sentiment.negative >= rule.negative_threshold:
        return True
    return sentiment.negative >= rule.complaint_threshold and sentiment.reason in rule.complaint_reasons


# ------------------------------------------------------------------ storage (core.db v5)
def record(engine, conversation_id: str, message_id: Optional[str], sentiment: Sentiment, ts: Optional[float] = None) -> None:
    """Store the sentiment of one customer message (once per conversation and message id)."""
    record_many(engine, [(conversation_id, message_id, sentiment, ts)])


def record_many(engine, rows: Sequence[Tuple[str, Optional[str], Sentiment, Optional[float]]]) -> None:
    """Store the sentiments of customer messages, (conversation id, message id, sentiment, ts) each, in one transaction.

    A message already stored keeps its first row (the unique constraint
    ``uq_message_sentiment``; a replica that wrote it first wins without an
    error). One INSERT for the whole batch: the Rasa server writes these
    behind the answers (`core.serving.WriteBehind`).
    """
    import time

    from core import db

    t = db.message_sentiment
    now = time.time()
    values, seen = [], set()
    for conversation_id, message_id, sentiment, ts in rows:
        if message_id is not None:
            if (conversation_id, message_id) in seen:
                continue
            seen.add((conversation_id, message_id))
        values.append(dict(conversation_id=conversation_id, message_id=message_id, label=sentiment.label,
                           confidence=float(sentiment.confidence), negative=float(sentiment.negative),
                           reason=sentiment.reason, score=sentiment.polarity(), ts=ts or now))
    if not values:
        return
    with engine.begin() as conn:
        conn.execute(db.insert_ignoring_duplicates(conn, t, ["conversation_id", "message_id"]), values)


def latest(engine, conversation_ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """{conversation id: its newest stored sentiment as a dict} for the conversations that have one."""
    import sqlalchemy as sa

    from core import db

    ids = list(dict.fromkeys(conversation_ids))
    if not ids:
        return {}
    t = db.message_sentiment
    out: Dict[str, Dict[str, Any]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.conversation_id.in_(ids)).order_by(t.c.ts, t.c.id)).all()
    for row in rows:  # oldest first: the newest wins
        m = row._mapping
        out[m["conversation_id"]] = {"label": m["label"], "confidence": round(m["confidence"], 4),
                                     "negative": round(m["negative"], 4), "reason": m["reason"], "ts": m["ts"]}
    return out


def most_upset_first(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Waiting conversations sorted by their latest negative probability (highest first), then as given.

    `entries` are queue entries with ``status`` and an optional ``sentiment``
    dict; active (taken) ones keep their place after the waiting ones.
    """
    def key(pair):
        position, entry = pair
        waiting = entry.get("status") == "waiting"
        upset = (entry.get("sentiment") or {}).get("negative") or 0.0
        return (not waiting, -upset if waiting else 0.0, position)

    return [entry for _, entry in sorted(enumerate(entries), key=key)]


def trend(engine, since: float, until: float) -> Dict[str, Any]:
    """Stored message sentiment between `since` and `until`: counts per label, overall and per UTC day."""
    import datetime as dt

    import sqlalchemy as sa

    from core import db

    t = db.message_sentiment
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.label, t.c.negative, t.c.reason, t.c.ts)
                            .where(t.c.ts >= since).where(t.c.ts < until)).all()
    totals = {label: 0 for label in LABELS}
    reasons: Dict[str, int] = {}
    daily: Dict[str, Dict[str, int]] = {}
    for label, _negative, reason, ts in rows:
        totals[label] = totals.get(label, 0) + 1
        day = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")
        daily.setdefault(day, {name: 0 for name in LABELS})[label] += 1
        if label == "negative" and reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    n = len(rows)
    return {
        "messages": n,
        "counts": totals,
        "negative_share": round(totals["negative"] / n, 4) if n else 0.0,
        "negative_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "daily": dict(sorted(daily.items())),
    }
