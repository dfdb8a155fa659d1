"""Fine-tune the intent classifier offline and write a standard PEFT adapter folder.

    python -m training.finetune_intent --data bot/data/nlu.yml --out runs/intent
    python -m training.finetune_intent --data ../shared/data/banking77/train.csv \
        --test ../shared/data/banking77/test.csv --out runs/banking77

The output folder loads with plain PEFT (`PeftModel.from_pretrained(base,
"runs/intent/adapter")`) and with the Rasa component through
`pretrained_adapter: runs/intent`. It also holds `labels.json`,
`metrics.json`, `confusion_matrix.png` and `learning_curve.png`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from nlu.model import IntentModel, IntentModelConfig
from training.intent_data import DataFileError, read_examples


def classification_metrics(labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str]) -> Dict:
    """Accuracy, macro-F1 and per-intent precision/recall/F1."""
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    per_class = {}
    f1s = []
    for label in labels:
        tp = float(((predicted == label) & (gold == label)).sum())
        fp = float(((predicted == label) & (gold != label)).sum())
        fn = float(((predicted != label) & (gold == label)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": int(tp + fn)}
        if tp + fn:
            f1s.append(f1)
    return {
        "accuracy": float((gold == predicted).mean()) if len(gold) else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "per_intent": per_class,
    }


def plot_confusion(labels: List[str], gold: Sequence[str], predicted: Sequence[str], path: Path) -> None:
    """Row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {l: i for i, l in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)))
    for g, p in zip(gold, predicted):
        if g in index and p in index:
            matrix[index[g], index[p]] += 1
    matrix = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = max(6, len(labels) * 0.18)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)))
    ax.set_yticks(range(len(labels)))
    fontsize = max(3, min(8, 400 / max(1, len(labels))))
    ax.set_xticklabels(labels, rotation=90, fontsize=fontsize)
    ax.set_yticklabels(labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Intent confusion (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curve(history: List[Dict], path: Path) -> None:
    """Training loss and validation accuracy per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:red", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss", color="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_accuracy"] for h in history], "s-", color="tab:blue", label="validation accuracy")
    ax2.set_ylabel("validation accuracy", color="tab:blue")
    ax1.set_title("Learning curve")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: List[str]) -> argparse.Namespace:
    defaults = IntentModelConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="Rasa NLU YAML (file or folder) or text,label CSV")
    parser.add_argument("--test", type=Path, help="held-out test file (same formats) for metrics.json")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    for field in dataclasses.fields(IntentModelConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(getattr(defaults, field.name)), default=getattr(defaults, field.name), help=f"(default {getattr(defaults, field.name)})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: List[str] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("finetune_intent").info
    config = IntentModelConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(IntentModelConfig)})
    try:
        texts, labels, problems = read_examples(args.data)
        test = read_examples(args.test) if args.test else None
    except DataFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems + (test[2] if test else []):
        log(problem)
    log(f"{len(texts)} examples of {len(set(labels))} intents from {args.data}")
    started = time.perf_counter()
    model = IntentModel.fit(texts, labels, config, progress=not args.quiet, log=log)
    train_seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    (args.out / "labels.json").write_text(json.dumps(model.labels, indent=2), encoding="utf-8")

    if test:
        eval_texts, gold = test[0], test[1]
        split = "test"
    else:  # metrics on the same held-out split used for early stopping
        from nlu.model import stratified_split

        index = {l: i for i, l in enumerate(model.labels)}
        _, val_idx = stratified_split(np.array([index[l] for l in labels]), config.validation_split, config.seed)
        eval_texts, gold = [texts[i] for i in val_idx], [labels[i] for i in val_idx]
        split = "validation"
    probs = model.predict_proba(eval_texts)
    predicted = [model.labels[i] for i in probs.argmax(1)]
    metrics = classification_metrics(model.labels, gold, predicted)
    metrics.update(
        {
            "split": split,
            "examples": len(eval_texts),
            "train_seconds": train_seconds,
            "epochs_run": len(model.history),
            "temperature": model.temperature,
            "expected_calibration_error": expected_calibration_error(probs, [model.labels.index(g) if g in model.labels else -1 for g in gold]),
            "config": dataclasses.asdict(config),
            "history": model.history,
        }
    )
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    plot_confusion(model.labels, gold, predicted, args.out / "confusion_matrix.png")
    if model.history:
        plot_learning_curve(model.history, args.out / "learning_curve.png")
    log(
        f"{split} accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {metrics['expected_calibration_error']:.4f}, trained in {train_seconds:.0f}s; wrote {args.out}"
    )
    return 0


def expected_calibration_error(probs: np.ndarray, gold: Sequence[int], bins: int = 10) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins."""
    gold = np.asarray(gold)
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = predicted == gold
    ece = 0.0
    for low in np.linspace(0, 1, bins, endpoint=False):
        in_bin = (confidence > low) & (confidence <= low + 1.0 / bins)
        if in_bin.any():
            ece += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(ece)


if __name__ == "__main__":
    sys.exit(main())
