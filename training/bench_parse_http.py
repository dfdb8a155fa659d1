"""Benchmark: parse latency through Rasa's HTTP API, one message at a time.

    python -m training.bench_parse_http --queries ../shared/data/banking77/test.csv

Each system's model is served by a real ``rasa run --enable-api`` (no
action server: ``/model/parse`` runs the NLU pipeline only) and sent
messages one at a time over one kept-alive connection: ``--warmup``
messages first (not timed), then ``--messages`` timed ones, real customer
questions sampled (seeded) from ``--queries``. Latency is measured by the
client, from sending the request to reading the whole answer, so it
includes Sanic, Rasa's graph and every component of the pipeline, intent
and entities included.

- ours: the served model (``--model``; default: the one `make run` serves,
  the release in force or the newest archive in ``models/``), trained from
  config.yml: the whole pipeline of the demo, retrieval and sentiment
  included.
  With ``--precisions auto,fp32`` it is served once per serving precision
  (``ASSISTANT_INFERENCE_PRECISION``; auto is bfloat16 where the CPU has
  it), and with ``--in-turn`` once more per precision with the pipeline's
  other models computed one after another instead of beside the
  classifier's pass (``ASSISTANT_PARSE_ALONGSIDE=0``, `core.serving.others_alongside`).
- stock-rasa-diet: Rasa's stock DIET pipeline (`training.bench_intent.stock_config`)
  trained in this run on the same NLU data (``--data``, default bot/data)
  with ``--diet-epochs``.
- rasa-floor: Rasa's floor. A pipeline that only splits words
  (WhitespaceTokenizer: microseconds a message), trained on the same data:
  what the HTTP API, Sanic and Rasa's graph cost before any model runs.

Writes a table and the raw figures under ``--out``.
"""
from __future__ import annotations

import argparse
import http.client
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from core.encoder import cpu_description
from core.files import write_text_atomically
from core.processes import die_with_parent, project_env, sigterm_as_interrupt
from core.records import read_csv
from core.settings import PROJECT_ROOT, get_settings
from training.bench_intent import stock_config

RASA = str(Path(sys.executable).with_name("rasa"))
SYSTEMS = ("ours", "stock-rasa-diet", "rasa-floor")
FLOOR_CONFIG = {"recipe": "default.v1", "language": "en", "pipeline": [{"name": "WhitespaceTokenizer"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_archive(model_dir: Path) -> Path:
    """The archive `make run` serves: the release in force, else the newest in `model_dir`."""
    from core import releases

    release = releases.read(model_dir)
    if release is not None and release.rasa_model and releases.archive_path(release.rasa_model).is_file():
        return releases.archive_path(release.rasa_model)
    archives = sorted(model_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not archives:
        raise SystemExit(f"no model archive in {model_dir}: run make run (or rasa train) first, or pass --model")
    return archives[-1]


def read_queries(path: Path, count: int, seed: int) -> List[str]:
    texts = [str(row["text"]) for _, row in read_csv(path, required=["text"])]
    if not texts:
        raise SystemExit(f"{path}: no questions")
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), count, replace=count > len(texts))]


class RasaServer:
    """`rasa run --enable-api` on one model, for the length of a `with` block."""

    def __init__(self, model: Path, workdir: Path, env: Dict[str, str], timeout: float = 600) -> None:
        self.model, self.workdir, self.timeout = model, workdir, timeout
        self.port, self.token = free_port(), secrets.token_hex(32)  # hex: never a leading "-" that argparse reads as an option
        self.env = dict(env, RASA_API_TOKEN=self.token)
        self.process: Optional[subprocess.Popen] = None
        self.log = workdir / f"rasa-{self.port}.log"

    def __enter__(self) -> "RasaServer":
        endpoints = self.workdir / "endpoints.yml"
        endpoints.write_text("{}\n", encoding="utf-8")
        self.process = subprocess.Popen(
            [RASA, "run", "--enable-api", "--auth-token", self.token, "--model", str(self.model), "--port",
             str(self.port), "--interface", "127.0.0.1", "--endpoints", str(endpoints)],
            cwd=PROJECT_ROOT, env=self.env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)
        try:
            self._wait_until_serving()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_serving(self) -> None:
        """Until /status answers 200. Rasa loads the model before it accepts a connection, so any other
        answer (409: "No agent loaded", the model failed to load) is final: raised with the log's tail."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rasa run exited {self.process.returncode}: {self._tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", f"/status?token={self.token}")
                answer = conn.getresponse()
                if answer.status == 200:
                    return
                raise RuntimeError(f"rasa run serves no model ({self.model}): /status answered {answer.status} "
                                   f"{answer.read()[:300]!r}; log: {self._tail()}")
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"rasa run did not answer /status within {self.timeout:.0f} s; log: {self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def time_parses(port: int, token: str, texts: Sequence[str], warmup: int) -> Dict[str, object]:
    """Latencies (ms) of `texts` after `warmup` untimed ones; errors counted; one connection kept alive."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, errors, entities = [], 0, 0
    for n, text in enumerate(texts):
        body = json.dumps({"text": text})
        started = time.perf_counter()
        conn.request("POST", f"/model/parse?token={token}", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        payload = answer.read()
        elapsed = (time.perf_counter() - started) * 1000
        if n < warmup:
            continue
        try:
            parsed = json.loads(payload)
            ok = answer.status == 200 and "intent" in parsed and "entities" in parsed
        except ValueError:
            ok = False
        if not ok:
            errors += 1
            continue
        entities += len(parsed["entities"])
        latencies.append(elapsed)
    conn.close()
    values = np.array(latencies) if latencies else np.array([float("nan")])
    return {"messages": len(latencies), "errors": errors, "entities": entities,
            "p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean())}


def train_stock(data: Path, workdir: Path, pipeline: Dict, name: str, env: Dict[str, str]) -> Path:
    """A Rasa NLU model of `pipeline` (a config.yml's content) trained on `data`, under `workdir/name`."""
    config = workdir / f"{name}-config.yml"
    config.write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
    out = workdir / f"{name}-models"
    subprocess.run([RASA, "train", "nlu", "--config", str(config), "--nlu", str(data), "--out", str(out),
                    "--quiet"], cwd=PROJECT_ROOT, env=env, check=True)
    return sorted(out.glob("*.tar.gz"))[-1]


def runs(systems: Sequence[str], precisions: str, in_turn: bool) -> List[tuple]:
    """(system, how its name is qualified, extra environment) for each server to start, in order."""
    from core.encoder import inference_precision

    out = []
    for system in systems:
        if system != "ours":
            out.append((system, "", {}))
            continue
        for precision in [p.strip() for p in precisions.split(",") if p.strip()]:
            name = inference_precision(precision)  # auto: what this CPU gets
            out.append((system, f" ({name})", {"ASSISTANT_INFERENCE_PRECISION": name}))
            if in_turn:
                out.append((system, f" ({name}, models in turn)",
                            {"ASSISTANT_INFERENCE_PRECISION": name, "ASSISTANT_PARSE_ALONGSIDE": "0"}))
    return out


def table(rows: Sequence[Dict]) -> str:
    lines = ["| system | messages | errors | p50 | p95 | p99 | mean |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['messages']} | {r['errors']} | {r['p50']:.1f} ms | {r['p95']:.1f} ms "
                     f"| {r['p99']:.1f} ms | {r['mean']:.1f} ms |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, default=Path("../shared/data/banking77/test.csv"))
    parser.add_argument("--model", type=Path, default=None, help="ours: a Rasa model archive (default: the served one)")
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT / "bot" / "data", help="NLU data DIET trains on")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--diet-epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precisions", default="auto", help="ours: comma-separated serving precisions (auto, bf16, fp32)")
    parser.add_argument("--in-turn", action="store_true",
                        help="ours: also served with the pipeline's models one after another (ASSISTANT_PARSE_ALONGSIDE=0)")
    parser.add_argument("--out", type=Path, default=Path("reports/parse_http"))
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    texts = read_queries(args.queries, args.warmup + args.messages, args.seed)
    env = project_env()
    print(f"{args.messages} messages (+{args.warmup} warm-up) from {args.queries}; {cpu_description()}", flush=True)
    rows = []
    # A killed benchmark stops its servers: SIGTERM unwinds the `with` blocks, and each server gets
    # SIGTERM from the kernel if this process dies some other way (die_with_parent).
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        work = Path(tmp)
        for system, variant, extra_env in runs(systems, args.precisions, args.in_turn):
            if system == "ours":
                model = args.model or served_archive(Path(get_settings().model_dir))
            else:
                pipeline = stock_config(args.diet_epochs) if system == "stock-rasa-diet" else FLOOR_CONFIG
                model = train_stock(args.data, work, pipeline, system, env)
            with RasaServer(model, work, dict(env, **extra_env)) as server:
                figures = time_parses(server.port, server.token, texts, args.warmup)
            rows.append({"system": system + variant, "model": str(model), "env": extra_env, **figures})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    report = table(rows)
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out / "parse_http.md", report + "\n")
    write_text_atomically(args.out / "parse_http.json", json.dumps(
        {"queries": str(args.queries), "cpu": cpu_description(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
