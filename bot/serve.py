"""Start the assistant: train what is missing, run the action server and the Rasa server.

    python -m bot.serve            # what `make run` calls
    python -m bot.serve --retrain  # retrain the Rasa model first

Prints the URLs once both answer; Ctrl-C (SIGINT) or SIGTERM stops both.
The same `Assistant` class starts the real servers for the end-to-end tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from core.settings import PROJECT_ROOT, get_settings

PYTHON = sys.executable
RASA = str(Path(PYTHON).with_name("rasa"))


def newest_model(model_dir: Path) -> Optional[Path]:
    """The newest Rasa model archive in `model_dir`, if any."""
    archives = sorted(Path(model_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return archives[-1] if archives else None


def run_step(args: List[str], env: Dict[str, str], what: str) -> None:
    """Run one preparation command, failing loudly with what it was for."""
    print(f"==> {what}", flush=True)
    result = subprocess.run(args, cwd=PROJECT_ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed (exit {result.returncode}): {' '.join(args)}")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def prepare(env: Dict[str, str], config: Path, model_dir: Path, retrain: bool = False) -> Path:
    """Build the answer index, the recommender and the Rasa model when missing."""
    settings_env = {k: v for k, v in env.items() if k.startswith("ASSISTANT_")}
    index_dir = Path(settings_env.get("ASSISTANT_INDEX_DIR", get_settings().index_dir))
    rec_dir = Path(settings_env.get("ASSISTANT_RECOMMENDER_DIR", get_settings().recommender_dir))
    if _has_module("training.build_index") and not index_dir.exists():
        run_step([PYTHON, "-m", "training.build_index", "--out", str(index_dir)], env, "building the answer index")
    if _has_module("training.train_recommender") and not rec_dir.exists():
        if _has_module("training.generate_demo_customers"):
            run_step([PYTHON, "-m", "training.generate_demo_customers"], env, "generating synthetic demo customers")
        run_step([PYTHON, "-m", "training.train_recommender", "--out", str(rec_dir)], env, "training the recommender")
    model = newest_model(model_dir)
    if model is None or retrain:
        run_step(
            [RASA, "train", "--config", str(config), "--domain", "bot/domain", "--data", "bot/data", "--out", str(model_dir), "--quiet"],
            env,
            "training the Rasa model (intent adapter inside)",
        )
        model = newest_model(model_dir)
    if model is None:
        raise SystemExit(f"no model archive in {model_dir} after training")
    return model


def wait_until_up(url: str, process: subprocess.Popen, timeout: float, name: str) -> None:
    """Poll `url` until it answers 200, or fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer at {url} within {timeout:.0f}s")


class Assistant:
    """The running pair of servers (action server and Rasa server)."""

    def __init__(self, model: Path, env: Dict[str, str], rasa_port: int, action_port: int, workdir: Path, credentials: Path, log_dir: Optional[Path] = None):
        self.model, self.env, self.workdir = model, env, workdir
        self.rasa_port, self.action_port = rasa_port, action_port
        self.credentials = credentials
        self.log_dir = log_dir
        self.processes: List[subprocess.Popen] = []
        self.url = f"http://localhost:{rasa_port}"

    def endpoints_file(self) -> Path:
        """endpoints.yml for this run: action server port, tracker store from settings."""
        source = PROJECT_ROOT / "bot" / "endpoints.yml"
        template = (yaml.safe_load(source.read_text()) if source.exists() else None) or {}
        template["action_endpoint"] = {"url": f"http://localhost:{self.action_port}/webhook"}
        tracker_db = self.env.get("ASSISTANT_TRACKER_DB")
        if tracker_db:
            template["tracker_store"] = {"type": "SQL", "dialect": "sqlite", "db": tracker_db}
        path = self.workdir / "endpoints.yml"
        path.write_text(yaml.safe_dump(template))
        return path

    def _spawn(self, args: List[str], name: str) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.log", "ab") if self.log_dir else None
        process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True)
        self.processes.append(process)
        return process

    def start(self, timeout: float = 240) -> "Assistant":
        """Start both servers and wait until they answer."""
        actions = self._spawn([RASA, "run", "actions", "--actions", "bot.actions", "--port", str(self.action_port)], "actions")
        wait_until_up(f"http://localhost:{self.action_port}/health", actions, timeout, "action server")
        args = [
            RASA, "run", "--model", str(self.model), "--port", str(self.rasa_port),
            "--endpoints", str(self.endpoints_file()), "--credentials", str(self.credentials),
            "--enable-api", "--cors", self.env.get("ASSISTANT_CORS_ORIGINS", f"http://localhost:{self.rasa_port}"),
        ]
        if self.env.get("RASA_API_TOKEN"):  # Rasa's HTTP API answers only with this token
            args += ["--auth-token", self.env["RASA_API_TOKEN"]]
        server = self._spawn(args, "rasa")
        wait_until_up(f"{self.url}/webhooks/rest/", server, timeout, "Rasa server")
        return self

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL after 15 s)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="retrain the Rasa model even if one exists")
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "config.yml")
    args = parser.parse_args(argv)
    settings = get_settings()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    (PROJECT_ROOT / "var").mkdir(exist_ok=True)
    model = prepare(env, args.config, Path(settings.model_dir), args.retrain)
    credentials = PROJECT_ROOT / "bot" / "credentials.yml"
    assistant = Assistant(model, env, settings.rasa_port, settings.action_port, Path(tempfile.mkdtemp(prefix="assistant-")), credentials)
    stop = {"now": False}

    def _stop(signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        assistant.start()
        print("\nNorthwind Bank assistant is up:")
        print(f"  web chat   {assistant.url}/webhooks/web/")
        print(f"  agent inbox {assistant.url}/webhooks/inbox/")
        print(f"  REST API   {assistant.url}/webhooks/rest/webhook")
        print(f"  Slack      {assistant.url}/webhooks/slack/webhook")
        print(f"  Telegram   {assistant.url}/webhooks/telegram/webhook")
        print(f"  actions    http://localhost:{settings.action_port}/health")
        print("Press Ctrl-C to stop.", flush=True)
        while not stop["now"] and all(p.poll() is None for p in assistant.processes):
            time.sleep(0.5)
        for process in assistant.processes:
            if process.poll() is not None:
                print(f"a server exited with code {process.returncode}; stopping", file=sys.stderr)
    finally:
        assistant.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
