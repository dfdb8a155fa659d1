"""Answers from the history of answered questions.

The public names, the only ones `bot/` may import (import-linter checks it,
docs/architecture.md):

- `AnswerIndex`, `Hit`, `RECORDS_FILE` (`retrieval.index`): past questions
  and their answers as sentence embeddings in a FAISS index (build, search,
  add, remove, save, load); `RECORDS_FILE` is the index folder's file of
  records;
- `AnswerRetriever` (`retrieval.component`): the Rasa component (named so in
  config.yml) that attaches the best historical answers, re-ranked by
  customers' ratings, to each parsed message;
- `history_answer_id`, `record_rating`, `rating_counts` (`retrieval.feedback`):
  customers' thumbs up and down on answers (table ``answer_ratings``).

Every name is imported on first use so that scripts that only need the index
do not pay for importing Rasa.
"""
from typing import Dict, Tuple

from core.exports import lazy_exports

# public name -> (module, name there)
_PUBLIC: Dict[str, Tuple[str, str]] = {
    "AnswerIndex": ("retrieval.index", "AnswerIndex"),
    "Hit": ("retrieval.index", "Hit"),
    "RECORDS_FILE": ("retrieval.index", "RECORDS_FILE"),
    "AnswerRetriever": ("retrieval.component", "AnswerRetriever"),
    "history_answer_id": ("retrieval.feedback", "history_answer_id"),
    "record_rating": ("retrieval.feedback", "record_rating"),
    "rating_counts": ("retrieval.feedback", "rating_counts"),
}

__all__ = list(_PUBLIC)

__getattr__ = lazy_exports(__name__, _PUBLIC)
