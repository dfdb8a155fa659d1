"""`AnswerRetriever`: the Rasa component that finds past answers for each message.

It runs after the intent classifier and before `FallbackClassifier`::

    pipeline:
      - name: nlu.TransformerIntentClassifier
      - name: retrieval.AnswerRetriever
        k: 5
      - name: FallbackClassifier

and adds to the parse result::

    "retrieval": {"hits": [{"id", "question", "answer", "score", "base_score",
                            "source", "tags"[, "votes"]}, ...],
                  "best_score": 0.71,
                  "raw_hits": [...]}

Hits are re-ranked by the customers' ratings (`retrieval.feedback`), read
from the database before every batch of messages; ``raw_hits`` are the same
search's hits before that (what an answers experiment's ``rerank: false``
arm uses). The index is the folder
written by ``python -m training.build_index`` (default: the ``index_dir``
setting); it is loaded when the model is loaded and is not part of the model
archive, so rebuilding the index needs no retraining. A newer save of the
folder (a rebuild, or entries removed when a customer is erased) is loaded
in place of the one in memory within ``RELOAD_CHECK_SECONDS``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Union

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message

from core import metrics
from core.payloads import is_payload
from core.serving import LRUCache, register_prefetch
from retrieval.feedback import AnswerFeedback
from retrieval.index import MANIFEST, AnswerIndex, IndexConfigError, IndexNotFoundError
from retrieval.rerank import group_by_answer

logger = logging.getLogger(__name__)

RETRIEVAL = "retrieval"


class AnswerIndexUnavailable(RasaException):
    """The answer index the pipeline names cannot be loaded."""


# Registered as an intent classifier only so that the default recipe runs it
# in config order among the classifiers; it never sets the intent.
@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class AnswerRetriever(GraphComponent):
    """Attaches the best historical answers, re-ranked by ratings, to each message."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Every knob of the component, with its default."""
        return {
            # Answer index folder from `python -m training.build_index`; None: the index_dir setting.
            "index_dir": None,
            # Hits attached to each message.
            "k": 5,
            # Encoder for queries; None: the one the index was built with (recorded in it).
            "encoder": None,
            # Past questions fetched before hits that share an answer are merged into one.
            "candidates": 20,
            # Merge hits whose answers are identical, ranking them by a soft vote (retrieval.rerank).
            "group_by_answer": True,
            # Sharpness of that vote: higher trusts the single closest question more.
            "vote_sharpness": 30.0,
            # Queries at least this similar (cosine) share their ratings: a question cluster.
            "cluster_similarity": 0.75,
            # Thumbs-down ratings in a cluster after which an answer is dropped; None: the downvote_limit setting.
            "downvote_limit": None,
            # Score change per net rating in the cluster, and the most it may move a score.
            "feedback_weight": 0.05,
            "feedback_max_shift": 0.15,
            # Database holding the ratings; None: the database_url setting.
            "database_url": None,
        }

    # How often (seconds) the index folder is checked for a newer save (entries removed by an
    # erasure, or a rebuild), which is then loaded in place of the one in memory.
    RELOAD_CHECK_SECONDS = 10.0

    def __init__(self, config: Dict[Text, Any], index: AnswerIndex, feedback: AnswerFeedback) -> None:
        """Use `create`; this wires an already loaded index and feedback store."""
        self.component_config = config
        self.index = index
        self.feedback = feedback
        self._folder: Optional[Path] = None
        self._stamp: Optional[int] = None
        self._next_check = 0.0
        self._prefetched = LRUCache(1024)  # text -> when the model thread read the ratings for it

    def _watch(self, folder: Union[str, Path]) -> None:
        """Reload the index when `folder` is saved again (see `RELOAD_CHECK_SECONDS`)."""
        self._folder = Path(folder)
        self._stamp = self._manifest_stamp()
        self._next_check = time.monotonic() + self.RELOAD_CHECK_SECONDS

    def _manifest_stamp(self) -> Optional[int]:
        try:
            return (self._folder / MANIFEST).stat().st_mtime_ns
        except OSError:
            return None

    def _reload_if_saved_again(self) -> None:
        now = time.monotonic()
        if self._folder is None or now < self._next_check:
            return
        self._next_check = now + self.RELOAD_CHECK_SECONDS
        stamp = self._manifest_stamp()
        if stamp is None or stamp == self._stamp:
            return
        try:
            fresh = AnswerIndex.load(self._folder, encoder=self.index.encoder)  # the encoder already loaded
        except Exception:  # a half-written or broken folder: keep answering from the index in memory
            logger.exception("answer index %s changed but could not be loaded; keeping the one in memory", self._folder)
            return
        self.index, self._stamp = fresh, stamp
        logger.info("answer index reloaded from %s: %d past answers", self._folder, len(fresh))

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "AnswerRetriever":
        """Load the answer index and the ratings store named by `config`.

        Raises `AnswerIndexUnavailable` saying how to build the index when
        it is missing, or how to fix the encoder when it does not fit.
        """
        from core.settings import get_settings

        settings = get_settings()
        config = {**cls.get_default_config(), **config}
        index_dir = config["index_dir"] or settings.index_dir
        try:
            index = AnswerIndex.load(index_dir, encoder=config["encoder"])
            index.check_encoder()  # also loads the encoder now rather than on the first message
        except (IndexNotFoundError, IndexConfigError, FileNotFoundError) as exc:
            raise AnswerIndexUnavailable(f"retrieval.AnswerRetriever: {exc}") from exc
        if index.encoder_spec != index.built_with:
            logger.warning(
                "answer index %s was built with encoder '%s' but is queried with '%s'; scores will be off "
                "unless both make the same vectors. Rebuild the index with the new encoder.",
                index_dir, index.built_with, index.encoder_spec,
            )
        limit = config["downvote_limit"]
        feedback = AnswerFeedback(
            encode=index.encode,
            database_url=config["database_url"] or settings.database_url,
            cluster_similarity=float(config["cluster_similarity"]),
            downvote_limit=int(settings.downvote_limit if limit is None else limit),
            weight=float(config["feedback_weight"]),
            max_shift=float(config["feedback_max_shift"]),
        )
        logger.info("answer index with %d past answers loaded from %s", len(index), index_dir)
        index.encode(["warm up the compiled pass"])  # compile now, not on the first customer's message
        retriever = cls(config, index, feedback)
        register_prefetch(("retrieval", resource.name), retriever.prefetch)  # the desk hands each message ahead
        retriever._watch(index_dir)
        return retriever

    def prefetch(self, texts: List[str]) -> None:
        """On the model thread, ahead of Rasa's pipeline: embed the texts and read new ratings (SQL off the loop)."""
        self.index.encode(texts)
        self.feedback.refresh()  # every message: a thumbs-down counts from the very next question
        now = time.monotonic()
        for text in texts:
            self._prefetched.put(text, now)

    @staticmethod
    def required_packages() -> List[Text]:
        """Packages the component imports."""
        return ["faiss", "sentence_transformers"]

    @metrics.timed(metrics.RETRIEVAL_SECONDS, "retrieval")  # assistant_retrieval_seconds on /metrics
    def process(self, messages: List[Message]) -> List[Message]:
        """Add ``retrieval`` (hits and best score) to each message with text."""
        texts = [m.get(TEXT) or "" for m in messages]
        # Button payloads ("/rate_answer{...}") are not questions: nothing to look up.
        todo = [i for i, text in enumerate(texts) if text.strip() and not is_payload(text)]
        if not todo:
            return messages
        self._reload_if_saved_again()
        now = time.monotonic()
        if not all(now - (self._prefetched.get(texts[i]) or float("-inf")) < 10.0 for i in todo):
            self.feedback.refresh()  # not read ahead just now (Rasa's HTTP API, another project): read here
        vectors = self.index.encode([texts[i] for i in todo])
        config = self.component_config
        k = int(config["k"])
        # More than k, so that answers merged or dropped by ratings do not leave the list short.
        fetch = max(2 * k, int(config["candidates"]))
        for i, vector, hits in zip(todo, vectors, self.index.search_vectors(vectors, k=fetch)):
            if config["group_by_answer"]:
                hits = group_by_answer(hits, sharpness=float(config["vote_sharpness"]))
            raw = [h.as_dict() for h in hits]
            ranked = self.feedback.apply(vector, raw)[:k]
            messages[i].set(
                RETRIEVAL,
                {"hits": ranked, "best_score": ranked[0]["score"] if ranked else 0.0, "raw_hits": raw[:k]},
                add_to_output=True,
            )
        return messages
