"""Abuse limits at the door: per client address and per credential, before any channel reads a request.

Every request to ``/webhooks/*`` and to the socket.io path (the widget's
handshake and polling), and every socket.io event a widget sends, takes a
token from two buckets (`bot.ratelimit`):

- its client address: the connecting address, or, behind
  ``ingress_proxy_hops`` proxies that append to ``X-Forwarded-For``, the
  entry the outermost trusted proxy wrote (a client cannot choose it);
- its credential, when it has one: the REST caller's bearer token, hashed
  (never kept in clear).

An empty bucket answers 429 with ``Retry-After`` and a short reason (a
socket.io event is dropped and the widget told, at most once every 10 s), so
rotating sender ids from one address or one credential runs out, while the
per-customer limit (the handoff desk, keyed on the verified conversation id)
stays as it was. With ``lock_store_url`` set to Redis the buckets live
there, shared by every replica (one atomic Lua script per request); without
it, in this process.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.ratelimit import RateLimiter, SharedRateLimiter
from core.settings import lock_store_redis_options

logger = logging.getLogger(__name__)

LIMITED_PATHS = ("/webhooks/", "/socket.io")
NOTICE_EVERY_S = 10.0
SOCKET_NOTICE = "Too many messages are coming from your network, so I didn't read your last one. Please wait {s} s and send it again."


def client_address(peer: str, forwarded_for: Optional[str], proxy_hops: int) -> str:
    """The client's address: `peer`, or the X-Forwarded-For entry written by the outermost of `proxy_hops` trusted proxies."""
    if proxy_hops <= 0 or not forwarded_for:
        return peer or "unknown"
    hops = [part.strip() for part in forwarded_for.split(",") if part.strip()]
    if len(hops) < proxy_hops:
        return peer or "unknown"
    return hops[-proxy_hops]


def credential_key(authorization: Optional[str]) -> Optional[str]:
    """A key for the bearer credential in an Authorization header (its SHA-256, shortened), or None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).hexdigest()[:32]


class IngressLimits:
    """The per-address and per-credential buckets of one server."""

    def __init__(self, settings) -> None:
        self.proxy_hops = max(0, int(settings.ingress_proxy_hops))
        address = (settings.ingress_per_address_per_minute, settings.ingress_per_address_burst)
        credential = (settings.ingress_per_credential_per_minute, settings.ingress_per_credential_burst)
        self.shared = settings.lock_store_url.startswith(("redis://", "rediss://"))
        if self.shared:
            import redis.asyncio as aioredis

            # The password: in the URL, or (Helm, the launcher's endpoints) in ASSISTANT_LOCK_STORE_PASSWORD.
            client = aioredis.from_url(settings.lock_store_url, **lock_store_redis_options(settings.lock_store_url))
            prefix = f"{settings.lock_store_key_prefix or 'northwind'}:ingress"
            self.by_address = SharedRateLimiter(client, *address, prefix=f"{prefix}:address")
            self.by_credential = SharedRateLimiter(client, *credential, prefix=f"{prefix}:credential")
        else:
            self.by_address = _Local(RateLimiter(*address))
            self.by_credential = _Local(RateLimiter(*credential))
        self._noticed: "OrderedDict[str, float]" = OrderedDict()

    async def check(self, address: str, credential: Optional[str]) -> Optional[Tuple[str, int]]:
        """None when a request may pass, else (reason, seconds to wait)."""
        wait = await self.by_address.acquire(address)
        if wait > 0:
            return "too many requests from your address", max(1, math.ceil(wait))
        if credential:
            wait = await self.by_credential.acquire(credential)
            if wait > 0:
                return "too many requests with this credential", max(1, math.ceil(wait))
        return None

    def address_of(self, request: Request) -> str:
        return client_address(request.ip, request.headers.get("x-forwarded-for"), self.proxy_hops)

    def should_notify(self, sid: str) -> bool:
        """Whether to tell socket `sid` about a dropped event now (at most once every `NOTICE_EVERY_S`)."""
        now = time.monotonic()
        last = self._noticed.pop(sid, float("-inf"))
        self._noticed[sid] = now if now - last >= NOTICE_EVERY_S else last
        while len(self._noticed) > 10_000:
            self._noticed.popitem(last=False)
        return now - last >= NOTICE_EVERY_S


class _Local:
    """An in-process `RateLimiter` behind the same awaitable `acquire` as the shared one."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def acquire(self, key: str) -> float:
        return self.limiter.acquire(key)


def limits_of(app: Any) -> Optional[IngressLimits]:
    return getattr(app.ctx, "ingress_limits", None)


def _middleware(limits: IngressLimits):
    async def limit(request: Request) -> Optional[HTTPResponse]:
        if not request.path.startswith(LIMITED_PATHS):
            return None
        address = limits.address_of(request)
        refused = await limits.check(address, credential_key(request.headers.get("authorization")))
        if refused is None:
            return None
        reason, wait = refused
        metrics_refused(request.path)
        logger.warning("ingress limit: %s %s from %s refused (%s, retry in %ss)", request.method, request.path, address, reason, wait)
        return response.json({"error": f"{reason}; retry in {wait} s"}, status=429, headers={"Retry-After": str(wait)})

    return limit


def metrics_refused(path: str) -> None:
    try:
        from core import metrics

        channel = path.split("/")[2] if path.startswith("/webhooks/") else "web"
        metrics.RATE_LIMITED.labels(f"ingress:{channel or 'unknown'}").inc()
    except Exception:  # metrics are optional here
        pass


def guard_socketio(app: Any, sio: Any) -> None:
    """Put every socket.io event handler of `sio` (but connect/disconnect) behind the per-address bucket."""
    if getattr(sio, "_ingress_guarded", False):
        return
    sio._ingress_guarded = True
    handlers: Dict[str, Any] = sio.handlers.get("/", {})
    for event, handler in list(handlers.items()):
        if event in ("connect", "disconnect"):
            continue
        handlers[event] = _guarded_event(app, sio, event, handler)


def _guarded_event(app: Any, sio: Any, event: str, handler):
    async def guarded(sid, *args):
        limits = limits_of(app)
        if limits is not None:
            environ = sio.get_environ(sid) or {}
            request = environ.get("sanic.request")
            peer = request.ip if request is not None else environ.get("REMOTE_ADDR", "")
            address = client_address(peer, environ.get("HTTP_X_FORWARDED_FOR"), limits.proxy_hops)
            refused = await limits.check(address, None)
            if refused is not None:
                reason, wait = refused
                metrics_refused("/socket.io")
                if limits.should_notify(sid):
                    logger.warning("ingress limit: socket.io %s from %s dropped (%s)", event, address, reason)
                    await sio.emit("bot_uttered", {"text": SOCKET_NOTICE.format(s=wait), "notice": "rate_limited",
                                                   "retry_after": wait}, room=sid)
                return None
        return await handler(sid, *args)

    guarded.__wrapped__ = handler
    return guarded


def install(app: Any, sio: Any = None) -> None:
    """Add the ingress limits to the Rasa server's app (once), and to socket.io server `sio` when given."""
    if limits_of(app) is None:
        from core.settings import get_settings

        app.ctx.ingress_limits = IngressLimits(get_settings())
        app.register_middleware(_middleware(app.ctx.ingress_limits), "request")
    if sio is not None:
        guard_socketio(app, sio)
