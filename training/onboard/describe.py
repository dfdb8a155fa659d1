"""What discovery says about each cluster of requests: its name, telling words, kind, draft answer, spans.

All of it is computed from the cluster's own requests and the agents'
answers to them (personal data already redacted), and each proposal carries
its evidence in words so a supervisor can judge it:

- `telling_words`: the words most particular to a cluster (class-based
  TF-IDF: frequent in the cluster, rare in the others); the name is made of
  the first of them;
- `kind_of`: a *question* (agents answer it with much the same text, in one
  reply) or a *task* (agents ask for details such as an order number, or say
  they changed, cancelled or sent something, over several turns);
- `draft_response`: the agents' most typical answer among the best rated
  (resolved) ones, with the next most typical different answers as
  alternatives;
- `entity_spans`: amounts, dates, times, order or reference numbers and
  percentages written in the requests, counted by kind.

Word lists (stop words, task cues) are English and apply only when the
project's language is English (`core.language.is_english`); in any other
language the evidence is the answers' similarity and the number of turns.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.language import is_english, words
from core.redaction import PLACEHOLDER

# English only (see the module docstring).
ENGLISH_STOP_WORDS = frozenset("""
a about after again all am an and any are as at be been before being but by can could did do does doing don't
for from get got had has have having he her here hi hello hey his how i i'm i've if in into is it it's its just
me my myself no not now of on once only or other our out over please really she should so some still than that
the their them then there these they this those to too up us very was we were what when where which while who
why will with would you your yours thanks thank ok okay yes want need know like also one way since going there's
""".split())
TASK_CUES_EN = re.compile(
    r"\b(order number|reference number|account number|booking number|confirm your|can you confirm|could you confirm|"
    r"which (order|account|card|address)|i('| ha)ve (cancelled|canceled|changed|updated|refunded|reset|sent|issued|"
    r"processed|booked|arranged|blocked|unlocked|moved)|let me (check|look|change|update|cancel|process)|"
    r"i('| wi)ll (cancel|change|update|refund|process|send|arrange)|done for you|has been (cancelled|canceled|"
    r"changed|updated|refunded|processed|reset))\b", re.I)

SPAN_PATTERNS: Tuple[Tuple[str, "re.Pattern[str]"], ...] = (
    ("amount", re.compile(r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d{1,2})?|\b\d[\d,]*(?:\.\d{1,2})?\s?(?:usd|eur|gbp|dollars?|euros?|"
                          r"pounds?|quid|bucks)\b)", re.I)),
    ("date", re.compile(r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{2}-\d{2}|\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|"
                        r"apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|"
                        r"nov|dec)[a-z]*\s+\d{1,2}(?:st|nd|rd|th)?|yesterday|today|tomorrow|last (?:week|month|night)|"
                        r"(?:mon|tues|wednes|thurs|fri|satur|sun)day)\b", re.I)),
    ("time", re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm)\b|\b\d{1,2}:\d{2}\b", re.I)),
    ("order number", re.compile(r"(?:#\s?[A-Z0-9-]{4,}|\b[A-Z]{1,4}-?\d{5,}\b|\b(?:order|ref|reference|ticket|booking|"
                                r"tracking)\s*(?:no\.?|number|#)?\s*[:#]?\s*[A-Z0-9-]*\d[A-Z0-9-]{3,}\b)", re.I)),
    ("percentage", re.compile(r"\b\d+(?:\.\d+)?\s?%")),
)


def without_placeholders(text: str) -> str:
    """`text` without the placeholders redaction left ("[PHONE]"), spaces tidied; the text itself when nothing is left."""
    stripped = " ".join(PLACEHOLDER.sub(" ", text).split())
    return stripped or text


def _terms(text: str, english: bool) -> List[str]:
    out = []
    for w in words(PLACEHOLDER.sub(" ", text).lower()):
        if english and (w in ENGLISH_STOP_WORDS or not re.search(r"[a-z]", w) or len(w) < 3):
            continue
        out.append(w)
    return out


def telling_words(cluster_texts: Sequence[Sequence[str]], language: str, top: int = 6) -> List[List[str]]:
    """For each cluster, its `top` most particular words (class-based TF-IDF over all clusters)."""
    english = is_english(language)
    counts = [Counter(w for t in texts for w in _terms(t, english)) for texts in cluster_texts]
    clusters_with = Counter(w for c in counts for w in c)
    n = max(1, len(counts))
    out = []
    for c in counts:
        total = sum(c.values()) or 1
        scored = sorted(((count / total) * math.log(1 + n / clusters_with[w]), w) for w, count in c.items() if count > 1)
        out.append([w for _, w in reversed(scored)][:top] or [w for w, _ in c.most_common(top)])
    return out


def intent_name(telling: Sequence[str], taken: set, fallback: str) -> str:
    """A Rasa intent name from the first telling words, unique among `taken` (ASCII; else `fallback`)."""
    parts = [re.sub(r"[^a-z0-9]", "", w) for w in telling]
    parts = [p for p in parts if p]
    base = "_".join(parts[:2]) if parts else fallback
    if not re.match(r"^[a-z]", base):
        base = fallback
    base = base[:48]
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def typical_answers(answers: Sequence[str], vectors: Optional[np.ndarray], ratings: Sequence[Optional[float]],
                    alternatives: int = 2) -> Tuple[str, List[str]]:
    """(draft, alternatives): the answer most like the others, favouring well-rated ones; then the next unlike it."""
    if not answers:
        return "", []
    if vectors is None or len(answers) == 1:
        common = Counter(answers).most_common(alternatives + 1)
        return common[0][0], [a for a, _ in common[1:]]
    sims = vectors @ vectors.T
    weight = np.array([1.0 if r is None else 0.5 + r for r in ratings])  # ratings in 0..1
    centrality = (sims * weight[None, :]).mean(axis=1) * weight
    order = list(np.argsort(-centrality))
    draft = order[0]
    chosen, alts = [draft], []
    for i in order[1:]:
        if len(alts) >= alternatives:
            break
        if all(sims[i, j] < 0.92 for j in chosen):
            chosen.append(i)
            alts.append(answers[i])
    return answers[draft], alts


def kind_of(answer_texts: Sequence[str], answer_vectors: Optional[np.ndarray], turns_to_resolve: Sequence[int],
            language: str) -> Tuple[str, List[str]]:
    """("question" | "task", evidence in words) from the agents' answers to a cluster's requests."""
    evidence: List[str] = []
    task_score = 0.0
    if answer_texts and is_english(language):
        cued = sum(1 for a in answer_texts if TASK_CUES_EN.search(a)) / len(answer_texts)
        evidence.append(f"{cued:.0%} of the agents' answers ask for details or say they did something")
        task_score += 2.0 * cued
    if answer_vectors is not None and len(answer_texts) > 1:
        sims = answer_vectors @ answer_vectors.T
        alike = float((sims.sum() - len(sims)) / (len(sims) * (len(sims) - 1)))
        evidence.append(f"the agents' answers are {'alike' if alike >= 0.6 else 'varied'} (mean similarity {alike:.2f})")
        task_score += 0.6 - alike
    if turns_to_resolve:
        several = sum(1 for t in turns_to_resolve if t > 1) / len(turns_to_resolve)
        evidence.append(f"{several:.0%} took more than one agent reply")
        task_score += several
    if not answer_texts:
        evidence.append("no agent answer resolved these requests")
        return "task", evidence
    return ("task" if task_score > 0.75 else "question"), evidence


def entity_spans(texts: Sequence[str], top: int = 3) -> List[Dict[str, object]]:
    """Amounts, dates, times, order numbers and percentages written in `texts`: kind, count, a few examples."""
    found: Dict[str, Counter] = {}
    for text in texts:
        for kind, pattern in SPAN_PATTERNS:
            for m in pattern.finditer(text):
                found.setdefault(kind, Counter())[m.group(0).strip()] += 1
    out = []
    for kind, counter in found.items():
        out.append({"kind": kind, "count": int(sum(counter.values())),
                    "examples": [t for t, _ in counter.most_common(top)]})
    return sorted(out, key=lambda s: -int(s["count"]))
