"""Switch a running process to a newly promoted release, without a restart and without dropping a message.

    watcher = ReleaseWatcher("rasa", load)      # load(release) -> switch
    watcher.start()                              # on the process's event loop
    watcher.status()                             # for /health: version served, state, last error

`training.retrain` writes the release marker (`core.releases`) after every
promotion or rollback. Each serving process polls it every
``model_poll_seconds`` (settings); when its ``version`` differs from the one
served, the process's `Loader` runs on a worker thread of low CPU priority
(`LOADER_NICENESS`), off the event loop,
and builds everything the release needs *beside* what is served (the old
models keep answering meanwhile). It returns a `switch`, a quick function the
watcher then calls on the event loop: it puts the new models in service with
a reference assignment, so a message already on its way finishes with the
models it started with, and the next one gets the new ones.

When the loader fails, nothing is switched: the process keeps serving the
release it had, the state becomes ``reload_failed`` with the error (shown on
``/health``), and that version is not tried again (every publish is a new
version, so a fixed release is picked up). A marker that cannot be read is
reported the same way. Several replicas polling the same model folder each
switch within one poll interval plus their load time.

Every switch and every failure is handed to `on_reload` (the servers give
`audit_reload`: a row of the audit trail). This module knows nothing of Rasa: the Rasa server's loader is in
`bot.model_swap`, the action server's in `bot.action_server`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from core import metrics, releases
from core.releases import Release, ReleaseFileError
from core.serving import cancel_and_wait

logger = logging.getLogger(__name__)

Switch = Callable[[], None]
# Runs on a worker thread: loads what `release` needs beside what is served; returns the switch.
Loader = Callable[[Release], Switch]

# The loading thread's niceness: on a busy machine the kernel runs the threads answering customers
# first, and the new models load in the time left over.
LOADER_NICENESS = 10

WAITING = "no_release"  # nothing was ever promoted: the process serves what it started with
SERVING = "serving"
LOADING = "loading"
FAILED = "reload_failed"


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority to `LOADER_NICENESS` (Linux: a thread's own niceness)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICENESS)
    except (OSError, AttributeError) as exc:  # not Linux, or not allowed: load at normal priority
        logger.info("the release loader runs at normal priority (%s)", exc)


def audit_reload(event: Dict[str, Any]) -> None:
    """Append one reload to the audit trail (`core.audit`): ``model.reload`` or ``model.reload.failed``.

    The actor is the process (``rasa@host:pid``, ``actions@host:pid``), the
    target the release version, the detail the event (versions, seconds or
    error). The servers pass this as the watcher's `on_reload`; it runs on the
    watcher's thread, and a database that cannot take the row is logged with
    the event, never undoing the switch.
    """
    from core import audit, db

    action = "model.reload" if event.get("outcome") == "switched" else "model.reload.failed"
    actor = f"{event.get('process')}@{socket.gethostname()}:{os.getpid()}"
    audit.record(db.connect(), actor=actor, action=action, target=event.get("version"), detail=event)


class ReleaseWatcher:
    """Polls the release marker of one model folder and switches this process to each new version."""

    def __init__(self, process: str, load: Loader, model_dir: Union[str, Path, None] = None,
                 poll_seconds: Optional[float] = None, executor: Optional[Executor] = None,
                 on_reload: Optional[Callable[[Dict[str, Any]], None]] = None) -> None:
        """`process` names this kind of process in logs and metrics (``rasa``, ``actions``); `on_reload`
        is told of every reload attempt (the audit trail), succeeded or failed."""
        if poll_seconds is None:
            from core.settings import get_settings

            poll_seconds = get_settings().model_poll_seconds
        if poll_seconds <= 0:
            raise ValueError(f"model_poll_seconds must be above 0, got {poll_seconds}")
        self.process = process
        self.model_dir = model_dir
        self.poll_seconds = float(poll_seconds)
        self._load = load
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"release-{process}",
                                                        initializer=_lower_priority)
        self._on_reload = on_reload
        self.version: Optional[str] = None  # the release served (None: the one the process started with)
        self.state = WAITING
        self.error: Optional[str] = None
        self.failed_version: Optional[str] = None
        self.switched_at: Optional[float] = None
        self.load_seconds: Optional[float] = None
        self._task: Optional[asyncio.Task] = None

    # ------------------------------------------------------------ what /health shows
    def status(self) -> Dict[str, Any]:
        """The version served, the state (``no_release``, ``serving``, ``loading``, ``reload_failed``), the last error."""
        return {
            "version": self.version, "state": self.state, "error": self.error,
            "failed_version": self.failed_version, "switched_at": self.switched_at,
            "load_seconds": self.load_seconds, "poll_seconds": self.poll_seconds,
        }

    # ------------------------------------------------------------ one look at the marker
    async def check(self) -> bool:
        """Look at the marker once; load and switch when it names a new version. True when a switch happened."""
        try:
            release = releases.read(self.model_dir)
        except ReleaseFileError as exc:
            await self._fail(None, f"release marker unreadable: {exc}")
            return False
        if self.state == FAILED and self.failed_version is None:  # the marker is readable again
            self.state, self.error = (SERVING if self.version else WAITING), None
            metrics.RELOAD_FAILED.labels(self.process).set(0)
        if release is None or release.version in (self.version, self.failed_version):
            return False
        return await self._reload(release)

    async def _reload(self, release: Release) -> bool:
        loop = asyncio.get_running_loop()
        before, self.state = self.state, LOADING
        started = time.perf_counter()
        logger.info("%s: loading release %s (%s) beside release %s", self.process, release.version, release.action,
                    self.version or "at start")
        try:
            switch = await loop.run_in_executor(self._executor, self._load, release)
            switch()  # on the event loop: no message is between two models
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old models in service
            self.state = before
            await self._fail(release, f"{type(exc).__name__}: {exc}")
            metrics.RELOAD_SECONDS.labels(self.process, "failed").observe(time.perf_counter() - started)
            return False
        took = time.perf_counter() - started
        previous, self.version, self.state = self.version, release.version, SERVING
        self.error = self.failed_version = None
        self.switched_at, self.load_seconds = time.time(), took
        metrics.RELOAD_FAILED.labels(self.process).set(0)
        metrics.RELOADS.labels(self.process, "ok").inc()
        metrics.RELOAD_SECONDS.labels(self.process, "ok").observe(took)
        metrics.RELEASE.labels(self.process).info({"version": release.version, "action": release.action})
        logger.info("%s: now serving release %s (was %s), loaded in %.2fs", self.process, release.version,
                    previous or "at start", took)
        await self._tell({"process": self.process, "outcome": "switched", "version": release.version,
                          "previous": previous, "action": release.action, "seconds": round(took, 3)})
        return True

    async def _fail(self, release: Optional[Release], error: str) -> None:
        version = release.version if release is not None else None
        if self.state == FAILED and self.error == error[:500] and self.failed_version == version:
            return  # said once already (an unreadable marker is seen at every poll)
        self.state, self.error, self.failed_version = FAILED, error[:500], version
        metrics.RELOADS.labels(self.process, "failed").inc()
        metrics.RELOAD_FAILED.labels(self.process).set(1)
        logger.error("%s: release %s not loaded, still serving release %s: %s", self.process, version or "marker",
                     self.version or "at start", error)
        await self._tell({"process": self.process, "outcome": "failed", "version": version, "previous": self.version,
                          "error": self.error})

    async def _tell(self, event: Dict[str, Any]) -> None:
        """Hand `event` to `on_reload` on the watcher's thread (it may write to a database)."""
        if self._on_reload is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._safe_tell, event)

    def _safe_tell(self, event: Dict[str, Any]) -> None:
        try:
            self._on_reload(event)
        except Exception:  # noqa: BLE001 - the audit hook never undoes a switch
            logger.exception("%s: reload hook failed; not in the audit trail: %s", self.process, event)

    # ------------------------------------------------------------ the poll loop
    async def run(self) -> None:
        """Check every `poll_seconds` until cancelled; an unexpected error is logged and the loop goes on."""
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad look
                logger.exception("%s: checking the release marker failed", self.process)
            await asyncio.sleep(self.poll_seconds)

    def start(self) -> asyncio.Task:
        """Start polling on the running event loop (once; later calls return the same task)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"release-watcher-{self.process}")
        return self._task

    async def stop(self) -> None:
        """Stop polling (the server's shutdown)."""
        await cancel_and_wait(self._task)
        self._task = None
