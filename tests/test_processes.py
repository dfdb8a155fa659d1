"""core.processes: a benchmark's servers stop with it, however it is stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core.processes import project_env, sigterm_as_interrupt
from core.settings import PROJECT_ROOT


def test_sigterm_inside_the_block_unwinds_it_like_ctrl_c_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    stopped = []
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler runs before this returns
            finally:
                stopped.append(True)  # what a `with RasaServer(...)` block's exit does
    assert stopped == [True]
    assert signal.getsignal(signal.SIGTERM) == before


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_server_started_with_die_with_parent_goes_when_its_starter_is_killed(tmp_path):
    pid_file = tmp_path / "server.pid"
    starter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        from core.processes import die_with_parent
        server = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent, start_new_session=True)
        open({str(pid_file)!r}, "w").write(str(server.pid))
        time.sleep(60)
    """)], env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        server = int(pid_file.read_text())
        assert _alive(server)
        starter.kill()  # SIGKILL: no handler of the starter's own runs
        starter.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(server)
    finally:
        starter.kill()



def test_children_get_the_project_importable_the_hubs_off_and_rasa_s_telemetry_off(monkeypatch):
    monkeypatch.delenv("RASA_TELEMETRY_ENABLED", raising=False)
    env = project_env(EXTRA="1")
    assert env["RASA_TELEMETRY_ENABLED"] == "false"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["PYTHONPATH"] == str(PROJECT_ROOT) and env["EXTRA"] == "1"
    assert project_env(pythonpath="/elsewhere")["PYTHONPATH"] == "/elsewhere"
    monkeypatch.setenv("RASA_TELEMETRY_ENABLED", "true")  # asked for by whoever runs it: kept
    assert project_env()["RASA_TELEMETRY_ENABLED"] == "true"


def test_the_launcher_starts_rasa_with_its_telemetry_off(monkeypatch):
    from bot import serve

    monkeypatch.delenv("RASA_TELEMETRY_ENABLED", raising=False)
    monkeypatch.setenv("ASSISTANT_ENV", "local")
    monkeypatch.delenv("ASSISTANT_ENCRYPTION_KEY", raising=False)
    seen = {}

    def prepare(env, *args, **kwargs):  # the environment training and both servers get
        seen.update(env)
        raise SystemExit(7)

    monkeypatch.setattr(serve, "prepare", prepare)
    with pytest.raises(SystemExit):
        serve.main([])
    assert seen["RASA_TELEMETRY_ENABLED"] == "false"


def test_everything_make_starts_has_rasa_s_telemetry_off():
    env = {k: v for k, v in os.environ.items() if k not in ("RASA_TELEMETRY_ENABLED", "MAKEFLAGS", "MAKELEVEL")}
    shown = subprocess.run(["make", "-s", "--no-print-directory", "--eval",
                            "show-telemetry: ; @echo \"$$RASA_TELEMETRY_ENABLED\"", "show-telemetry"],
                           cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert shown.stdout.strip() == "false", shown.stderr


def test_a_process_that_imports_the_project_has_rasa_s_telemetry_off_unless_set():
    env = {k: v for k, v in os.environ.items() if k != "RASA_TELEMETRY_ENABLED"}
    show = [sys.executable, "-c", "import core, os, rasa.telemetry as t; print(os.environ['RASA_TELEMETRY_ENABLED'], t.is_telemetry_enabled())"]
    assert subprocess.run(show, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.split() == ["false", "False"]
    env["RASA_TELEMETRY_ENABLED"] = "true"
    assert subprocess.run(show, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.split() == ["true", "True"]
