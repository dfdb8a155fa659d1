"""Entities for the joint intent and entity model: tags, alignment, decoding, checks, scores.

The intent model's encoder also tags each token (`nlu.model.IntentModel`'s
token head). This module holds everything about entities that is not a
tensor: which kinds of entity the model knows (type, and role and group when
the training data gives them), how an annotated character span becomes one
tag per token, how tagged tokens become Rasa's entity dicts again, the
checks that refuse a broken annotation before anything trains, and the
entity-level precision, recall and F1 the benchmarks and the validation
split use.

Tags are BIO over kinds: `O`, then `B-k` and `I-k` for each kind `k`. A
token is tagged when it overlaps an annotated span, so a span that starts
or ends inside a word still trains the word's pieces. Decoding reads each
word at its first piece and takes the most likely valid tag sequence over
the words (Viterbi; `I-k` only after `B-k` or `I-k`), not each word's own
most likely tag: on SNIPS the same model's slot F1 rose from 91.2 to 93.0,
mostly long titles no longer broken in two by a doubtful word inside them
(docs/benchmarks.md). A span covers whole words (the tokenizer's own words:
in Chinese each character is one), so it never returns half a word.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

IGNORE = -100  # label of a token the loss skips (special tokens, padding)


class EntityAnnotationError(ValueError):
    """An annotated entity does not fit its example (span outside the text, overlap, unknown type)."""


@dataclasses.dataclass(frozen=True, order=True)
class EntityKind:
    """What the token head tells apart: an entity type, with its role and group when annotated."""

    entity: str
    role: Optional[str] = None
    group: Optional[str] = None

    @classmethod
    def of(cls, annotation: Dict[str, Any]) -> "EntityKind":
        return cls(str(annotation["entity"]), _opt(annotation.get("role")), _opt(annotation.get("group")))

    def as_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"entity": self.entity}
        if self.role is not None:
            out["role"] = self.role
        if self.group is not None:
            out["group"] = self.group
        return out


def _opt(value: Any) -> Optional[str]:
    return None if value is None or value == "" else str(value)


class TagScheme:
    """BIO tags over the entity kinds of the training data; index 0 is `O`."""

    def __init__(self, kinds: Sequence[EntityKind]) -> None:
        # One entity with and without a role (account_type, account_type/from): None sorts first.
        self.kinds = sorted(set(kinds), key=lambda k: (k.entity, k.role or "", k.group or ""))
        self._index = {kind: i for i, kind in enumerate(self.kinds)}

    @classmethod
    def from_annotations(cls, annotations: Iterable[Sequence[Dict[str, Any]]]) -> "TagScheme":
        return cls([EntityKind.of(a) for example in annotations for a in example])

    def __len__(self) -> int:
        """Number of tags (O plus two per kind)."""
        return 1 + 2 * len(self.kinds)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def to_dict(self) -> Dict[str, Any]:
        return {"kinds": [k.as_dict() for k in self.kinds]}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TagScheme":
        try:
            return cls([EntityKind.of(k) for k in data["kinds"]])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the entity tag list is malformed ({exc!r}): retrain the model") from exc

    @property
    def tag_names(self) -> List[str]:
        names = ["O"]
        for kind in self.kinds:
            label = "|".join([kind.entity] + [f"{k}={v}" for k, v in (("role", kind.role), ("group", kind.group)) if v])
            names += [f"B-{label}", f"I-{label}"]
        return names

    # ------------------------------------------------------------- training
    def token_labels(self, annotations: Sequence[Dict[str, Any]], offsets: Sequence[Tuple[int, int]]) -> List[int]:
        """One tag index per token of `offsets` ((start, end) characters; (0, 0) for special tokens:
        `IGNORE`). A token overlapping an annotated span gets B- (the span's first token) or I-."""
        labels = [IGNORE if start == end else 0 for start, end in offsets]
        for annotation in annotations:
            kind = self._index.get(EntityKind.of(annotation))
            if kind is None:
                continue
            first = True
            for t, (start, end) in enumerate(offsets):
                if start < end and start < annotation["end"] and end > annotation["start"]:
                    labels[t] = 1 + 2 * kind + (0 if first else 1)
                    first = False
        return labels

    # -------------------------------------------------------------- serving
    def _word_spans(self, offsets, word_ids, probs) -> List[List[Any]]:
        """[kind, first token, last token, [probabilities]] from the most likely valid BIO sequence over
        words (each read at its first piece): I-k only after B-k or I-k, so one entity is not broken in
        two by a doubtful word in its middle."""
        firsts = [t for t, (start, end) in enumerate(offsets)
                  if start < end and (t == 0 or word_ids[t] is None or word_ids[t] != word_ids[t - 1]
                                      or offsets[t - 1][0] == offsets[t - 1][1])]
        if not firsts:
            return []
        tags = _viterbi(np.log(np.clip(probs[firsts], 1e-12, None)), self._banned)
        spans: List[List[Any]] = []
        for position, (t, tag) in enumerate(zip(firsts, tags)):
            if tag == 0:
                continue
            kind, inside = (tag - 1) // 2, (tag - 1) % 2 == 1
            if inside and spans and spans[-1][2] == firsts[position - 1]:
                spans[-1][2] = t
                spans[-1][3].append(float(probs[t, tag]))
            else:
                spans.append([kind, t, t, [float(probs[t, tag])]])
        return spans

    @functools.cached_property
    def _banned(self) -> np.ndarray:
        """(tags + 1) x tags, 0 where allowed and -inf where not: row 0 the first tag, row 1 + i the tag
        after tag i. Made once per scheme, not per message."""
        n = len(self)
        allowed = np.ones((n + 1, n), dtype=bool)
        inside = np.arange(2, n, 2)  # I-k: 2 + 2k
        allowed[:, inside] = False
        allowed[1 + inside - 1, inside] = True  # after B-k
        allowed[1 + inside, inside] = True  # after I-k
        return np.where(allowed, 0.0, -np.inf)

    def decode(
        self,
        text: str,
        offsets: Sequence[Tuple[int, int]],
        word_ids: Sequence[Optional[int]],
        probs: np.ndarray,
    ) -> List[Dict[str, Any]]:
        """Rasa entity dicts (entity, start, end, value, confidence_entity, role/group) from per-token
        tag probabilities `probs` (tokens x tags) of `text`, tokenized as `offsets` and `word_ids`."""
        if not self.kinds:
            return []
        spans = self._word_spans(offsets, word_ids, probs)
        entities = []
        for kind, first, last, confidences in spans:
            first, last = _whole_words(first, last, word_ids)
            start, end = offsets[first][0], offsets[last][1]
            value = text[start:end]
            if not value.strip():
                continue
            entity = {"start": start, "end": end, "value": value, "confidence_entity": float(np.mean(confidences))}
            entity.update(self.kinds[kind].as_dict())
            entities.append(entity)
        return _joined(_without_overlaps(entities), text)


def _viterbi(logp: np.ndarray, banned: np.ndarray) -> List[int]:
    """The tag sequence of highest summed log-probability `logp` (steps x tags) whose first tag is
    not banned by `banned[0]` (-inf) and each next tag not by `banned[1 + previous]`."""
    score = logp[0] + banned[0]
    back = []
    for step in range(1, len(logp)):
        candidates = score[:, None] + banned[1:]  # previous x next
        back.append(candidates.argmax(0))
        score = candidates.max(0) + logp[step]
    best = [int(score.argmax())]
    for pointers in reversed(back):
        best.append(int(pointers[best[-1]]))
    return best[::-1]


def _joined(entities: List[Dict[str, Any]], text: str) -> List[Dict[str, Any]]:
    """Neighbouring spans of one kind with at most blank text between them are one entity: the
    tokenizer's words split "$18" into "$" and "18", and a tag may restart inside "John Lewis"."""
    out: List[Dict[str, Any]] = []
    for entity in entities:
        last = out[-1] if out else None
        if (last is not None and all(last.get(k) == entity.get(k) for k in ("entity", "role", "group"))
                and not text[last["end"]:entity["start"]].strip()):
            pieces = (last["end"] - last["start"], entity["end"] - entity["start"])
            last["confidence_entity"] = (last["confidence_entity"] * pieces[0] + entity["confidence_entity"] * pieces[1]) / sum(pieces)
            last["end"] = entity["end"]
            last["value"] = text[last["start"]:last["end"]]
        else:
            out.append(entity)
    return out


def _whole_words(first: int, last: int, word_ids: Sequence[Optional[int]]) -> Tuple[int, int]:
    """Token range widened to the whole words its ends are in."""
    if word_ids[first] is not None:
        while first > 0 and word_ids[first - 1] == word_ids[first]:
            first -= 1
    if word_ids[last] is not None:
        while last + 1 < len(word_ids) and word_ids[last + 1] == word_ids[last]:
            last += 1
    return first, last


def _without_overlaps(entities: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Spans widened to whole words can meet: keep the more confident of two that overlap."""
    kept: List[Dict[str, Any]] = []
    for entity in sorted(entities, key=lambda e: -e["confidence_entity"]):
        if all(entity["end"] <= k["start"] or entity["start"] >= k["end"] for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e["start"])


# ------------------------------------------------------------------ checks
def check_annotations(
    text: str,
    annotations: Sequence[Dict[str, Any]],
    where: str,
    known_types: Optional[Iterable[str]] = None,
) -> None:
    """Raise `EntityAnnotationError` naming `where` (file and line, or the example's place) and the
    example when an annotation lacks a type, has a span outside or across nothing of `text`, overlaps
    another annotation, or has a type outside `known_types` (when given)."""
    known = set(known_types) if known_types is not None else None
    spans = []
    for annotation in annotations:
        entity, start, end = annotation.get("entity"), annotation.get("start"), annotation.get("end")
        shown = {k: annotation.get(k) for k in ("entity", "start", "end", "value") if annotation.get(k) is not None}
        if not isinstance(entity, str) or not entity.strip():
            raise EntityAnnotationError(f"{where}: an entity without a type {shown} in example {text!r}")
        if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
            raise EntityAnnotationError(f"{where}: entity {shown} needs whole-number start and end, in example {text!r}")
        if not 0 <= start < end <= len(text):
            raise EntityAnnotationError(
                f"{where}: entity {shown} spans characters {start}-{end}, outside the example {text!r} "
                f"({len(text)} characters)")
        if not text[start:end].strip():
            raise EntityAnnotationError(f"{where}: entity {shown} spans only blank text in example {text!r}")
        if known is not None and entity not in known:
            raise EntityAnnotationError(
                f"{where}: unknown entity type {entity!r} in example {text!r}; "
                f"declare it under `entities:` in the domain (known: {sorted(known)})")
        spans.append((start, end, shown))
    spans.sort(key=lambda s: (s[0], s[1]))
    for (a_start, a_end, a), (b_start, b_end, b) in zip(spans, spans[1:]):
        if b_start < a_end:
            raise EntityAnnotationError(
                f"{where}: entities {a} and {b} overlap in example {text!r} "
                f"({text[a_start:a_end]!r} and {text[b_start:b_end]!r}); one token belongs to one entity")


# ------------------------------------------------------------------ scores
def _span_key(entity: Dict[str, Any]) -> Tuple:
    return (entity["start"], entity["end"], entity["entity"], _opt(entity.get("role")), _opt(entity.get("group")))


def span_scores(gold: Sequence[Sequence[Dict[str, Any]]], predicted: Sequence[Sequence[Dict[str, Any]]]) -> Dict[str, float]:
    """Entity-level (exact span and kind) precision, recall and F1 over examples, micro-averaged,
    as in CoNLL and the SNIPS slot-filling papers."""
    true_pos = n_pred = n_gold = 0
    for g, p in zip(gold, predicted):
        gold_keys, pred_keys = {_span_key(e) for e in g}, {_span_key(e) for e in p}
        true_pos += len(gold_keys & pred_keys)
        n_pred += len(pred_keys)
        n_gold += len(gold_keys)
    precision = true_pos / n_pred if n_pred else 0.0
    recall = true_pos / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold": n_gold, "predicted": n_pred}
