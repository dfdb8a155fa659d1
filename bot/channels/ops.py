"""Operations endpoints of the Rasa server: ``/metrics``, ``/health`` and ``/ready``.

An input channel (``bot.channels.ops.OpsChannel`` in ``bot/credentials.yml``)
only because that is how a Rasa server takes extra routes; it receives no
customer messages. Its blueprint is mounted at the root (its ``url_prefix``
is ``/``), where Prometheus and load balancers look:

- ``GET /metrics``: the Prometheus exposition of `core.metrics` (this
  process's metrics; the action server has its own at its ``/metrics``);
- ``GET /health``: every part the assistant needs, each with its status
  (``process``, ``model``, ``database``, ``tracker_store``,
  ``action_server``); 200 when all are ``ok``, 503 naming what failed; and
  ``release``: the release served (`core.hotswap`: version, state, last
  reload error). A reload that failed leaves the old models answering, so it
  shows there (state ``reload_failed`` and the error) without turning the
  server unhealthy;
- ``GET /ready``: 200 once a model is loaded and the server takes messages,
  503 before (no I/O: cheap enough to poll every second).

With ``METRICS_TOKEN`` set in the environment, the three answer only
requests with ``Authorization: Bearer <token>`` (401 otherwise); by default
they are open, like Rasa's own ``/`` and ``/version``: keep them off the
public network at the proxy.

Once the server has started, the channel polls the release marker
(`core.hotswap.ReleaseWatcher` with `bot.model_swap.rasa_loader`) and switches
the agent to each newly promoted Rasa model without a restart.

While the server starts, the channel also caps request bodies at
``max_request_bytes`` (Sanic answers 413 above it; Sanic's default is
100 MB), counts logged errors, and re-applies ``--logging-config-file``
after Rasa's coloredlogs set-up replaced its console handler (`core.logs`).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Text, Tuple
from urllib.parse import urlsplit, urlunsplit

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from core import logs, metrics
from core.hotswap import ReleaseWatcher, audit_reload
from core.settings import get_settings

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
HEALTH_CACHE_S = 2.0  # /health polled by several monitors does not multiply the checks


def _find_engine(store: Any) -> Any:
    """The SQLAlchemy engine under Rasa's (wrapped) tracker store, if it is an SQL one."""
    for _ in range(4):
        if store is None:
            return None
        if hasattr(store, "engine"):
            return store.engine
        store = getattr(store, "_tracker_store", None) or getattr(store, "tracker_store", None)
    return None


def _select_one(engine: Any) -> None:
    import sqlalchemy as sa

    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def _check_database() -> None:
    from core import db

    _select_one(db.connect())


class OpsChannel(InputChannel):
    """``/metrics``, ``/health`` and ``/ready`` at the root of the Rasa server."""

    def __init__(self, token: Text = "") -> None:
        self.token = token
        self.app: Any = None
        self._health: Optional[Tuple[float, int, Dict[str, Any]]] = None
        self.watcher: Optional[ReleaseWatcher] = None
        self.stall_watch = None  # core.stalls.StallWatch, started with the server

    @classmethod
    def name(cls) -> Text:
        return "ops"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "OpsChannel":
        logs.reapply_configured_logging()  # before the other channels log (again when the server starts)
        return cls(token=str((credentials or {}).get("token") or os.environ.get("METRICS_TOKEN") or "").strip())

    def url_prefix(self) -> Text:
        return "/"  # Rasa mounts a channel at urljoin("/webhooks/", url_prefix()): "/" is the root

    # ------------------------------------------------------------ checks
    def _authorised(self, request: Request) -> bool:
        if not self.token:
            return True
        given = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _agent(self) -> Any:
        agent = getattr(self.app.ctx, "agent", None) if self.app is not None else None
        return agent if agent is not None and agent.is_ready() else None

    async def _blocking(self, fn: Callable[..., None], *args: Any) -> str:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, fn, *args), CHECK_TIMEOUT_S)
            return "ok"
        except asyncio.TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:.0f}s"
        except Exception as exc:
            return f"error: {type(exc).__name__}: {logs.scrub(str(exc))[:300]}"

    async def _action_server(self, agent: Any) -> str:
        endpoint = getattr(agent, "action_endpoint", None) if agent is not None else None
        if endpoint is None or not getattr(endpoint, "url", None):
            return "not configured"
        parts = urlsplit(endpoint.url)
        url = urlunsplit((parts.scheme, parts.netloc, "/health", "", ""))
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url) as answer:
                    return "ok" if answer.status == 200 else f"error: {url} answered {answer.status}"
        except asyncio.TimeoutError:
            return f"error: {url} did not answer within {CHECK_TIMEOUT_S:.0f}s"
        except Exception as exc:
            return f"error: {url} unreachable ({type(exc).__name__})"

    async def health(self) -> Tuple[int, Dict[str, Any]]:
        """(HTTP status, body) of ``/health``: each part's status, 503 when one is not ok."""
        now = time.monotonic()
        if self._health and now - self._health[0] < HEALTH_CACHE_S:
            return self._health[1], self._health[2]
        agent = self._agent()
        checks: Dict[str, str] = {"process": "ok", "model": "ok" if agent is not None else "no model loaded"}
        engine = _find_engine(getattr(agent, "tracker_store", None)) if agent is not None else None
        database, tracker_store, action_server = await asyncio.gather(
            self._blocking(_check_database),
            self._blocking(_select_one, engine) if engine is not None else _constant("not an SQL store" if agent else "no model loaded"),
            self._action_server(agent),
        )
        checks.update(database=database, tracker_store=tracker_store, action_server=action_server)
        # "not configured" / "not an SQL store": nothing to check, not a failure.
        failed = sorted(k for k, v in checks.items() if v != "ok" and not v.startswith("not "))
        body = {"status": "ok" if not failed else "failing", "failed": failed, "checks": checks,
                "release": self.watcher.status() if self.watcher is not None else None}
        status = 200 if not failed else 503
        if failed:
            logger.warning("health check failing: %s", ", ".join(f"{k}: {checks[k]}" for k in failed))
        self._health = (now, status, body)
        return status, body

    # ------------------------------------------------------------ routes
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        ops = Blueprint("assistant_ops")

        @ops.listener("before_server_start")
        async def configure(app, _loop) -> None:
            self.app = app
            app.config.REQUEST_MAX_SIZE = get_settings().max_request_bytes
            logs.reapply_configured_logging()  # Sanic's app set-up configured its own loggers since
            metrics.count_logged_errors()

        @ops.listener("after_server_start")
        async def settle(app, _loop) -> None:
            # Rasa loads the model before the server starts: keep the GC off what it loaded.
            from core.serving import settle_heap

            settle_heap()  # its own full collection is start-up, not a pause anyone waits for
            metrics.watch_gc()
            stall_ms = get_settings().loop_stall_ms
            if stall_ms > 0:  # what holds the loop, logged with its stack (core/stalls.py)
                from core.stalls import StallWatch

                self.stall_watch = StallWatch(stall_ms / 1000, "rasa")
                self.stall_watch.start()
            from bot.model_swap import rasa_loader

            self.watcher = ReleaseWatcher("rasa", rasa_loader(lambda: getattr(app.ctx, "agent", None)),
                                          on_reload=audit_reload)
            self.watcher.start()

        @ops.listener("before_server_stop")
        async def stop_watching(_app, _loop) -> None:
            if self.watcher is not None:
                await self.watcher.stop()
            if self.stall_watch is not None:
                await self.stall_watch.stop()

        @ops.route("/metrics", methods=["GET"])
        async def scrape(request: Request) -> HTTPResponse:
            if not self._authorised(request):
                return response.json({"error": "send Authorization: Bearer <METRICS_TOKEN>"}, status=401)
            body, content_type = metrics.metrics_response_body()
            return response.raw(body, headers={"Content-Type": content_type})

        @ops.route("/health", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            if not self._authorised(request):
                return response.json({"error": "send Authorization: Bearer <METRICS_TOKEN>"}, status=401)
            status, body = await self.health()
            return response.json(body, status=status)

        @ops.route("/ready", methods=["GET"])
        async def ready(request: Request) -> HTTPResponse:
            if not self._authorised(request):
                return response.json({"error": "send Authorization: Bearer <METRICS_TOKEN>"}, status=401)
            if self._agent() is None:
                return response.json({"ready": False, "reason": "no model loaded yet"}, status=503)
            return response.json({"ready": True})

        return ops


async def _constant(value: str) -> str:
    return value
