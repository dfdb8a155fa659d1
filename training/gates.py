"""The retraining gate, per part: score the candidate and the live model on the same fixed held-out data.

Each part has its own held-out data and headline figures, and a candidate
passes when no headline figure is lower than the live one's by more than the
part's tolerance:

- ``intent``: accuracy and macro-F1 on ``bot/tests/heldout_nlu.yml`` (never
  trained on; `evaluate_intent`);
- ``index``: precision@1 on ``bot/tests/heldout_answers.jsonl``, paraphrased
  questions each labelled with the id of the past answer that is right
  (`evaluate_index`; recall@5 and MRR@10 are reported beside it);
- ``recommender``: NDCG@10 on a time split (`time_split`): the newest share
  of the interactions is held out. The live model has seen that tail, so scoring
  the saved models on it would measure memory, not quality; instead both
  *recipes* (the configuration saved in each folder) are refitted on the
  interactions before the split with the same seed and scored on the tail
  (`evaluate_recommender`). The candidate folder itself is loaded (and must
  answer) but what is promoted is the candidate trained on everything.

A candidate that cannot be loaded or scored fails its gate with the reason;
a live model that cannot be loaded is reported and not compared against.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from core.records import read_jsonl
from core.settings import PROJECT_ROOT

HELDOUT_NLU = PROJECT_ROOT / "bot" / "tests" / "heldout_nlu.yml"
HELDOUT_ANSWERS = PROJECT_ROOT / "bot" / "tests" / "heldout_answers.jsonl"
K = 10

# part -> the figures the gate compares (the others are reported only).
HEADLINE = {"intent": ("accuracy", "macro_f1"), "index": ("precision@1",), "recommender": ("ndcg@10",)}


@dataclasses.dataclass
class PartGate:
    """One part's verdict: its figures live and candidate, whether it passed, why not, what changed."""

    part: str
    tolerance: float
    live: Optional[Dict[str, float]] = None
    candidate: Optional[Dict[str, float]] = None
    passed: bool = False
    reasons: List[str] = dataclasses.field(default_factory=list)
    changes: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def not_worse(part: str, candidate: Dict[str, float], live: Optional[Dict[str, float]],
              tolerance: float = 0.0) -> Tuple[bool, List[str]]:
    """Whether no headline figure of `candidate` is below `live`'s minus `tolerance`, and the failures."""
    if live is None:
        return True, []
    reasons = [f"{name} {candidate[name]:.3f} < live {live[name]:.3f} - tolerance {tolerance:g}"
               for name in HEADLINE[part] if candidate[name] < live[name] - tolerance]
    return not reasons, reasons


def judge(part: str, tolerance: float, score: Callable[[Path], Dict[str, Any]], candidate: Path,
          live: Optional[Path], changes: Callable[[Dict, Optional[Dict]], List[str]]) -> PartGate:
    """Score `candidate` and `live` with `score` and compare them; a candidate that fails to load fails the gate."""
    gate = PartGate(part, tolerance)
    try:
        cand = score(candidate)
    except Exception as exc:  # any way a folder fails to load or score: never promoted
        gate.reasons.append(f"the candidate in {candidate} does not load or score: {type(exc).__name__}: {exc}")
        return gate
    live_scores = None
    if live is not None and live.exists():
        try:
            live_scores = score(live)
        except Exception as exc:  # the live model is broken: nothing to compare with, and say so
            gate.changes.append(f"the live {part} in {live} could not be scored ({type(exc).__name__}: {exc}); "
                                f"not compared")
    gate.candidate = {k: v for k, v in cand.items() if isinstance(v, (int, float))}
    gate.live = None if live_scores is None else {k: v for k, v in live_scores.items() if isinstance(v, (int, float))}
    gate.passed, gate.reasons = not_worse(part, cand, live_scores, tolerance)
    gate.changes += changes(cand, live_scores)
    return gate


def figure_changes(part: str, candidate: Dict[str, Any], live: Optional[Dict[str, Any]], extra: Sequence[str] = ()) -> List[str]:
    """Lines 'name live -> candidate (delta)' for the headline figures and `extra` ones."""
    names = list(HEADLINE[part]) + list(extra)
    if live is None:
        return ["no live model: candidate " + ", ".join(f"{n} {candidate[n]:.3f}" for n in names)]
    return [f"{n} {live[n]:.3f} -> {candidate[n]:.3f} ({candidate[n] - live[n]:+.3f})" for n in names]


# ----------------------------------------------------------------- intent

def evaluate_intent(model_folder: Path, heldout: Path = HELDOUT_NLU) -> Dict[str, Any]:
    """Accuracy, macro-F1 and per-intent F1 of an intent model folder on the held-out file."""
    from nlu.model import IntentModel
    from training.finetune_intent import classification_metrics
    from training.intent_data import read_examples

    texts, gold, _ = read_examples(heldout)
    model = IntentModel.load(Path(model_folder), device="cpu")
    probs = model.predict_proba(texts)
    predicted = [model.labels[i] for i in probs.argmax(1)]
    labels = sorted(set(model.labels) | set(gold))
    metrics = classification_metrics(labels, gold, predicted)
    metrics["labels"] = list(model.labels)
    metrics["examples"] = len(texts)
    return metrics


def intent_changes(candidate: Dict[str, Any], live: Optional[Dict[str, Any]], top: int = 5) -> List[str]:
    """Score changes, intents added or removed, and the intents whose F1 moved most."""
    lines = figure_changes("intent", candidate, live)
    lines[0] += f" on {candidate['examples']} held-out examples"
    if live is None:
        return lines
    added = sorted(set(candidate["labels"]) - set(live["labels"]))
    removed = sorted(set(live["labels"]) - set(candidate["labels"]))
    if added:
        lines.append("intents added: " + ", ".join(added))
    if removed:
        lines.append("intents removed: " + ", ".join(removed))
    moves = []
    for intent, scores in candidate["per_intent"].items():
        before = live["per_intent"].get(intent, {}).get("f1", 0.0)
        if scores["support"] and abs(scores["f1"] - before) > 1e-9:
            moves.append((abs(scores["f1"] - before), intent, before, scores["f1"]))
    for _, intent, before, after in sorted(moves, reverse=True)[:top]:
        lines.append(f"  {intent:<28} F1 {before:.2f} -> {after:.2f}")
    return lines


def gate_intent(candidate: Path, live: Optional[Path], heldout: Path = HELDOUT_NLU, tolerance: float = 0.0) -> PartGate:
    return judge("intent", tolerance, lambda folder: evaluate_intent(folder, heldout), candidate, live, intent_changes)


# ----------------------------------------------------------------- answer index

def read_heldout_answers(path: Path = HELDOUT_ANSWERS) -> Tuple[List[str], List[str]]:
    """(questions, ids of the right answers) from a JSONL file of {"question", "answer_id"}; errors name the line."""
    questions, ids = [], []
    for _, row in read_jsonl(path, required=("question", "answer_id")):
        questions.append(str(row["question"]))
        ids.append(str(row["answer_id"]))
    if not questions:
        raise ValueError(f"held-out answers file {path} has no questions")
    return questions, ids


def evaluate_index(folder: Path, heldout: Path = HELDOUT_ANSWERS) -> Dict[str, Any]:
    """precision@1, recall@5 and MRR@10 of the answer index in `folder` on the held-out questions."""
    from retrieval import AnswerIndex
    from training.bench_retrieval import rank_metrics

    questions, truth = read_heldout_answers(heldout)
    index = AnswerIndex.load(folder)
    ranked = [[hit.id for hit in hits] for hits in index.search_many(questions, k=K)]
    metrics: Dict[str, Any] = rank_metrics(ranked, truth)
    metrics["questions"] = len(questions)
    metrics["answers"] = len(index)
    metrics["top"] = [hits[0] if hits else None for hits in ranked]
    return metrics


def index_changes(candidate: Dict[str, Any], live: Optional[Dict[str, Any]]) -> List[str]:
    lines = figure_changes("index", candidate, live, extra=("recall@5", "mrr@10"))
    lines[0] += f" on {candidate['questions']} held-out questions ({candidate['answers']} answers indexed)"
    if live is not None:
        moved = sum(a != b for a, b in zip(candidate["top"], live["top"]))
        lines.append(f"questions whose top answer changed: {moved} of {candidate['questions']}")
    return lines


def gate_index(candidate: Path, live: Optional[Path], heldout: Path = HELDOUT_ANSWERS, tolerance: float = 0.0) -> PartGate:
    return judge("index", tolerance, lambda folder: evaluate_index(folder, heldout), candidate, live, index_changes)


# ----------------------------------------------------------------- recommender

@dataclasses.dataclass
class TimeSplit:
    """Interactions up to `cutoff` to train on; each customer's items after it to rank."""

    train: pd.DataFrame
    relevant: Dict[str, set]
    cutoff: float
    items: pd.DataFrame
    customers: Optional[pd.DataFrame] = None


def time_split(interactions: pd.DataFrame, items: pd.DataFrame, holdout: float = 0.15,
               customers: Optional[pd.DataFrame] = None) -> TimeSplit:
    """Hold out the newest `holdout` share of the interactions, cut at one moment for everyone.

    A share rather than a number of days, so that a few stray recent rows
    (a test conversation today after months of demo history) do not leave the
    tail empty. The customers scored are those with history before the cut;
    their relevant items are the catalogue items they interacted with after
    it (not dismissals) that they had not interacted with before, since
    suggestions leave out what a customer already has.
    """
    if interactions.empty:
        raise ValueError("no interactions to split; the recommender gate needs some "
                         "(run `python -m training.generate_demo_customers` for demo data)")
    if not 0 < holdout < 1:
        raise ValueError(f"the held-out share must be between 0 and 1, got {holdout}")
    cutoff = float(interactions["timestamp"].quantile(1 - holdout, interpolation="lower"))
    train = interactions[interactions["timestamp"] <= cutoff]
    tail = interactions[(interactions["timestamp"] > cutoff) & interactions["item_id"].notna()
                        & (interactions["kind"] != "dismiss")]
    seen = train[train["item_id"].notna()].groupby("customer_id")["item_id"].agg(set).to_dict()
    relevant: Dict[str, set] = {}
    for customer, item in zip(tail["customer_id"], tail["item_id"]):
        if customer in seen and item not in seen[customer]:
            relevant.setdefault(str(customer), set()).add(str(item))
    if not relevant:
        raise ValueError(f"no customer has new items in the newest {holdout:.0%} of interactions after "
                         f"earlier history; raise --recommender-holdout")
    return TimeSplit(train, relevant, cutoff, items, customers)


def ndcg_at_k(ranked: Sequence[str], relevant: set, k: int = K) -> float:
    """Binary-relevance NDCG@k of one ranked list."""
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def evaluate_recommender(folder: Path, split: TimeSplit, fitted: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """NDCG@10 and HR@10 of the recipe saved in `folder`, refitted on `split.train`, on the held-out tail.

    The folder is loaded first (a folder that does not load fails here) and
    must answer for one customer; `fitted` caches refits by configuration, so
    a candidate with the live recipe is fitted once.
    """
    from recommender import Recommender

    saved = Recommender.load(folder)
    saved.recommend(next(iter(split.relevant)), k=K)
    config = {**saved.config.as_dict(), "show_progress": False}
    key = json.dumps(config, sort_keys=True, default=str)
    fitted = {} if fitted is None else fitted
    if key not in fitted:
        fitted[key] = Recommender.fit(split.train, split.items, customers=split.customers, **config)
    model = fitted[key]
    ndcg = hits = 0.0
    for customer, relevant in split.relevant.items():
        ranked = [s.item_id for s in model.recommend(customer, k=K, exclude_seen=True)]
        ndcg += ndcg_at_k(ranked, relevant)
        hits += bool(relevant & set(ranked))
    n = len(split.relevant)
    return {"ndcg@10": ndcg / n, "hr@10": hits / n, "customers": n, "train_interactions": len(split.train)}


def recommender_changes(candidate: Dict[str, Any], live: Optional[Dict[str, Any]]) -> List[str]:
    lines = figure_changes("recommender", candidate, live, extra=("hr@10",))
    lines[0] += (f" on {candidate['customers']} customers' new items after the cut "
                 f"(both recipes refitted on {candidate['train_interactions']} earlier interactions)")
    return lines


def gate_recommender(candidate: Path, live: Optional[Path], split: TimeSplit, tolerance: float = 0.0) -> PartGate:
    fitted: Dict[str, Any] = {}
    return judge("recommender", tolerance, lambda folder: evaluate_recommender(folder, split, fitted),
                 candidate, live, recommender_changes)
