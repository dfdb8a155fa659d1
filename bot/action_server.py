"""The action server: Rasa SDK's server for bot.actions, on a chosen address, answering only Rasa.

    python -m bot.action_server --actions bot.actions --port 5055 [--host 127.0.0.1]

What `rasa run actions` starts, with two differences:

- it listens on ``--host`` (default: the ``bind_host`` setting, 127.0.0.1, so
  a local run is reachable from this machine only; the container sets
  0.0.0.0), where the SDK's own runner listens on every interface;
- every request but ``GET /health`` and ``GET /metrics`` (counts only) must carry header
  ``X-Action-Secret`` equal to ``ACTION_SERVER_SECRET`` (compared in
  constant time), or is refused 401 with the reason. Rasa sends the header
  from ``action_endpoint: headers:`` in endpoints.yml, which the launcher
  writes as ``${ACTION_SERVER_SECRET}`` (never the value). Without the
  secret set, the server answers nobody (and production refuses to start).

``GET /health`` answers ``{"status": "ok", "release": {...}}``: the release
this process serves (`core.hotswap`: version, state, the version that failed
to load and when it last switched; `PUBLIC_RELEASE_FIELDS`). The endpoint is
open, so the text of a reload error (which names files) is not there: it is
in the log and the audit trail, and ``assistant_reload_failed`` is 1. The
server polls the release marker (`core.releases`, every ``model_poll_seconds``)
and, when a new version is promoted or rolled back, loads the recommender
again on a worker thread and switches to it in one assignment
(`bot.actions.suggestions.use_recommender`); a recommender that fails to load
leaves the old one in service, and ``/health`` says so (state
``reload_failed``) while still answering 200.

Before it answers anything, ``/health`` included, it loads the recommender
and the sentence encoder and embeds the domain's intents as topics
(`warm_up`), so no customer's request waits for a model to load.

In production mode (``ASSISTANT_ENV=production``) it refuses to start while
the secret is missing or weak (`bot.security.mode`).
"""
from __future__ import annotations

import argparse
import hmac
import logging
import os
import sys
import time
from typing import Any, List, Optional

from bot.model_swap import keep_out_of_collections
from core.hotswap import Loader, ReleaseWatcher, Switch, audit_reload
from core.releases import Release

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

logger = logging.getLogger(__name__)

HEADER = "X-Action-Secret"
OPEN_PATHS = ("/health", "/metrics")
# What the open /health says of the release served: no error text (it names files on the server).
PUBLIC_RELEASE_FIELDS = ("version", "state", "failed_version", "switched_at")


def secret_refusal(presented: Optional[str], secret: str) -> Optional[str]:
    """Why a request is refused (None: `presented` is the secret)."""
    if not secret:
        return "the action server has no ACTION_SERVER_SECRET set, so it answers nobody"
    if not presented:
        return f"missing {HEADER} header"
    if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), secret.encode()):
        return f"wrong {HEADER}"
    return None


def install_secret_check(app, secret: str) -> None:
    """Refuse, 401, every request to `app` without the shared secret (but /health and /metrics)."""

    async def check_secret(request: Request) -> Optional[HTTPResponse]:
        if request.method == "GET" and request.path in OPEN_PATHS:
            return None
        problem = secret_refusal(request.headers.get(HEADER), secret)
        if problem is None:
            return None
        logger.warning("action server refused %s %s from %s: %s", request.method, request.path, request.ip, problem)
        return response.json({"error": problem}, status=401)

    app.register_middleware(check_secret, "request")


def recommender_loader() -> Loader:
    """The action server's `core.hotswap.Loader`: a new recommender from the live folder, switched in one assignment.

    A process that has not loaded its recommender yet has nothing to switch:
    it loads the live one on first use.
    """
    from bot.actions import suggestions

    def load(_release: Release) -> Switch:
        if suggestions.loaded_recommender() is None:
            return lambda: None
        model = suggestions._load_recommender()

        def switch() -> None:
            suggestions.use_recommender(model)
            keep_out_of_collections()  # as the Rasa server's swap does (`bot.model_swap`)

        return switch

    return load


def install_release_watcher(app: Any, watcher: ReleaseWatcher) -> None:
    """Poll the release marker while `app` runs, and answer ``GET /health`` with the release served."""

    async def start(_app, _loop) -> None:
        watcher.start()

    async def stop(_app, _loop) -> None:
        await watcher.stop()

    async def health(request: Request) -> Optional[HTTPResponse]:
        if request.method == "GET" and request.path == "/health":
            status = watcher.status()
            return response.json({"status": "ok", "release": {k: status[k] for k in PUBLIC_RELEASE_FIELDS}})
        return None

    app.register_listener(start, "after_server_start")
    app.register_listener(stop, "before_server_stop")
    app.register_middleware(health, "request")


def warm_up() -> None:
    """Load what the actions need (the recommender, its encoder, the domain's topics) before answering anything.

    Loaded lazily, the encoder cost the first request that needed it several
    seconds and the process a 250 MB step in the middle of a soak run. The
    launcher waits for ``/health``, so this delays only the start.
    """
    from bot.actions.suggestions import warm_up as warm_suggestions
    from core.domain import domain_intents

    started = time.monotonic()
    try:
        topics = domain_intents()
    except Exception as exc:  # a broken domain file is Rasa's to report; the topics then embed on first use
        logger.warning("could not read the domain's intents to warm the recommender: %s", exc)
        topics = []
    embedded = warm_suggestions(topics)
    logger.info("warmed the recommender (%d topics embedded) in %.1f s", embedded, time.monotonic() - started)


# Seconds the action server keeps an idle kept-alive connection open. Above the 15 s for which the
# Rasa server's client (aiohttp's connector default) reuses one: with Sanic's default of 5 s the
# client sent calls down connections the server had just closed, and each failed with "Cannot
# write to closing transport" (ClientOSError); the customer was asked to send the message again.
# Seen in the load benchmark at 30 msg/s while a profiler slowed the Rasa server's event loop (it
# then reads the server's close late): 8 apologies in a minute (tests/test_action_keepalive.py).
KEEP_ALIVE_TIMEOUT_S = 75


def keep_connections_open(app) -> None:
    """Keep idle connections from the Rasa server open longer than its client reuses them (see above)."""
    app.config.KEEP_ALIVE_TIMEOUT = KEEP_ALIVE_TIMEOUT_S


def settle_after_start(app) -> None:
    """Once the server runs, move what `warm_up` loaded out of the garbage collector's sight, and time its pauses.

    The same as the Rasa server does (`core.serving.settle_heap`, in
    `bot.channels.ops`). Without it every full collection of this process
    walked the 470,000 objects that the recommender, the sentence encoder and
    the SDK leave alive, 237 ms each on an AMD EPYC (`python -m bot.bench_gc`),
    while every action call waited. The pauses are on this server's
    ``/metrics`` as ``assistant_gc_pause_seconds{generation}``.
    """

    async def settle(_app, _loop) -> None:
        from core import metrics
        from core.serving import settle_heap

        settle_heap()
        metrics.watch_gc()

    app.register_listener(settle, "after_server_start")


def main(argv: Optional[List[str]] = None) -> int:
    from rasa_sdk import utils
    from rasa_sdk.constants import APPLICATION_ROOT_LOGGER_NAME
    from rasa_sdk.endpoint import create_app, create_argument_parser, create_ssl_context
    from rasa_sdk.plugin import plugin_manager

    from bot.security.mode import ProductionRefused, refuse_unsafe_start
    from core.settings import get_settings

    parser = create_argument_parser()
    parser.add_argument("--host", default=None, help="address to listen on (default: the bind_host setting, 127.0.0.1)")
    # The SDK spells it --logging-config_file; `rasa run actions` and the launcher say --logging-config-file.
    parser.add_argument("--logging-config-file", dest="logging_config_file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        refuse_unsafe_start("the action server", checks=("action_server",))
    except ProductionRefused as exc:
        print(exc, file=sys.stderr)
        return ProductionRefused.exit_code
    from core.crypto import EncryptionKeyError, check_key

    try:
        check_key()  # a malformed key stops the action server too, not only the Rasa server
    except EncryptionKeyError as exc:
        print(f"cannot start the action server: {exc}", file=sys.stderr)
        return 2
    from bot.insight.experiments import ExperimentConfigError, declared

    try:
        declared()  # a broken bot/experiments.yml stops the start, naming the experiment and field
    except ExperimentConfigError as exc:
        print(f"cannot start the action server: {exc}", file=sys.stderr)
        return 2

    logging.getLogger("matplotlib").setLevel(logging.WARN)
    utils.configure_colored_logging(args.loglevel)
    utils.configure_file_logging(logging.getLogger(APPLICATION_ROOT_LOGGER_NAME), args.log_file, args.loglevel,
                                 args.logging_config_file)
    utils.update_sanic_log_level()

    secret = (os.environ.get("ACTION_SERVER_SECRET") or "").strip()
    if not secret:
        logger.warning("ACTION_SERVER_SECRET is not set: the action server refuses every action call")
    app = create_app(args.actions, cors_origins=args.cors, auto_reload=args.auto_reload)
    # After create_app: importing bot.actions first, before the SDK's Sanic app exists, would keep
    # the package from starting its privacy worker (`bot.privacy.worker.start_in_background`).
    warm_up()
    install_secret_check(app, secret)
    keep_connections_open(app)
    settle_after_start(app)
    install_release_watcher(app, ReleaseWatcher("actions", recommender_loader(), on_reload=audit_reload))
    plugin_manager().hook.attach_sanic_app_extensions(app=app)
    ssl_context = create_ssl_context(args.ssl_certificate, args.ssl_keyfile, args.ssl_password)
    host = args.host or get_settings().bind_host
    logger.info("Action endpoint is up and running on %s://%s:%s", "https" if ssl_context else "http", host, args.port)
    app.run(host, args.port, ssl=ssl_context, workers=utils.number_of_sanic_workers())
    return 0


if __name__ == "__main__":
    sys.exit(main())
