"""`AnswerIndex`: past questions and their answers, searchable by meaning.

Questions are embedded with the project's sentence encoder (normalised
vectors) and kept in a FAISS index compared by inner product, so a score is
the cosine similarity between the customer's message and a past question.
The FAISS index type is a factory string: ``"Flat"`` (exact, the default and
the reference), ``"HNSW32"``, ``"IVF1024,Flat"``, ``"IVF4096,PQ32"``...

    index = AnswerIndex.build([{"question": "How do I close my account?",
                                "answer": "Visit any branch or ...", "id": "17"}])
    index.search("I want to shut my account", k=3)   # -> [Hit(id="17", score=0.83, ...)]
    index.save("artifacts/index"); AnswerIndex.load("artifacts/index")

A folder written by `save` holds ``manifest.json`` (format, encoder, index
type, counts), ``index.faiss`` and ``records.jsonl`` (one record a line).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from core.files import replacing_folder
from core.records import read_jsonl

FORMAT_VERSION = 1
MANIFEST, FAISS_FILE, RECORDS_FILE = "manifest.json", "index.faiss", "records.jsonl"


class IndexNotFoundError(FileNotFoundError):
    """The answer index folder is missing or incomplete."""


class IndexConfigError(ValueError):
    """The FAISS index type or its parameters cannot be used for this history."""


def _shallow(record: Any) -> Dict[str, Any]:
    """A frozen dataclass's fields as a dict, without `dataclasses.asdict`'s deep copy.

    The fields are strings, numbers and tuples of strings, so nothing needs
    copying; this runs for every hit of every message.
    """
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in dataclasses.fields(record))
    return {name: getattr(record, name) for name in names}


_FIELD_NAMES: Dict[type, tuple] = {}


@dataclasses.dataclass(frozen=True)
class AnswerRecord:
    """A past question and the answer it received."""

    id: str
    question: str
    answer: str
    source: Optional[str] = None
    tags: tuple = ()
    updated_at: Optional[str] = None  # ISO 8601

    def as_dict(self) -> Dict[str, Any]:
        """The record as plain JSON-ready data."""
        return {**_shallow(self), "tags": list(self.tags)}


@dataclasses.dataclass(frozen=True)
class Hit:
    """A past question found for a query; `score` is their cosine similarity."""

    id: str
    question: str
    answer: str
    score: float
    source: Optional[str] = None
    tags: tuple = ()
    updated_at: Optional[str] = None

    @property
    def metadata(self) -> Dict[str, Any]:
        """Where the answer comes from and what it is about."""
        return {"source": self.source, "tags": list(self.tags), "updated_at": self.updated_at}

    def as_dict(self) -> Dict[str, Any]:
        """The hit as plain JSON-ready data (the shape the Rasa component outputs)."""
        return {**_shallow(self), "tags": list(self.tags), "score": round(float(self.score), 4)}


def normalize_timestamp(value: Any) -> Optional[str]:
    """An ISO 8601 string for a date, datetime, epoch seconds or ISO string; None when empty.

    Raises ValueError for anything else, so that a bad date is reported, not guessed.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc).isoformat()
    text = str(value).strip()
    try:
        if len(text) == 10:  # a date stays a date
            return dt.date.fromisoformat(text).isoformat()
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        raise ValueError(f"updated_at {value!r} is not an ISO 8601 date or time") from None


def timestamp_key(iso: Optional[str]) -> float:
    """A sortable number for an ISO timestamp (records without one sort oldest)."""
    if not iso:
        return float("-inf")
    parsed = dt.datetime.fromisoformat(iso)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def question_id(question: str) -> str:
    """A stable id for a record that has none: derived from its question."""
    return "q" + hashlib.sha1(" ".join(question.lower().split()).encode("utf-8")).hexdigest()[:12]


def as_record(raw: Union[Mapping[str, Any], AnswerRecord], redact_text: bool = True) -> AnswerRecord:
    """An `AnswerRecord` from a mapping with question, answer and optional id, source, tags, updated_at.

    Raises ValueError naming the missing or malformed field. Personal data is
    redacted from question and answer unless `redact_text` is False.
    """
    if isinstance(raw, AnswerRecord):
        raw = raw.as_dict()
    if not isinstance(raw, Mapping):
        raise ValueError(f"a record must be a mapping with question and answer, got {type(raw).__name__}")
    question, answer = raw.get("question"), raw.get("answer")
    for name, value in (("question", question), ("answer", answer)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"record has no {name} (a non-empty string is required)")
    question, answer = " ".join(question.split()), answer.strip()
    if redact_text:
        from core.redaction import redact

        question, answer = redact(question), redact(answer)
    tags = raw.get("tags") or ()
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.replace(";", ",").split(",") if t.strip()]
    if not isinstance(tags, (list, tuple)):
        raise ValueError("tags must be a list of strings or a comma-separated string")
    record_id = raw.get("id")
    record_id = str(record_id).strip() if record_id not in (None, "") else question_id(question)
    source = raw.get("source")
    return AnswerRecord(
        id=record_id,
        question=question,
        answer=answer,
        source=str(source) if source not in (None, "") else None,
        tags=tuple(str(t) for t in tags),
        updated_at=normalize_timestamp(raw.get("updated_at")),
    )


def _encoder_spec(encoder: Any) -> str:
    """How the manifest names an encoder: 'bundled', a folder inside the project
    (relative to its root, so that the project can move), or an absolute folder."""
    from core.encoder import BUNDLED, resolve_model_path
    from core.settings import PROJECT_ROOT

    if encoder in (None, BUNDLED):
        return BUNDLED
    if isinstance(encoder, (str, os.PathLike)):
        resolve_model_path(str(encoder))  # fails early, with the encoder loader's message
        folder = Path(encoder).expanduser().resolve()
        try:
            return str(folder.relative_to(PROJECT_ROOT))
        except ValueError:
            return str(folder)
    return getattr(encoder, "spec", None) or "custom"


def _encoder_folder(spec: str) -> str:
    """The folder a manifest's encoder name points to (relative names are inside the project)."""
    from core.settings import PROJECT_ROOT

    return spec if spec == "bundled" or Path(spec).is_absolute() else str(PROJECT_ROOT / spec)


def _faiss_message(exc: Exception) -> str:
    """FAISS's own explanation without the C++ location it is wrapped in."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^Error in .*? at \S+:\d+: ", "", text)
    return re.sub(r"^Error: '.*?' failed: ", "", text).strip()


class AnswerIndex:
    """Past questions with their answers in a FAISS index; see the module docstring."""

    def __init__(
        self,
        encoder: Any = None,
        index: str = "Flat",
        dimension: Optional[int] = None,
        search_params: Optional[Mapping[str, float]] = None,
    ) -> None:
        """An empty index; use `build` or `load` rather than calling this directly.

        `encoder` is None (the configured encoder), 'bundled', a model folder,
        or a loaded object with ``encode(texts, normalize_embeddings=True)``.
        """
        if encoder is None:
            from core.settings import get_settings

            encoder = get_settings().encoder
        self._encoder_arg = encoder
        self.encoder_spec = _encoder_spec(encoder)
        self.index_type = index
        self.search_params: Dict[str, float] = dict(search_params or {})
        self._dimension = dimension
        self._faiss = None
        self._records: Dict[int, AnswerRecord] = {}  # FAISS id -> record
        self._by_id: Dict[str, int] = {}  # record id -> FAISS id
        self._tombstones: set = set()  # FAISS ids removed from indexes that cannot delete (HNSW)
        self._next_key = 0
        self.updated_at = time.time()
        self.built_with = self.encoder_spec  # the encoder the stored vectors came from

    # --- encoding -----------------------------------------------------------

    @property
    def encoder(self):
        """The sentence encoder, loaded on first use (once per process)."""
        if self._encoder_arg is None or isinstance(self._encoder_arg, (str, os.PathLike)):
            from core.encoder import load_encoder

            self._encoder_arg = load_encoder(None if self.encoder_spec == "bundled" else _encoder_folder(self.encoder_spec))
        return self._encoder_arg

    @property
    def dimension(self) -> int:
        """Length of the embedding vectors."""
        if self._dimension is None:
            self._dimension = int(self.encode(["dimension probe"]).shape[1])
        return self._dimension

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Normalised float32 embeddings of `texts`, one row each."""
        if len(texts) == 0:
            return np.zeros((0, self._dimension or 0), dtype="float32")
        encoder = self.encoder
        if len(texts) <= 8:
            # A message or two: the direct, cached path (the desk may have embedded it already).
            from core.encoder import embed_few

            return embed_few(encoder, list(texts))
        vectors = encoder.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=progress
        )
        return np.ascontiguousarray(np.asarray(vectors, dtype="float32"))

    # --- building -------------------------------------------------------------

    @classmethod
    def build(
        cls,
        records: Iterable[Union[Mapping[str, Any], AnswerRecord]],
        index: str = "Flat",
        encoder: Any = None,
        search_params: Optional[Mapping[str, float]] = None,
        progress: bool = False,
        vectors: Optional[np.ndarray] = None,
    ) -> "AnswerIndex":
        """A new index over `records` (each with question, answer and optional id, source, tags, updated_at).

        `vectors` are the questions' embeddings when the caller already has
        them (from `encode` with the same encoder); otherwise they are computed.

        Raises ValueError for a malformed record or two records with one id,
        `IndexConfigError` when `index` is not a usable FAISS factory string
        or needs more questions to train than the history holds.
        """
        records = [as_record(r) for r in records]
        seen: Dict[str, int] = {}
        for position, record in enumerate(records):
            if record.id in seen:
                raise ValueError(
                    f"records {seen[record.id]} and {position} share the id '{record.id}'; ids must be unique "
                    f"(python -m training.build_index merges duplicates)"
                )
            seen[record.id] = position
        answer_index = cls(encoder=encoder, index=index, search_params=search_params)
        if vectors is None:
            vectors = answer_index.encode([r.question for r in records], progress=progress)
        elif len(vectors) != len(records):
            raise ValueError(f"{len(vectors)} vectors for {len(records)} records")
        if len(records) == 0:
            vectors = np.zeros((0, answer_index.dimension), dtype="float32")
        answer_index._dimension = int(vectors.shape[1])
        answer_index._faiss = answer_index._new_faiss_index(vectors)
        answer_index._add_vectors(records, vectors)
        return answer_index

    def _new_faiss_index(self, training_vectors: np.ndarray):
        import faiss

        spec = self.index_type
        try:
            inner = faiss.index_factory(self.dimension, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise IndexConfigError(
                f"'{spec}' is not a FAISS index factory string for vectors of size {self.dimension} "
                f"(examples: 'Flat', 'HNSW32', 'IVF1024,Flat', 'IVF4096,PQ32'): {_faiss_message(exc)}"
            ) from None
        if not inner.is_trained:
            try:
                inner.train(training_vectors)
            except RuntimeError as exc:
                raise IndexConfigError(
                    f"index '{spec}' cannot be trained on {len(training_vectors)} questions "
                    f"({_faiss_message(exc)}); use 'Flat' (exact search) for a history "
                    f"this small, or fewer IVF lists / PQ bits"
                ) from None
        wrapped = faiss.IndexIDMap2(inner)
        self._apply_search_params(wrapped)
        return wrapped

    def _apply_search_params(self, faiss_index) -> None:
        import faiss

        space = faiss.ParameterSpace()
        for name, value in self.search_params.items():
            try:
                space.set_index_parameter(faiss_index, name, value)
            except RuntimeError:
                raise IndexConfigError(
                    f"search parameter '{name}' does not apply to index '{self.index_type}' "
                    f"(HNSW takes efSearch, IVF takes nprobe)"
                ) from None

    def _add_vectors(self, records: Sequence[AnswerRecord], vectors: np.ndarray) -> None:
        keys = np.arange(self._next_key, self._next_key + len(records), dtype="int64")
        if len(records):
            self._faiss.add_with_ids(vectors, keys)
        for key, record in zip(keys.tolist(), records):
            self._records[key] = record
            self._by_id[record.id] = key
        self._next_key += len(records)
        self.updated_at = time.time()

    # --- changing ---------------------------------------------------------------

    def add(self, records: Iterable[Union[Mapping[str, Any], AnswerRecord]]) -> List[str]:
        """Add records without a rebuild; a record whose id is already present replaces it.

        Returns the ids added or replaced.
        """
        records = [as_record(r) for r in records]
        latest: Dict[str, AnswerRecord] = {r.id: r for r in records}  # the last of repeated ids wins
        records = list(latest.values())
        self.remove([r.id for r in records if r.id in self._by_id])
        vectors = self.encode([r.question for r in records])
        if self._faiss is None:
            self._dimension = int(vectors.shape[1]) if len(records) else self.dimension
            self._faiss = self._new_faiss_index(vectors)
        self._add_vectors(records, vectors)
        return [r.id for r in records]

    def remove(self, ids: Iterable[str]) -> int:
        """Remove the records with these ids (unknown ids are ignored); returns how many went."""
        keys = [self._by_id.pop(str(i)) for i in ids if str(i) in self._by_id]
        if not keys:
            return 0
        for key in keys:
            del self._records[key]
        try:
            self._faiss.remove_ids(np.asarray(keys, dtype="int64"))
        except RuntimeError:
            # HNSW graphs cannot delete: hide the vectors until the next rebuild.
            self._tombstones.update(keys)
        self.updated_at = time.time()
        return len(keys)

    # --- reading ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, record_id: object) -> bool:
        return str(record_id) in self._by_id

    def get(self, record_id: str) -> Optional[AnswerRecord]:
        """The record with this id, or None."""
        key = self._by_id.get(str(record_id))
        return None if key is None else self._records[key]

    def records(self) -> List[AnswerRecord]:
        """All records, in the order they were added."""
        return [self._records[k] for k in sorted(self._records)]

    def search(self, query: str, k: int = 5) -> List[Hit]:
        """The `k` past questions closest to `query`, best first."""
        return self.search_many([query], k=k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> List[List[Hit]]:
        """`search` for several queries at once (encoded in one batch)."""
        return self.search_vectors(self.encode(list(queries)), k=k)

    def search_vectors(self, vectors: np.ndarray, k: int = 5) -> List[List[Hit]]:
        """Hits for already encoded (normalised) query vectors, one list per row."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype="float32")
        if self._faiss is None or len(self._records) == 0 or k <= 0:
            return [[] for _ in range(len(vectors))]
        fetch = min(k + len(self._tombstones), self._faiss.ntotal)
        scores, keys = self._faiss.search(vectors, fetch)
        results = []
        for row_scores, row_keys in zip(scores, keys):
            hits = []
            for score, key in zip(row_scores.tolist(), row_keys.tolist()):
                record = self._records.get(key)
                if key < 0 or record is None:
                    continue
                hits.append(Hit(score=score, **_shallow(record)))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    # --- storage ------------------------------------------------------------------

    def save(self, folder: Union[str, os.PathLike]) -> Path:
        """Write the index to `folder`, replacing what was there in one step; returns the folder."""
        import faiss

        folder = Path(folder)
        with replacing_folder(folder) as staging:  # a reader never sees half an index
            if self._faiss is None:
                self._faiss = self._new_faiss_index(np.zeros((0, self.dimension), dtype="float32"))
            faiss.write_index(self._faiss, str(staging / FAISS_FILE))
            with (staging / RECORDS_FILE).open("w", encoding="utf-8") as fh:
                for key in sorted(self._records):
                    fh.write(json.dumps({"key": key, **self._records[key].as_dict()}, ensure_ascii=False) + "\n")
            manifest = {
                "format": FORMAT_VERSION,
                "encoder": self.encoder_spec,
                "dimension": self.dimension,
                "index": self.index_type,
                "search_params": self.search_params,
                "count": len(self._records),
                "tombstones": sorted(self._tombstones),
                "next_key": self._next_key,
                "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Union[str, os.PathLike], encoder: Any = None) -> "AnswerIndex":
        """The index saved in `folder`, queried with the encoder it was built with (or `encoder`).

        Raises `IndexNotFoundError` saying how to build the index when the
        folder is missing or incomplete.
        """
        import faiss

        folder = Path(folder)
        missing = [name for name in (MANIFEST, FAISS_FILE, RECORDS_FILE) if not (folder / name).exists()]
        if missing:
            raise IndexNotFoundError(
                f"no answer index in '{folder}' (missing {', '.join(missing)}); build it with "
                f"`python -m training.build_index --out {folder}` (reads bot/history/ by default)"
            )
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexNotFoundError(
                f"answer index in '{folder}' has format {manifest.get('format')}, this code reads "
                f"{FORMAT_VERSION}; rebuild it with `python -m training.build_index --out {folder}`"
            )
        if encoder is None:
            encoder = _encoder_folder(manifest["encoder"])
        answer_index = cls(
            encoder=encoder,
            index=manifest["index"],
            dimension=manifest["dimension"],
            search_params=manifest.get("search_params"),
        )
        answer_index.built_with = manifest["encoder"]
        answer_index._faiss = faiss.read_index(str(folder / FAISS_FILE))
        answer_index._apply_search_params(answer_index._faiss)
        for _, row in read_jsonl(folder / RECORDS_FILE, required=("key",)):
            key = row.pop("key")
            record = AnswerRecord(**{**row, "tags": tuple(row.get("tags") or ())})
            answer_index._records[key] = record
            answer_index._by_id[record.id] = key
        answer_index._tombstones = set(manifest.get("tombstones", []))
        answer_index._next_key = int(manifest.get("next_key", len(answer_index._records)))
        live = answer_index._faiss.ntotal - len(answer_index._tombstones)
        if live != len(answer_index._records):
            raise IndexNotFoundError(
                f"answer index in '{folder}' is inconsistent ({answer_index._faiss.ntotal} vectors, "
                f"{len(answer_index._records)} records); rebuild it with `python -m training.build_index --out {folder}`"
            )
        return answer_index

    def check_encoder(self) -> None:
        """Raise `IndexConfigError` when the encoder's vectors do not fit the index."""
        width = int(self.encode(["dimension probe"]).shape[1])
        if self._faiss is not None and width != self._faiss.d:
            raise IndexConfigError(
                f"the encoder '{self.encoder_spec}' makes vectors of size {width} but the index holds "
                f"size {self._faiss.d}; query with the encoder the index was built with, or rebuild it"
            )
