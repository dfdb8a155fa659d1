"""Joint intent and entity benchmark on SNIPS: our component beside stock Rasa (DIET), in one run.

    python -m training.bench_entities --data ../shared/data/snips

SNIPS in the split of Goo et al. 2018 (`train/`, `test/`, each with
`seq.in`, `seq.out` BIO tags per word and `label`). Both systems are trained
by Rasa (`rasa.model_training.train_nlu`) from the same NLU YAML with the
slots as annotated entities, each in a child process so that its peak memory
is its own, then parse every test utterance through a loaded `Agent`:

- intent accuracy, and expected calibration error of the top intent;
- entity-level slot F1 (CoNLL style: a slot counts when its span and type are
  both exact), scored by `nlu.entities.span_scores` for both systems;
- parse latency, one message at a time after warm-up.

Stock Rasa is DIETClassifier with its documented featurizers (the same
pipeline as `training.bench_intent`); `--diet-epochs` shortens its 100 epochs
and the table says so.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import yaml

from core.encoder import cpu_description
from core.processes import project_env
from core.settings import PROJECT_ROOT
from nlu.entities import span_scores
from nlu.model import expected_calibration_error
from training.bench_intent import stock_config

OURS = {"recipe": "default.v1", "language": "en", "pipeline": [{"name": "nlu.TransformerIntentClassifier"}]}

Example = Tuple[str, str, List[Dict]]  # (text, intent, entity annotations)


def read_split(folder: Path) -> List[Example]:
    """(text, intent, entities) per utterance of one SNIPS split folder; the words are joined by one space."""
    files = [folder / name for name in ("seq.in", "seq.out", "label")]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: expected SNIPS in the Goo et al. layout (seq.in, seq.out, label)")
    words_lines, tags_lines, labels = (p.read_text(encoding="utf-8").splitlines() for p in files)
    if not len(words_lines) == len(tags_lines) == len(labels):
        raise ValueError(f"{folder}: seq.in, seq.out and label have {len(words_lines)}, {len(tags_lines)} and {len(labels)} lines")
    out = []
    for number, (words, tags, label) in enumerate(zip(words_lines, tags_lines, labels), start=1):
        words, tags = words.split(), tags.split()
        if len(words) != len(tags):
            raise ValueError(f"{folder / 'seq.out'}:{number}: {len(tags)} tags for {len(words)} words")
        out.append((" ".join(words), label.strip(), bio_spans(words, tags)))
    return out


def bio_spans(words: List[str], tags: List[str]) -> List[Dict]:
    """Character-span annotations of BIO word tags over the words joined by single spaces."""
    spans: List[Dict] = []
    position = 0
    for word, tag in zip(words, tags):
        start, end = position, position + len(word)
        position = end + 1
        if tag == "O":
            continue
        prefix, kind = tag.split("-", 1)
        if prefix == "I" and spans and spans[-1]["entity"] == kind and spans[-1]["end"] == start - 1:
            spans[-1]["end"] = end
        else:
            spans.append({"entity": kind, "start": start, "end": end})
    return spans


def markup(text: str, entities: List[Dict]) -> str:
    """Rasa's `[span](entity)` markup of one example."""
    out, cursor = "", 0
    for e in sorted(entities, key=lambda e: e["start"]):
        out += text[cursor:e["start"]] + f"[{text[e['start']:e['end']]}]({e['entity']})"
        cursor = e["end"]
    return out + text[cursor:]


def write_nlu_yaml(examples: List[Example], path: Path) -> None:
    by_intent: Dict[str, List[str]] = {}
    for text, intent, entities in examples:
        by_intent.setdefault(intent, []).append(markup(text, entities))
    document = {"version": "3.1", "nlu": [
        {"intent": intent, "examples": "".join(f"- {e}\n" for e in rows)} for intent, rows in by_intent.items()]}
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


def run_system(name: str, config: Dict, workdir: Path, test: List[Example], latency_n: int) -> Dict:
    """Train, parse the test set and time one system (inside the child process)."""
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    config_path = workdir / f"config_{name}.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    model = train_nlu(str(config_path), str(workdir / "train.yml"), str(workdir / "models"), fixed_model_name=name)
    train_seconds = time.perf_counter() - started
    agent = Agent.load(model)

    rng = np.random.RandomState(0)
    chosen = set(rng.choice(len(test), size=min(latency_n, len(test)), replace=False).tolist())
    sample = [test[i][0] for i in sorted(chosen)]
    warm_up = [test[i][0] for i in range(len(test)) if i not in chosen][:10]

    async def timings():  # first, so that no timed message is in a cache yet
        for text in warm_up:
            await agent.parse_message(text)
        spent = []
        for text in sample:
            t0 = time.perf_counter()
            await agent.parse_message(text)
            spent.append((time.perf_counter() - t0) * 1000)
        return spent

    async def parse_all():
        out = []
        for text, _, _ in test:
            out.append(await agent.parse_message(text))
        return out

    spent = asyncio.run(timings())
    parsed = asyncio.run(parse_all())
    intents = sorted({i for _, i, _ in test} | {r["intent"]["name"] for r in parsed if r["intent"].get("name")})
    index = {name: n for n, name in enumerate(intents)}
    top = np.zeros((len(test), len(intents)))
    for row, result in enumerate(parsed):
        if result["intent"].get("name") in index:
            top[row, index[result["intent"]["name"]]] = result["intent"]["confidence"]
    gold = np.array([index[i] for _, i, _ in test])
    entities = span_scores([e for _, _, e in test], [
        [{k: x[k] for k in ("entity", "start", "end")} for x in r.get("entities", [])] for r in parsed])

    return {
        "system": name,
        "intent_accuracy": float((top.argmax(-1) == gold).mean()),
        "intent_ece": expected_calibration_error(top, gold),
        "slot_precision": entities["precision"],
        "slot_recall": entities["recall"],
        "slot_f1": entities["f1"],
        "train_seconds": train_seconds,
        "p50_ms": float(np.percentile(spent, 50)),
        "p99_ms": float(np.percentile(spent, 99)),
        "load_average": os.getloadavg()[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def table(rows: List[Dict], diet_epochs: int) -> str:
    lines = [
        "| system | intent accuracy | intent ECE | slot F1 (P / R) | training wall time | parse p50 | parse p99 | peak memory | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = r["system"] + (f" ({diet_epochs} epochs)" if r["system"] == "stock-rasa-diet" else "")
        lines.append(
            f"| {label} | {r['intent_accuracy'] * 100:.2f} % | {r['intent_ece']:.3f} | {r['slot_f1'] * 100:.2f} "
            f"({r['slot_precision'] * 100:.1f} / {r['slot_recall'] * 100:.1f}) | {r['train_seconds'] / 60:.1f} min | "
            f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['peak_rss_mb']:.0f} MB | {r['load_average']:.1f} |")
    return "\n".join(lines)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "snips")
    parser.add_argument("--systems", default="ours,stock-rasa-diet", help="comma-separated: ours, stock-rasa-diet")
    parser.add_argument("--diet-epochs", type=int, default=100, help="DIET epochs (Rasa's default 100)")
    parser.add_argument("--epochs", type=int, help="our component's epochs (default: its own)")
    parser.add_argument("--limit", type=int, help="use only the first N training utterances (smoke runs)")
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench_entities")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    test = read_split(args.data / "test")
    if args.child:
        if args.child == "ours":
            config = {**OURS, "pipeline": [{"name": "nlu.TransformerIntentClassifier",
                                            **({"epochs": args.epochs} if args.epochs else {})}]}
        else:
            config = stock_config(args.diet_epochs)
        print("RESULT " + json.dumps(run_system(args.child, config, args.workdir, test, args.latency_messages)), flush=True)
        return 0

    train = read_split(args.data / "train")[: args.limit]
    workdir = Path(tempfile.mkdtemp(prefix="bench-entities-"))
    write_nlu_yaml(train, workdir / "train.yml")
    print(f"{len(train)} training and {len(test)} test utterances, {len({i for _, i, _ in train})} intents, "
          f"{len({e['entity'] for _, _, es in train for e in es})} slot types; CPU: {cpu_description()}, {os.cpu_count()} cores; "
          f"work in {workdir}", flush=True)
    env = project_env(RASA_MAX_CACHE_SIZE="0")
    rows = []
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        print(f"==> {system}", flush=True)
        child = subprocess.run(
            [sys.executable, "-m", "training.bench_entities", "--data", str(args.data), "--diet-epochs", str(args.diet_epochs),
             "--latency-messages", str(args.latency_messages), "--child", system, "--workdir", str(workdir)]
            + (["--epochs", str(args.epochs)] if args.epochs else []),
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        found = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not found:
            print(f"{system} failed (exit {child.returncode})", file=sys.stderr)
            continue
        rows.append(json.loads(found[-1][len("RESULT "):]))
        print(json.dumps(rows[-1]), flush=True)
    text = table(rows, args.diet_epochs)
    print(f"\nCPU: {cpu_description()}\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(f"CPU: {cpu_description()}\n\n" + text + "\n", encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
