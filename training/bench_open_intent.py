"""Open-intent benchmark: unknown requests recognised, ours beside stock Rasa, one run.

    python -m training.bench_open_intent --train ../shared/data/banking77/train.csv \
        --test ../shared/data/banking77/test.csv

The protocol of the open-intent literature (adaptive decision boundaries,
Zhang et al. 2021): for each share of known intents (``--ratios``) and each
seeded draw of which intents are known (``--draws``), the systems train on
the known intents' training examples only and are tested on ALL test
examples, those of the other intents labelled "unknown". Scores: accuracy
over all test requests, macro-F1 over the known intents plus "unknown", and
the F1 of "unknown" alone, as mean ± sd over the draws.

Every system holds out the same stratified tenth of its training examples
(`nlu.model.stratified_split`) and sets its threshold there, so that a share
``--false-unknown-rate`` of those known requests would be called unknown:
nothing is tuned on the test file.

- ours + detector: `nlu.model.IntentModel` fine-tuned on the rest, then
  `nlu.open_intent.OpenIntentDetector` (nearest of a few centroids per
  intent, summed with the calibrated confidence);
- ours + softmax threshold: the same model, unknown when its calibrated top
  probability is below the threshold (the baseline to beat);
- DIET + FallbackClassifier: Rasa's stock pipeline (`training.bench_intent`'s
  `stock_config`, ``--diet-epochs``) with `FallbackClassifier` at
  ``--fallback-threshold`` (ambiguity threshold left at Rasa's 0.1), trained
  with `rasa.model_training.train_nlu` and parsed one message at a time by a
  loaded `Agent`;
- DIET + calibrated threshold: DIET's own top confidence from the same
  parses, thresholded like ours.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.files import write_text_atomically
from core.settings import PROJECT_ROOT
from training.intent_data import read_examples

UNKNOWN = "unknown"
FALLBACK_INTENT = "nlu_fallback"
SYSTEMS = ("ours + detector", "ours + softmax threshold", "DIET + FallbackClassifier", "DIET + calibrated threshold")
REFERENCE = "published: adaptive decision boundaries (Zhang et al., 2021), BANKING77, about 81 % accuracy at 75 % known intents"


@dataclass
class OpenSplit:
    """One draw: what the systems train on, where they calibrate, what they are tested on."""

    known: List[str]
    fit_texts: List[str]
    fit_labels: List[str]
    val_texts: List[str]
    val_labels: List[str]
    test_texts: List[str]
    test_gold: List[str]  # a known intent or UNKNOWN


# ---------------------------------------------------------------- protocol
def draw_known(intents: Sequence[str], ratio: float, draw: int) -> List[str]:
    """The known intents of draw `draw` at `ratio`: the first round(ratio × n) of a permutation seeded by
    `draw` (so a draw's 25 % intents are among its 50 %, and those among its 75 %)."""
    intents = sorted(set(intents))
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"known-intent ratio must be between 0 and 1 (exclusive), got {ratio}")
    count = int(round(ratio * len(intents)))
    if count < 2 or count >= len(intents):
        raise ValueError(f"ratio {ratio} of {len(intents)} intents leaves {count} known: need at least 2 known and 1 unknown")
    order = np.random.RandomState(draw).permutation(len(intents))
    return sorted(intents[i] for i in order[:count])


def open_split(
    train: Tuple[Sequence[str], Sequence[str]],
    test: Tuple[Sequence[str], Sequence[str]],
    known: Sequence[str],
    validation_fraction: float,
    seed: int,
    max_per_intent: int = 0,
) -> OpenSplit:
    """Known intents' training examples (at most `max_per_intent` each when set, for short runs), a
    stratified `validation_fraction` of them held out for calibration; every test example, the
    unknown intents' ones labelled UNKNOWN."""
    from nlu.model import stratified_split

    if UNKNOWN in known:
        raise ValueError(f"an intent is named '{UNKNOWN}', the label this benchmark gives held-out intents; rename it")
    known = sorted(set(known))
    code = {label: i for i, label in enumerate(known)}
    keep = [i for i, label in enumerate(train[1]) if label in code]
    if max_per_intent:
        keep = _capped(keep, train[1], max_per_intent, np.random.RandomState(seed))
    texts, labels = [train[0][i] for i in keep], [train[1][i] for i in keep]
    codes = np.array([code[label] for label in labels])
    fit_idx, val_idx = stratified_split(codes, validation_fraction, seed)
    return OpenSplit(
        known=known,
        fit_texts=[texts[i] for i in fit_idx],
        fit_labels=[labels[i] for i in fit_idx],
        val_texts=[texts[i] for i in val_idx],
        val_labels=[labels[i] for i in val_idx],
        test_texts=list(test[0]),
        test_gold=[label if label in code else UNKNOWN for label in test[1]],
    )


def _capped(indices: List[int], labels: Sequence[str], cap: int, rng: np.random.RandomState) -> List[int]:
    """At most `cap` of `indices` per label, drawn at random; in their original order."""
    counts: Dict[str, int] = {}
    kept = []
    for i in rng.permutation(indices):
        if counts.get(labels[i], 0) < cap:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
            kept.append(int(i))
    return sorted(kept)


def open_metrics(gold: Sequence[str], predicted: Sequence[str], known: Sequence[str]) -> Dict[str, float]:
    """Accuracy over all requests, macro-F1 over the known intents plus UNKNOWN, F1 of UNKNOWN alone."""
    if len(gold) != len(predicted) or not len(gold):
        raise ValueError(f"need as many predictions as gold labels (got {len(predicted)} and {len(gold)}), at least one")
    gold, predicted = np.asarray(gold, dtype=object), np.asarray(predicted, dtype=object)
    f1 = {label: _f1(gold == label, predicted == label) for label in list(known) + [UNKNOWN]}
    return {
        "accuracy": float((gold == predicted).mean()),
        "macro_f1": float(np.mean(list(f1.values()))),
        "unknown_f1": f1[UNKNOWN],
    }


def _f1(truth: np.ndarray, said: np.ndarray) -> float:
    hits = float((truth & said).sum())
    return 2 * hits / float(truth.sum() + said.sum()) if truth.sum() + said.sum() else 0.0


def thresholded(top: Sequence[str], confidence: np.ndarray, threshold: float) -> List[str]:
    """`top` intents, UNKNOWN where `confidence` is below `threshold`."""
    return [UNKNOWN if c < threshold else label for label, c in zip(top, confidence)]


# ----------------------------------------------------------------- systems
def run_ours(split: OpenSplit, epochs: int, false_unknown_rate: float, seed: int) -> Dict[str, Dict]:
    """Fine-tune our model on the split (its open-intent detector is fitted by `IntentModel.fit` on the
    validation split, as in every trained model); predictions with the detector and with a softmax
    threshold set on the same validation split."""
    from nlu.model import IntentModel, IntentModelConfig
    from nlu.open_intent import calibrated_threshold

    started = time.perf_counter()
    config = IntentModelConfig(epochs=epochs, seed=seed, false_unknown_rate=false_unknown_rate)
    model = IntentModel.fit(split.fit_texts, split.fit_labels, config, validation=(split.val_texts, split.val_labels), log=lambda _: None)
    train_seconds = time.perf_counter() - started
    val_proba = model.predict_proba(split.val_texts)
    readings = model.parse(split.test_texts)
    test_proba = np.stack([r.proba for r in readings])
    top = [model.labels[i] for i in test_proba.argmax(1)]
    softmax_threshold = -calibrated_threshold(-val_proba.max(1), false_unknown_rate)
    return {
        "ours + detector": {"predicted": [UNKNOWN if r.unknown else label for label, r in zip(top, readings)], "train_seconds": train_seconds},
        "ours + softmax threshold": {"predicted": thresholded(top, test_proba.max(1), softmax_threshold), "train_seconds": train_seconds},
    }


def run_diet(split: OpenSplit, epochs: int, fallback_threshold: float, false_unknown_rate: float, workdir: Path) -> Dict[str, Dict]:
    """Train stock DIET + FallbackClassifier through Rasa; its fallback decisions and a calibrated threshold."""
    import yaml
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu
    from rasa.utils.log_utils import configure_structlog

    from nlu.open_intent import calibrated_threshold
    from training.bench_intent import stock_config, write_nlu_yaml

    workdir.mkdir(parents=True, exist_ok=True)
    config = stock_config(epochs)
    config["pipeline"].append({"name": "FallbackClassifier", "threshold": fallback_threshold})
    (workdir / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    write_nlu_yaml(split.fit_texts, split.fit_labels, workdir / "train.yml")
    started = time.perf_counter()
    model_path = train_nlu(str(workdir / "config.yml"), str(workdir / "train.yml"), str(workdir / "models"), fixed_model_name="diet")
    train_seconds = time.perf_counter() - started
    configure_structlog(logging.WARNING)  # not a debug line per parsed message
    agent = Agent.load(model_path)
    val_top, val_conf, _ = parse_all(agent, split.val_texts)
    test_top, test_conf, test_intent = parse_all(agent, split.test_texts)
    threshold = -calibrated_threshold(-np.asarray(val_conf), false_unknown_rate)
    return {
        "DIET + FallbackClassifier": {"predicted": [UNKNOWN if i == FALLBACK_INTENT else i for i in test_intent], "train_seconds": train_seconds},
        "DIET + calibrated threshold": {"predicted": thresholded(test_top, np.asarray(test_conf), threshold), "train_seconds": train_seconds},
    }


def parse_all(agent, texts: Sequence[str]) -> Tuple[List[str], List[float], List[str]]:
    """(the classifier's top intent, its confidence, the intent after FallbackClassifier) of each text,
    parsed one message at a time as Rasa serves them."""

    async def parse():
        top, confidence, final = [], [], []
        for text in texts:
            result = await agent.parse_message(text)
            ranking = [r for r in result.get("intent_ranking", []) if r.get("name") != FALLBACK_INTENT]
            top.append(ranking[0]["name"] if ranking else FALLBACK_INTENT)
            confidence.append(float(ranking[0]["confidence"]) if ranking else 0.0)
            final.append((result.get("intent") or {}).get("name") or FALLBACK_INTENT)
        return top, confidence, final

    return asyncio.run(parse())


# ----------------------------------------------------------------- reports
def summarise(rows: List[Dict]) -> List[Dict]:
    """Mean and sd over draws of each (ratio, system)."""
    out = []
    for ratio in sorted({r["ratio"] for r in rows}):
        for system in SYSTEMS:
            mine = [r for r in rows if r["ratio"] == ratio and r["system"] == system]
            if not mine:
                continue
            entry = {"ratio": ratio, "system": system, "draws": len(mine)}
            for key in ("accuracy", "macro_f1", "unknown_f1", "train_seconds"):
                values = np.array([r[key] for r in mine], dtype=float)
                entry[key] = float(values.mean())
                entry[key + "_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out.append(entry)
    return out


def table(summary: List[Dict]) -> str:
    """Markdown table: per ratio, each system's mean ± sd over draws."""
    lines = [
        "| known intents | system | accuracy | macro-F1 (known + unknown) | unknown F1 | training | draws |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        pct = lambda key: f"{e[key] * 100:.1f} ± {e[key + '_sd'] * 100:.1f} %"  # noqa: E731
        lines.append(
            f"| {e['ratio'] * 100:.0f} % | {e['system']} | {pct('accuracy')} | {pct('macro_f1')} | {pct('unknown_f1')} | "
            f"{e['train_seconds'] / 60:.1f} min | {e['draws']} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    from tqdm.auto import tqdm

    from core.encoder import cpu_description

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--ratios", default="0.25,0.5,0.75", help="comma-separated shares of known intents")
    parser.add_argument("--draws", type=int, default=3, help="seeded draws of known intents per ratio (seeds 0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=8, help="our fine-tuning epochs (IntentModelConfig's default 8)")
    parser.add_argument("--diet-epochs", type=int, default=100, help="DIET epochs (Rasa's default 100)")
    parser.add_argument("--systems", default="ours,diet", help="comma-separated: ours, diet")
    parser.add_argument("--false-unknown-rate", type=float, default=0.1, help="share of held-out known requests each threshold flags")
    parser.add_argument("--fallback-threshold", type=float, default=0.7, help="FallbackClassifier threshold beside DIET")
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="share of each known intent held out for calibration")
    parser.add_argument("--max-per-intent", type=int, default=0, help="at most this many training examples per known intent (0: all; for short runs)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench_open_intent")
    args = parser.parse_args(argv)
    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    systems = {s.strip() for s in args.systems.split(",") if s.strip()}
    if not systems or systems - {"ours", "diet"}:
        parser.error(f"--systems takes ours and/or diet, got {args.systems!r}")
    # Rasa's training cache would restore a DIET trained by an earlier run instead of training it.
    os.environ.setdefault("RASA_MAX_CACHE_SIZE", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices

    train = read_examples(args.train)
    test = read_examples(args.test)
    for problem in train[2] + test[2]:
        print(problem)
    intents = sorted(set(train[1]))
    cpu = cpu_description()
    print(f"{len(train[0])} training and {len(test[0])} test utterances, {len(intents)} intents; CPU {cpu}, {os.cpu_count()} cores", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)

    rows: List[Dict] = []
    jobs = [(ratio, draw, system) for ratio in ratios for draw in range(args.draws) for system in ("ours", "diet") if system in systems]
    with tempfile.TemporaryDirectory(prefix="bench-open-intent-") as workdir:
        for ratio, draw, system in tqdm(jobs, desc="open-intent protocol", unit="model"):
            split = open_split(train[:2], test[:2], draw_known(intents, ratio, draw), args.validation_fraction, draw, args.max_per_intent)
            if system == "ours":
                results = run_ours(split, args.epochs, args.false_unknown_rate, draw)
            else:
                results = run_diet(split, args.diet_epochs, args.fallback_threshold, args.false_unknown_rate, Path(workdir) / f"diet-{ratio}-{draw}")
            for name, result in results.items():
                row = {"ratio": ratio, "draw": draw, "system": name, "known": len(split.known), "train_examples": len(split.fit_texts),
                       "train_seconds": result["train_seconds"], **open_metrics(split.test_gold, result["predicted"], split.known)}
                rows.append(row)
                tqdm.write(json.dumps(row))

    summary = summarise(rows)
    text = (
        f"{table(summary)}\n\nCPU: {cpu}, {os.cpu_count()} cores. Ours: {args.epochs} epochs; DIET: {args.diet_epochs} epochs; "
        f"thresholds flag {args.false_unknown_rate:.0%} of held-out known requests (FallbackClassifier: {args.fallback_threshold}); "
        f"draws per ratio: {args.draws}" + (f"; at most {args.max_per_intent} training examples per intent" if args.max_per_intent else "")
        + f".\n{REFERENCE}.\n"
    )
    print("\n" + text)
    write_text_atomically(args.out / "table.md", text)
    write_text_atomically(args.out / "results.json", json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cpu": cpu, "rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
