"""Answers from the history of answered questions.

`retrieval.AnswerIndex` holds past questions and their answers as sentence
embeddings in a FAISS index (build, search, add, remove, save, load);
`retrieval.AnswerRetriever` is the Rasa component (named so in config.yml)
that attaches the best historical answers, re-ranked by customers' ratings,
to each parsed message. Both are imported on first use so that scripts that
only need the index do not pay for importing Rasa.
"""
from typing import Any

__all__ = ["AnswerIndex", "AnswerRetriever", "Hit"]


def __getattr__(name: str) -> Any:
    if name in ("AnswerIndex", "Hit"):
        from retrieval import index

        return getattr(index, name)
    if name == "AnswerRetriever":
        from retrieval.component import AnswerRetriever

        return AnswerRetriever
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
