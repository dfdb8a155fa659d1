"""Cost per message against the conversation's length: CPU per message at turn 5, 50 and 200.

    python -m bot.bench_turns --conversations 12 --turns 200
    python -m bot.bench_turns --systems ours --baseline HEAD~3     # before/after in the same run

A Rasa server keeps the whole conversation: a policy that re-reads it on
every prediction, or a tracker save that rewrites it, costs more the longer
the customer talks. This benchmark holds `--conversations` customers in
conversation with one server, one message at a time (closed loop: the next
message goes when the previous one is answered), and advances them together,
one turn each per round, to `--turns` turns. The server's CPU time is read
from /proc before and after each round, so "CPU ms at turn t" is the Rasa
server's CPU for turn t of every conversation divided by the messages (the
mean over a window of `--window` rounds centred on t, because the kernel
counts CPU in 10 ms ticks). The action server's CPU and each message's
latency are reported beside it.

The conversations are the load benchmark's (`bot.bench_load`): held-out
utterances and answer-history questions in greetings, questions, the
lost-card form, thanks and goodbyes, one script after another, never the
same message twice within ten (a customer who repeats a question is handed to
a person, and this measures the assistant). A customer handed to a person
anyway (the NLU read a question as a request for one) presses the queue
notice's "stop waiting" button next and goes on; the report counts those
handoffs.

Each system gets fresh servers and a fresh SQLite tracker store, started by
the load benchmark's launcher, one after the other in the same run: ours
(config.yml, this project's stores and policies), stock Rasa (its default
pipeline and policies, its own SQL tracker store) and, with ``--baseline
REV``, this project at an earlier revision (its own model trained from its
config.yml in a worktree).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from bot.bench_load import (
    _stock_assistant_class, checkout, child_pids, conversation_scripts, cpu_seconds, free_port, train_stock,
)
from bot.serve import Assistant, prepare
from core.encoder import cpu_description
from core.processes import project_env
from core.settings import PROJECT_ROOT, get_settings

HANDOFF_MARK = "in the queue"  # every handoff notice names the customer's place in the queue (bot/handoff/notices.py)
CANCEL = "/cancel_handoff"  # the queue notice's button


def long_script(rng: random.Random, turns: int) -> List[str]:
    """`turns` messages of one customer: the load benchmark's scripts one after another, no repeat within ten."""
    messages: List[str] = []
    while len(messages) < turns:
        script = conversation_scripts(rng, 1)[0]
        for _ in range(50):
            if len(set(script)) == len(script) and not set(script) & set(messages[-10:]):
                break
            script = conversation_scripts(rng, 1)[0]
        messages.extend(script)
    return messages[:turns]


def post(url: str, sender: str, text: str, timeout: float) -> List[Dict[str, Any]]:
    body = json.dumps({"sender": sender, "message": text}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"[]")


def converse(url: str, scripts: Dict[str, List[str]], rasa_pids: Sequence[int], action_pids: Sequence[int],
             timeout: float) -> Dict[str, Any]:
    """Advance every conversation one turn per round; CPU and latency per round."""
    turns = min(len(s) for s in scripts.values())
    rounds = []
    handed: set = set()
    waiting: set = set()
    handoffs = 0
    first_handoffs: List[Dict[str, Any]] = []
    errors = 0
    for turn in range(turns):
        rasa0, actions0 = cpu_seconds(rasa_pids), cpu_seconds(action_pids)
        latencies = []
        for sender, messages in scripts.items():
            # A customer handed to a person presses the queue notice's "stop waiting" button next,
            # so the conversation goes on with the assistant (what this measures).
            text = CANCEL if sender in waiting else messages[turn]
            waiting.discard(sender)
            began = time.perf_counter()
            try:
                replies = post(url, sender, text, timeout)
            except Exception:
                errors += 1
                replies = []
            latencies.append(1000 * (time.perf_counter() - began))
            if not replies:
                errors += 1
            if any(HANDOFF_MARK in str(r.get("text") or "") for r in replies):
                waiting.add(sender)
                handoffs += 1
            if sender not in handed and any(HANDOFF_MARK in str(r.get("text") or "") for r in replies):
                handed.add(sender)
                first_handoffs.append({"sender": sender, "turn": turn + 1, "messages": messages[max(0, turn - 3):turn + 1],
                                       "reply": [r.get("text") for r in replies]})
        n = len(scripts)
        rounds.append({
            "turn": turn + 1,
            "rasa_cpu_ms": 1000 * (cpu_seconds(rasa_pids) - rasa0) / n,
            "action_cpu_ms": 1000 * (cpu_seconds(action_pids) - actions0) / n,
            "latency_ms": statistics.mean(latencies),
        })
        if (turn + 1) % 25 == 0:
            print(f"    turn {turn + 1}: Rasa CPU {rounds[-1]['rasa_cpu_ms']:.1f} ms/msg, "
                  f"latency {rounds[-1]['latency_ms']:.0f} ms", flush=True)
    return {"rounds": rounds, "handed_over": len(handed), "handoffs": handoffs, "first_handoffs": first_handoffs, "errors": errors}


def at_turn(rounds: List[Dict[str, Any]], turn: int, window: int, key: str) -> float:
    """Mean of `key` over the `window` rounds centred on `turn` (clipped to the run)."""
    lo = max(1, turn - window // 2)
    hi = min(len(rounds), lo + window - 1)
    lo = max(1, hi - window + 1)
    return statistics.mean(r[key] for r in rounds[lo - 1:hi])


def run_system(name: str, servers_class, model: Path, credentials: Path, scripts: Dict[str, List[str]],
               workdir: Path, timeout: float, env_extra: Optional[Dict[str, str]] = None,
               warmup: int = 200) -> Dict[str, Any]:
    run_dir = workdir / name.replace(" ", "-").replace("(", "").replace(")", "")
    run_dir.mkdir(parents=True, exist_ok=True)
    env = project_env(
        ASSISTANT_DATABASE_URL=f"sqlite:///{run_dir / 'assistant.db'}",
        ASSISTANT_TRACKER_DB=str(run_dir / "tracker.db"),
        ASSISTANT_ENV="demo", ASSISTANT_INGRESS_PER_ADDRESS_PER_MINUTE="0",
        # One customer sends here a message every few hundred milliseconds, far above the
        # per-customer limit that stops a flooding script; this measures the work, not the limit.
        ASSISTANT_RATE_LIMIT_PER_MINUTE="0",
        **(env_extra or {}),
    )
    env.pop("RASA_API_TOKEN", None)
    servers = servers_class(model, env, free_port(), free_port(), run_dir, credentials, log_dir=run_dir)
    print(f"==> {name}: starting the servers", flush=True)
    servers.start(timeout=600)
    url = f"{servers.url}/webhooks/rest/webhook"
    try:
        # Warm-up outside the measured conversations: the traced models settle on the message
        # lengths they see during their first calls, which would otherwise land on the first turns.
        rng = random.Random(-1)
        for i in range(warmup // 20 + 1):
            for text in long_script(rng, min(20, warmup)):
                post(url, f"warm-{i}", text, timeout)
        rasa_pids = child_pids(servers.processes[-1].pid)
        action_pids = [pid for p in servers.processes[:-1] for pid in child_pids(p.pid)]
        print(f"==> {name}: {len(scripts)} conversations of {min(map(len, scripts.values()))} turns", flush=True)
        result = converse(url, scripts, rasa_pids, action_pids, timeout)
    finally:
        servers.stop()
    result["system"] = name
    result["load_avg"] = os.getloadavg()[0]
    return result


def run_baseline(tree: Path, revision: str, args, workdir: Path) -> Dict[str, Any]:
    """The same conversations against this project at `revision`, by this benchmark run from that tree."""
    out = workdir / "baseline.json"
    env = project_env(pythonpath=f"{tree}{os.pathsep}{PROJECT_ROOT}")
    # This file drives the old tree: its own launcher, config and policies, with this protocol.
    command = [sys.executable, str(Path(__file__).resolve()), "--systems", "ours", "--conversations",
               str(args.conversations), "--turns", str(args.turns), "--seed", str(args.seed), "--json", str(out),
               "--name", f"ours@{revision}", "--timeout", str(args.timeout),
               "--precision", args.precision, "--warmup", str(args.warmup)]
    if args.baseline_model:
        command += ["--model", str(args.baseline_model)]
    subprocess.run(command, cwd=str(tree), env=env, check=True)
    return json.loads(out.read_text())[0]


def table(rows: List[Dict[str, Any]], turns: Sequence[int], window: int) -> str:
    head = " | ".join(f"turn {t}" for t in turns)
    lines = [
        f"Rasa server CPU ms per message at each turn (mean over {window} rounds around it); "
        "latency ms at the same turns; action server CPU ms per message.",
        "",
        f"| system | {head} | turn {turns[-1]} / turn {turns[0]} | latency ms ({', '.join(map(str, turns))}) | "
        f"action CPU ms ({', '.join(map(str, turns))}) | handoffs (conversations) | errors | load avg |",
        "|---|" + "---:|" * len(turns) + "---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        cpu = [at_turn(r["rounds"], t, window, "rasa_cpu_ms") for t in turns]
        lat = [at_turn(r["rounds"], t, window, "latency_ms") for t in turns]
        act = [at_turn(r["rounds"], t, window, "action_cpu_ms") for t in turns]
        r["at_turn"] = {str(t): {"rasa_cpu_ms": c, "latency_ms": l, "action_cpu_ms": a}
                        for t, c, l, a in zip(turns, cpu, lat, act)}
        lines.append(
            f"| {r['system']} | " + " | ".join(f"{c:.1f}" for c in cpu) + f" | {cpu[-1] / max(cpu[0], 1e-9):.2f} | "
            + " / ".join(f"{v:.0f}" for v in lat) + " | " + " / ".join(f"{v:.1f}" for v in act)
            + f" | {r['handoffs']} ({r['handed_over']}) | {r['errors']} | {r['load_avg']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--at", default="5,50,200", help="the turns to report")
    parser.add_argument("--window", type=int, default=5, help="rounds averaged around each reported turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=200, help="messages from other customers before measuring")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--systems", default="ours,stock",
                        help="comma list: ours, ours-fp32 (our models in float32, as on a CPU without bfloat16), stock")
    parser.add_argument("--model", type=Path, help="our Rasa model archive (default: newest in models/, trained if none)")
    parser.add_argument("--stock-model", type=Path, help="a trained stock model archive (default: train one)")
    parser.add_argument("--baseline", help="also run this git revision of the project, in the same run")
    parser.add_argument("--baseline-model", type=Path, help="with --baseline: the archive it serves (default: trained there)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="our models' serving precision (fp32: as on a CPU without bfloat16)")
    parser.add_argument("--name", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "turns")
    args = parser.parse_args(argv)

    turns = [int(t) for t in args.at.split(",") if t.strip()]
    rng = random.Random(args.seed)
    scripts = {f"turns-{args.seed}-{i:03d}": long_script(rng, args.turns) for i in range(args.conversations)}
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    env = project_env()
    workdir = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    rows: List[Dict[str, Any]] = []
    try:
        for name in systems:
            if name in ("ours", "ours-fp32"):
                model = args.model or prepare(env, PROJECT_ROOT / "config.yml", Path(get_settings().model_dir))
                precision = "fp32" if name == "ours-fp32" else args.precision
                label = args.name if name == "ours" else f"{args.name} (fp32)"
                rows.append(run_system(label, Assistant, model, PROJECT_ROOT / "bot" / "credentials.yml",
                                       scripts, workdir, args.timeout, {"ASSISTANT_INFERENCE_PRECISION": precision},
                                       warmup=args.warmup))
            elif name == "stock":
                model = args.stock_model
                if model is None:  # trained once, kept beside the report for the next run (--stock-model)
                    args.out.mkdir(parents=True, exist_ok=True)
                    model = Path(shutil.copy(train_stock(workdir, None), args.out / "stock-model.tar.gz"))
                credentials = workdir / "stock_credentials.yml"
                credentials.write_text("rest:\n")
                rows.append(run_system("stock-rasa", _stock_assistant_class(), model, credentials, scripts, workdir,
                                       args.timeout, warmup=args.warmup))
            else:
                parser.error(f"unknown system {name!r}")
        if args.baseline:
            tree = checkout(args.baseline, workdir)
            try:
                rows.append(run_baseline(tree, args.baseline, args, workdir))
            except subprocess.CalledProcessError as exc:  # the other rows are still reported
                print(f"==> the baseline {args.baseline} failed: {exc}", flush=True)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=str(PROJECT_ROOT))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, default=str))
        return 0
    report = f"CPU: {cpu_description()}; precision {args.precision}\n\n" + table(rows, turns, args.window)
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turns.md").write_text(report + "\n")
    (args.out / "turns.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
