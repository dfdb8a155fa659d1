"""Train the sentiment model (negative / neutral / positive, and the reason of a negative message).

    python -m training.train_sentiment                       # ../shared/data/airline-sentiment/train.csv
    python -m training.train_sentiment --data path/train.csv --out artifacts/sentiment
    python -m training.train_sentiment --no-fine-tune        # logistic heads only (about a minute)

The data is a CSV with the columns text, sentiment (negative, neutral or
positive) and optionally negative_reason. Steps, each with a progress bar:
the bundled sentence encoder embeds every message (about a minute for
11,700 messages on two cores); a tenth of the rows is held out; a LoRA
reader on the encoder's top three layers is fine-tuned on the rest (about
five minutes on two cores, `nlu.model.IntentModel`); logistic-regression
heads over word and character n-grams and the embedding are fitted on the
same rest; the blend of the two is chosen on the held-out tenth; the heads
are refitted on every row (`nlu.sentiment`). When a test CSV sits beside
the training file, ``metrics.json`` reports macro-F1 on it and per-reason
F1. The folder is replaced as a whole when training succeeds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from core.files import replacing_folder
from core.records import RecordError, read_csv
from core.settings import SENTIMENT_TRAINING_DATA

DEFAULT_DATA = SENTIMENT_TRAINING_DATA


def read_rows(path: Path) -> List[Dict[str, str]]:
    """Rows with text and sentiment (`core.records.read_csv`); a row without a known sentiment, or a missing
    column, stops training with the file and line."""
    from nlu.sentiment import LABELS

    rows = []
    try:
        for line, row in read_csv(path, required=("text", "sentiment")):
            sentiment = (row.get("sentiment") or "").strip()
            if sentiment not in LABELS:
                raise SystemExit(f"{path}:{line}: sentiment must be one of {', '.join(LABELS)}, not {row.get('sentiment')!r}")
            rows.append({"text": row.get("text") or "", "sentiment": sentiment,
                         "negative_reason": (row.get("negative_reason") or "").strip()})
    except RecordError as exc:
        raise SystemExit(str(exc)) from exc
    return rows


def embed(encoder, texts: Sequence[str], quiet: bool = False, batch: int = 256) -> np.ndarray:
    """Normalised embeddings of `texts`, with a progress bar."""
    from tqdm.auto import tqdm

    parts = []
    for start in tqdm(range(0, len(texts), batch), desc="embedding", unit="batch", disable=quiet):
        parts.append(encoder.encode(list(texts[start:start + batch]), batch_size=64, normalize_embeddings=True))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 384), np.float32)


def evaluate(model, rows: List[Dict[str, str]], vectors: np.ndarray) -> Dict[str, object]:
    """Macro-F1 of the sentiment and per-reason precision/recall/F1 of negative messages with a learnt reason."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    texts = [r["text"] for r in rows]
    predicted = model.predict(texts, vectors)
    truth = [r["sentiment"] for r in rows]
    metrics: Dict[str, object] = {
        "n": len(rows),
        "macro_f1": round(float(f1_score(truth, [p.label for p in predicted], average="macro")), 4),
        "accuracy": round(float(np.mean([p.label == t for p, t in zip(predicted, truth)])), 4),
    }
    if model.reasons:
        keep = [i for i, r in enumerate(rows) if r["sentiment"] == "negative" and r["negative_reason"] in model.reasons]
        if keep:
            # The reason head on every negative message with a known reason (whatever the sentiment head said).
            logits = model._logits([texts[i] for i in keep], vectors[keep], model.reason_coef, model.reason_intercept)
            picks = [model.reasons[int(row.argmax())] for row in logits] if len(model.reasons) > 2 else \
                [model.reasons[1 if row[0] > 0 else 0] for row in logits]
            gold = [rows[i]["negative_reason"] for i in keep]
            p, r, f, s = precision_recall_fscore_support(gold, picks, labels=model.reasons, zero_division=0)
            metrics["reasons"] = {
                name: {"precision": round(float(p[j]), 3), "recall": round(float(r[j]), 3), "f1": round(float(f[j]), 3),
                       "n": int(s[j])}
                for j, name in enumerate(model.reasons)
            }
            metrics["reason_accuracy"] = round(float(np.mean([a == b for a, b in zip(gold, picks)])), 4)
    return metrics


def reader_config(**overrides):
    """Settings of the fine-tuned reader (`nlu.model.IntentModelConfig`): LoRA on the top three layers.

    Measured on the airline split (2 cores): 4 epochs take about five
    minutes, early stopping on a tenth of the fitting rows keeps the best.
    """
    from nlu.model import IntentModelConfig

    values = dict(trainable_layers=3, epochs=4, learning_rate=1e-3, label_smoothing=0.0, max_length=64, patience=1)
    values.update(overrides)
    return IntentModelConfig(**values)


def train(data: Path, out: Path, test: Optional[Path] = None, quiet: bool = False, encoder=None,
          fine_tune: bool = True, config=None, seed: int = 13) -> Dict[str, object]:
    """Fit on `data`, write the folder `out` (replaced as a whole), return the metrics.

    With `fine_tune` (the default) a tenth of the rows is held out: the
    logistic heads and the fine-tuned reader are fitted on the rest, the
    blend of the two is chosen on that tenth, then the heads are refitted on
    every row. Without it the logistic heads decide alone.
    """
    from core.encoder import load_encoder
    from nlu.model import IntentModel, stratified_split
    from nlu.sentiment import SentimentModel, normalise

    started = time.time()
    rows = read_rows(data)
    texts, labels = [r["text"] for r in rows], [r["sentiment"] for r in rows]
    reasons = [r["negative_reason"] for r in rows]
    encoder = encoder or load_encoder(None)
    vectors = embed(encoder, texts, quiet)
    metrics: Dict[str, object] = {"train": str(data), "n_train": len(rows)}
    tuned, chosen = None, None
    if fine_tune:
        fit_rows, held = stratified_split(np.array(labels), 0.1, seed)
        if len(held) == 0 or len({labels[i] for i in fit_rows}) < 2:
            raise SystemExit(f"{data}: too few rows of each sentiment to hold a tenth out for the blend")
        fit_rows = [int(i) for i in fit_rows]
        held = [int(i) for i in held]
        tuned = IntentModel.fit([normalise(texts[i]) for i in fit_rows], [labels[i] for i in fit_rows],
                                config or reader_config(seed=seed), progress=not quiet,
                                log=(lambda line: None) if quiet else print)
        draft = SentimentModel.fit([texts[i] for i in fit_rows], [labels[i] for i in fit_rows], vectors[fit_rows])
        draft.tuned = tuned
        chosen = draft.choose_blend([texts[i] for i in held], vectors[held], [labels[i] for i in held])
        metrics["blend"] = chosen
    model = SentimentModel.fit(texts, labels, vectors, reasons=reasons)
    if tuned is not None:
        model.tuned, model.blend_weight = tuned, chosen["weight"]
    metrics["reasons"] = model.reasons
    if test is not None and test.exists():
        test_rows = read_rows(test)
        metrics["test"] = {"file": str(test), **evaluate(model, test_rows, embed(encoder, [r["text"] for r in test_rows], quiet))}
    metrics["seconds"] = round(time.time() - started, 1)
    with replacing_folder(out) as staging:
        model.save(staging, {"trained_on": str(data), "n_train": len(rows)})
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    from nlu.sentiment import DEFAULT_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training CSV (text, sentiment, negative_reason)")
    parser.add_argument("--test", type=Path, default=None, help="test CSV (default: test.csv beside --data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="artifact folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-fine-tune", action="store_true",
                        help="logistic heads only (about a minute; macro-F1 0.77 instead of 0.80 on the airline split)")
    args = parser.parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"no training data at {args.data}")
    metrics = train(args.data, args.out, args.test or args.data.with_name("test.csv"), args.quiet,
                    fine_tune=not args.no_fine_tune)
    test = metrics.get("test") or {}
    print(f"sentiment model written to {args.out} in {metrics['seconds']}s"
          + (f"; test macro-F1 {test['macro_f1']}" if test else ""))
    for name, m in (test.get("reasons") or {}).items():
        print(f"  reason {name:<28} precision {m['precision']:.3f} recall {m['recall']:.3f} f1 {m['f1']:.3f} (n={m['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
