"""Child processes of the benchmarks and tests: servers that never outlive the run that started them."""
from __future__ import annotations

import contextlib
import os
import signal
from typing import Dict, Iterator, Optional

from core.settings import PROJECT_ROOT


def die_with_parent() -> None:
    """In a server's process (`preexec_fn`): SIGTERM when the process that started it dies, so a
    killed test or benchmark leaves no server behind (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside the block, as Ctrl-C does, so that the `with` and
    `finally` clauses of a benchmark stop every server it started; the old handler comes back after."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Rasa reports usage to Segment and its own exceptions (their messages can quote a customer's text) to
# Sentry unless told not to; a self-hosted assistant sends nothing out by default.
TELEMETRY_ENV = "RASA_TELEMETRY_ENABLED"


def project_env(pythonpath: Optional[str] = None, **extra: str) -> Dict[str, str]:
    """This process's environment for a child process of the project (a Rasa server, a training
    step, a benchmark's server): the project importable (`pythonpath`, default the project root),
    the model hubs off (everything is loaded from local folders), Rasa's telemetry and crash
    reports off unless RASA_TELEMETRY_ENABLED is set, then `extra`."""
    env = dict(os.environ, PYTHONPATH=pythonpath or str(PROJECT_ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.setdefault(TELEMETRY_ENV, "false")
    env.update(extra)
    return env
