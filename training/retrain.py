"""Retrain from what the assistant has seen, and promote the new models only if they are not worse.

    python -m training.retrain                 # intent model, answer index, recommender; gate; promote
    python -m training.retrain --rasa-model    # ... and pack the promoted adapter into a new Rasa model
    python -m training.retrain --rollback      # put the previous models back

Steps:

1. Export the reviewed queue (`training.review export`) so reviewed messages
   are in var/review/reviewed_nlu.yml and var/review/reviewed.jsonl (kept out
   of git and the images; added to the data and history read below).
2. Train candidates into ``models/candidate/``: the intent classifier
   continues from the live adapter (``models/intent``: the adapter is loaded
   and trained further on all NLU data with a head started afresh from the
   class centroids; ``--full`` fine-tunes a new adapter), the
   answer index is rebuilt from bot/history/ (`training.build_index`) and the
   recommender retrained (`training.train_recommender`, when installed).
3. Gate: the candidate and the live intent model are scored on the fixed
   held-out set (``bot/tests/heldout_nlu.yml``, never trained on). The
   candidate must be at least as good in accuracy and macro-F1 (minus
   ``--tolerance``), and the index and recommender must have built.
4. Promote all parts together, or none: the live folders move to
   ``models/previous/`` (one generation kept, for ``--rollback``) and the
   candidates take their place. Serving processes pick them up on restart.

It prints what changed: scores before and after, intents added or removed,
the intents whose F1 moved most, and the decision.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from core.review import DEFAULT_HISTORY_EXPORT, DEFAULT_NLU_EXPORT
from core.settings import PROJECT_ROOT, get_settings

DEFAULT_HELDOUT = PROJECT_ROOT / "bot" / "tests" / "heldout_nlu.yml"
DEFAULT_DATA = PROJECT_ROOT / "bot" / "data"


def _reviewed(path: Path) -> List[Path]:
    """The review export at `path` (var/review/) when it exists, to train on beside bot/."""
    return [path] if path.exists() else []
DEFAULT_HISTORY = PROJECT_ROOT / "bot" / "history"


class RetrainError(RuntimeError):
    """A step of the retraining cannot run (missing data, failed build)."""


@dataclasses.dataclass
class Layout:
    """Where the live, candidate and previous versions of each part live."""

    live: Dict[str, Path]
    candidate_root: Path
    previous_root: Path

    @classmethod
    def default(cls, model_dir: Optional[Path] = None) -> "Layout":
        settings = get_settings()
        model_dir = Path(model_dir or settings.model_dir)
        return cls(
            live={"intent": model_dir / "intent", "index": Path(settings.index_dir),
                  "recommender": Path(settings.recommender_dir)},
            candidate_root=model_dir / "candidate",
            previous_root=model_dir / "previous",
        )

    def candidate(self, part: str) -> Path:
        return self.candidate_root / part

    def previous(self, part: str) -> Path:
        return self.previous_root / part


# ----------------------------------------------------------------- evaluation

def evaluate_intent(model_folder: Path, heldout: Path) -> Dict:
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


def not_worse(candidate: Dict, live: Optional[Dict], tolerance: float = 0.0) -> Tuple[bool, List[str]]:
    """Whether the candidate's held-out scores are at least the live ones (minus `tolerance`), and why not."""
    if live is None:
        return True, []
    reasons = []
    for name in ("accuracy", "macro_f1"):
        if candidate[name] < live[name] - tolerance:
            reasons.append(f"{name} {candidate[name]:.3f} < live {live[name]:.3f}")
    return not reasons, reasons


def what_changed(candidate: Dict, live: Optional[Dict], top: int = 5) -> List[str]:
    """Lines saying how the candidate differs from the live intent model."""
    if live is None:
        return [f"no live intent model: candidate accuracy {candidate['accuracy']:.3f}, "
                f"macro-F1 {candidate['macro_f1']:.3f} on {candidate['examples']} held-out examples"]
    lines = [
        f"held-out accuracy {live['accuracy']:.3f} -> {candidate['accuracy']:.3f} "
        f"({candidate['accuracy'] - live['accuracy']:+.3f})",
        f"held-out macro-F1 {live['macro_f1']:.3f} -> {candidate['macro_f1']:.3f} "
        f"({candidate['macro_f1'] - live['macro_f1']:+.3f})",
    ]
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


# ----------------------------------------------------------------- promotion

def promote(layout: Layout, parts: Sequence[str]) -> None:
    """Move the live parts to previous/ and the candidates into their place."""
    layout.previous_root.mkdir(parents=True, exist_ok=True)
    for part in parts:
        live, candidate, previous = layout.live[part], layout.candidate(part), layout.previous(part)
        if not candidate.exists():
            raise RetrainError(f"no candidate {part} at {candidate}; nothing promoted for it")
        if previous.exists():
            shutil.rmtree(previous)
        if live.exists():
            shutil.move(str(live), str(previous))
        live.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(candidate), str(live))


def rollback(layout: Layout) -> List[str]:
    """Swap each previous part with the live one; returns the parts rolled back."""
    rolled = []
    for part, live in layout.live.items():
        previous = layout.previous(part)
        if not previous.exists():
            continue
        swap = previous.with_name(previous.name + ".swap")
        if swap.exists():
            shutil.rmtree(swap)
        if live.exists():
            shutil.move(str(live), str(swap))
        shutil.move(str(previous), str(live))
        if swap.exists():
            shutil.move(str(swap), str(previous))  # a second --rollback goes forward again
        rolled.append(part)
    return rolled


# ----------------------------------------------------------------- training

def train_intent_candidate(data: Sequence[Path], out: Path, live: Optional[Path], full: bool, epochs: Optional[int]) -> Path:
    """Fit the candidate intent model on all NLU data, continuing from the live adapter unless `full`."""
    from nlu.model import META_FILE, IntentModel, IntentModelConfig
    from training.intent_data import read_examples

    texts, labels = [], []
    for path in data:
        t, l, _ = read_examples(path)
        texts += t
        labels += l
    config = IntentModelConfig(device="auto")
    if live is not None and (live / META_FILE).exists():  # keep the live model's settings
        config = IntentModelConfig.from_dict(json.loads((live / META_FILE).read_text())["config"])
    if epochs:
        config.epochs = epochs
    continue_from = str(live) if live is not None and live.exists() and not full else None
    print(f"training the intent candidate on {len(texts)} examples of {len(set(labels))} intents"
          + (f", continuing from the adapter in {live}" if continue_from else ", new adapter"), flush=True)
    model = IntentModel.fit(texts, labels, config, progress=True, pretrained_adapter=continue_from,
                            continue_training=continue_from is not None)
    if out.exists():
        shutil.rmtree(out)
    model.save(out)
    return out


def _run_module(module: str, args: List[str]) -> None:
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise RetrainError(f"python -m {module} {' '.join(args)} failed (exit {result.returncode})")


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", type=Path, default=DEFAULT_HELDOUT, help="fixed held-out NLU file (never trained on)")
    parser.add_argument("--data", type=Path, action="append", help="NLU training data (default: bot/data/)")
    parser.add_argument("--history", type=Path, default=DEFAULT_HISTORY, help="question/answer history for the index")
    parser.add_argument("--model-dir", type=Path, help="folder of the live/previous/candidate models (default: settings)")
    parser.add_argument("--intent-candidate", type=Path, help="use this trained intent model folder instead of training one")
    parser.add_argument("--full", action="store_true", help="fine-tune a new adapter instead of continuing from the live one")
    parser.add_argument("--epochs", type=int, help="intent training epochs (default: the live model's)")
    parser.add_argument("--tolerance", type=float, default=0.0, help="how much lower a candidate may score and still pass")
    parser.add_argument("--skip-index", action="store_true", help="do not rebuild the answer index")
    parser.add_argument("--skip-recommender", action="store_true", help="do not retrain the recommender")
    parser.add_argument("--no-review-export", action="store_true", help="do not export the review queue first")
    parser.add_argument("--rasa-model", action="store_true", help="after promotion, train a Rasa model around the promoted adapter")
    parser.add_argument("--rollback", action="store_true", help="put the previous models back and stop")
    args = parser.parse_args(argv)
    layout = Layout.default(args.model_dir)

    if args.rollback:
        rolled = rollback(layout)
        print(f"rolled back: {', '.join(rolled)}" if rolled else f"nothing to roll back in {layout.previous_root}")
        return 0 if rolled else 1
    if not args.heldout.exists():
        print(f"error: held-out file {args.heldout} does not exist; the gate needs it (see bot/tests/heldout_nlu.yml)",
              file=sys.stderr)
        return 2
    started = time.time()
    try:
        if not args.no_review_export:
            from core import review
            from training.review import DEFAULT_HISTORY as REVIEWED_HISTORY, DEFAULT_NLU, domain_intents

            written = review.export(DEFAULT_NLU, REVIEWED_HISTORY, known_intents=domain_intents())
            print(f"review queue: {written['nlu_examples']} NLU examples, {written['history_pairs']} answers exported")
        parts = ["intent"]
        live_intent = layout.live["intent"] if layout.live["intent"].exists() else None
        if args.intent_candidate:
            candidate_intent = layout.candidate("intent")
            if candidate_intent.exists():
                shutil.rmtree(candidate_intent)
            shutil.copytree(args.intent_candidate, candidate_intent)
        else:
            train_intent_candidate((args.data or [DEFAULT_DATA]) + _reviewed(DEFAULT_NLU_EXPORT), layout.candidate("intent"),
                                   live_intent, args.full, args.epochs)
        if not args.skip_index:
            _run_module("training.build_index", [str(args.history), *map(str, _reviewed(DEFAULT_HISTORY_EXPORT)),
                                                 "--out", str(layout.candidate("index"))])
            parts.append("index")
        if not args.skip_recommender:
            if _has_module("training.train_recommender"):
                _run_module("training.train_recommender", ["--out", str(layout.candidate("recommender"))])
                parts.append("recommender")
            else:
                print("recommender: training.train_recommender is not installed; kept as it is")
        candidate_scores = evaluate_intent(layout.candidate("intent"), args.heldout)
        live_scores = evaluate_intent(live_intent, args.heldout) if live_intent else None
    except Exception as exc:  # any failed step: nothing live was touched
        print(f"error: {exc}\nnothing was promoted; the live models are unchanged", file=sys.stderr)
        return 2

    print("what changed:")
    for line in what_changed(candidate_scores, live_scores):
        print("  " + line)
    passed, reasons = not_worse(candidate_scores, live_scores, args.tolerance)
    if not passed:
        print(f"REFUSED: the candidate is worse on {args.heldout.name} ({'; '.join(reasons)}); "
              f"live models unchanged, candidate left in {layout.candidate_root} for inspection")
        return 1
    promote(layout, parts)
    print(f"PROMOTED: {', '.join(parts)} (previous kept in {layout.previous_root}; undo with --rollback) "
          f"in {time.time() - started:.0f}s")
    if args.rasa_model:
        config = PROJECT_ROOT / "config.yml"
        import yaml

        content = yaml.safe_load(config.read_text())
        for component in content["pipeline"]:
            if component["name"] == "nlu.TransformerIntentClassifier":
                component["pretrained_adapter"] = str(layout.live["intent"])
        packed = layout.candidate_root / "config.yml"
        layout.candidate_root.mkdir(parents=True, exist_ok=True)
        packed.write_text(yaml.safe_dump(content, sort_keys=False))
        rasa = str(Path(sys.executable).with_name("rasa"))
        result = subprocess.run([rasa, "train", "--config", str(packed), "--domain", "bot/domain", "--data", "bot/data",
                                 *map(str, _reviewed(DEFAULT_NLU_EXPORT)),
                                 "--out", str(layout.live["intent"].parent)], cwd=PROJECT_ROOT)
        if result.returncode != 0:
            print("error: rasa train failed; the promoted folders stand, the served Rasa model is unchanged", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
