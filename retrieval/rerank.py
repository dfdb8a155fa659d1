"""Re-ranking hits whose past questions received the same answer.

In a history of answered questions many questions share one answer. A
nearest-neighbour list then shows the same answer several times, and one
close but odd question can outrank an answer that many slightly less close
questions agree on. `group_by_answer` merges hits with the same answer into
one and scores the group with a soft vote, the log-sum-exp of its
similarities at a given sharpness::

    score = max_i s_i + log(sum_i exp(sharpness * (s_i - max_i s_i))) / sharpness

A lone hit keeps its similarity; each agreeing question adds at most
log(n) / sharpness (0.023 for two questions at sharpness 30), so a score
stays comparable with the retrieval threshold. Very high sharpness is plain
nearest-neighbour ranking.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence

from retrieval.index import Hit


def _answer_key(answer: str) -> str:
    return " ".join(answer.lower().split())


def group_by_answer(hits: Sequence[Hit], sharpness: float = 30.0) -> List[Hit]:
    """One hit per distinct answer (its closest question), scored by the soft vote, best first."""
    groups: Dict[str, List[Hit]] = {}
    for hit in hits:
        groups.setdefault(_answer_key(hit.answer), []).append(hit)
    merged = []
    for members in groups.values():
        best = max(members, key=lambda h: h.score)
        vote = sum(math.exp(sharpness * (h.score - best.score)) for h in members)
        merged.append(dataclasses.replace(best, score=best.score + math.log(vote) / sharpness))
    merged.sort(key=lambda h: -h.score)
    return merged
