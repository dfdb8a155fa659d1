"""Intent benchmark: our transformer classifier beside stock Rasa, in one run.

    python -m training.bench_intent --train ../shared/data/banking77/train.csv \
        --test ../shared/data/banking77/test.csv

Both systems go through Rasa's own machinery: `rasa.model_training.train_nlu`
trains them from the same NLU YAML, `rasa.model_testing.test_nlu` evaluates
them (accuracy and macro-F1 from Rasa's intent report), and a loaded
`Agent` parses single messages for latency. Each system runs in a child
process so that its peak memory (max RSS) is its own.

Stock Rasa is WhitespaceTokenizer, RegexFeaturizer, LexicalSyntacticFeaturizer,
CountVectors on words and on char_wb 1-4, and DIETClassifier; `--diet-epochs`
shortens its 100 epochs (about 44 s each on 2 cores) and the table says so.
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
from typing import Dict, List

import numpy as np
import yaml

from core.processes import project_env
from core.settings import PROJECT_ROOT
from training.intent_data import read_examples

OURS = {
    "recipe": "default.v1",
    "language": "en",
    "pipeline": [{"name": "nlu.TransformerIntentClassifier"}],
}


def stock_config(epochs: int) -> Dict:
    """Rasa's stock DIET pipeline as in its documentation."""
    return {
        "recipe": "default.v1",
        "language": "en",
        "pipeline": [
            {"name": "WhitespaceTokenizer"},
            {"name": "RegexFeaturizer"},
            {"name": "LexicalSyntacticFeaturizer"},
            {"name": "CountVectorsFeaturizer"},
            {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
            {"name": "DIETClassifier", "epochs": epochs, "constrain_similarities": True},
        ],
    }


def write_nlu_yaml(texts: List[str], labels: List[str], path: Path) -> None:
    """Rasa NLU YAML with one block per intent."""
    by_intent: Dict[str, List[str]] = {}
    for text, label in zip(texts, labels):
        by_intent.setdefault(label, []).append(text.replace("\n", " "))
    doc = {
        "version": "3.1",
        "nlu": [
            {"intent": intent, "examples": "".join(f"- {json.dumps(t)[1:-1]}\n" for t in examples)}
            for intent, examples in by_intent.items()
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def run_system(name: str, config: Dict, train_yml: Path, test_yml: Path, test_texts: List[str], workdir: Path, latency_n: int,
               test_labels: List[str] = ()) -> Dict:
    """Train, test and time one system (runs inside the child process); with `test_labels`, also the
    expected calibration error of the top intent's confidence over every test utterance."""
    from rasa.core.agent import Agent
    from rasa.model_testing import test_nlu
    from rasa.model_training import train_nlu

    config_path = workdir / f"config_{name}.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    model = train_nlu(str(config_path), str(train_yml), str(workdir / "models"), fixed_model_name=name)
    train_seconds = time.perf_counter() - started
    results = workdir / f"results_{name}"
    asyncio.run(test_nlu(model, str(test_yml), str(results), additional_arguments={"errors": False}))
    report = json.loads((results / "intent_report.json").read_text())

    agent = Agent.load(model)
    rng = np.random.RandomState(0)
    sample = [test_texts[i] for i in rng.choice(len(test_texts), size=min(latency_n, len(test_texts)), replace=False)]

    async def timings():
        for text in sample[:10]:  # warm-up
            await agent.parse_message(text)
        spent, cpu = [], []
        for text in sample:
            t0, c0 = time.perf_counter(), time.process_time()
            await agent.parse_message(text)
            spent.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        return spent, cpu

    # CPU time beside wall time: on a shared machine wall time includes
    # waiting for a core; the load average says how busy it was.
    spent, cpu = asyncio.run(timings())
    ece = float("nan")
    if test_labels:
        async def tops():
            return [(await agent.parse_message(text))["intent"] for text in test_texts]

        from nlu.model import expected_calibration_error

        found = asyncio.run(tops())
        probs = np.array([[r.get("confidence") or 0.0, 0.0] for r in found])
        right = np.array([0 if r.get("name") == label else 1 for r, label in zip(found, test_labels)])
        ece = expected_calibration_error(probs, right)  # column 0: the top intent, right when the label is 0
    return {
        "system": name,
        "ece": ece,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro avg"]["f1-score"],
        "train_seconds": train_seconds,
        "p50_ms": float(np.percentile(spent, 50)),
        "p95_ms": float(np.percentile(spent, 95)),
        "cpu_p50_ms": float(np.percentile(cpu, 50)),
        "load_average": os.getloadavg()[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def table(rows: List[Dict], diet_epochs: int) -> str:
    """Markdown table of the results."""
    lines = [
        "| system | test accuracy | macro-F1 | ECE | training wall time | parse p50 | parse p95 | parse CPU p50 | peak memory | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = r["system"]
        if label == "stock-rasa-diet":
            label += f" ({diet_epochs} epochs)"
        if r.get("offline_adapter"):
            label += " (adapter from training.finetune_intent)"
        lines.append(
            f"| {label} | {r['accuracy'] * 100:.1f} % | {r['macro_f1'] * 100:.1f} % | {r.get('ece', float('nan')):.3f} | {r['train_seconds'] / 60:.1f} min | "
            f"{r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r.get('cpu_p50_ms', float('nan')):.1f} ms | "
            f"{r['peak_rss_mb']:.0f} MB | {r.get('load_average', float('nan')):.1f} |"
        )
    return "\n".join(lines)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--systems", default="ours,stock-rasa-diet", help="comma-separated: ours, stock-rasa-diet")
    parser.add_argument("--diet-epochs", type=int, default=100, help="DIET epochs (Rasa's default 100)")
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument(
        "--ours-adapter", type=Path,
        help="folder from `training.finetune_intent` on the same training file: Rasa loads it through "
        "pretrained_adapter instead of fine-tuning again; its recorded training time is added to the table",
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench_intent")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one system, in its own process
        test_texts, test_labels, _ = read_examples(args.test)
        config = OURS if args.child == "ours" else stock_config(args.diet_epochs)
        offline_seconds = 0.0
        if args.child == "ours" and args.ours_adapter:
            config = {**OURS, "pipeline": [{"name": "nlu.TransformerIntentClassifier", "pretrained_adapter": str(args.ours_adapter.resolve())}]}
            offline_seconds = json.loads((args.ours_adapter / "metrics.json").read_text())["train_seconds"]
        result = run_system(args.child, config, args.workdir / "train.yml", args.workdir / "test.yml", test_texts, args.workdir,
                            args.latency_messages, test_labels)
        result["train_seconds"] += offline_seconds
        result["offline_adapter"] = bool(offline_seconds)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-intent-"))
    train_texts, train_labels, problems = read_examples(args.train)
    test_texts, test_labels, more = read_examples(args.test)
    for problem in problems + more:
        print(problem)
    write_nlu_yaml(train_texts, train_labels, workdir / "train.yml")
    write_nlu_yaml(test_texts, test_labels, workdir / "test.yml")
    print(f"{len(train_texts)} training and {len(test_texts)} test utterances, {len(set(train_labels))} intents; work in {workdir}", flush=True)

    rows = []
    # RASA_MAX_CACHE_SIZE=0: Rasa's training cache would otherwise restore a
    # system trained by an earlier run and report seconds instead of minutes.
    env = project_env(RASA_MAX_CACHE_SIZE="0")
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        print(f"==> {system}", flush=True)
        child = subprocess.run(
            [sys.executable, "-m", "training.bench_intent", "--train", str(args.train), "--test", str(args.test),
             "--diet-epochs", str(args.diet_epochs), "--latency-messages", str(args.latency_messages),
             "--child", system, "--workdir", str(workdir)]
            + (["--ours-adapter", str(args.ours_adapter)] if args.ours_adapter else []),
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )
        found = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not found:
            print(f"{system} failed (exit {child.returncode})", file=sys.stderr)
            continue
        rows.append(json.loads(found[-1][len("RESULT "):]))
        print(json.dumps(rows[-1]), flush=True)

    text = table(rows, args.diet_epochs)
    print("\n" + text)
    (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
