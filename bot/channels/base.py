"""What every input channel of this project shares.

`DeskChannel` is mixed into the web, REST, Slack and Telegram channels: their
messages pass the handoff desk on their way to Rasa (`gated`), and the desk
can reach the customer on the channel they last wrote from
(`output_channel_for`), which is how an agent's reply arrives where the
customer is.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Optional

from rasa.core.channels.channel import OutputChannel, UserMessage
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint

from bot import rasa_shim
from bot.channels import api_guard, ingress
from bot.failures import close_kept_sessions
from bot.handoff.desk import OnNewMessage, desk_for
from bot.insight import experiments

logger = logging.getLogger(__name__)


def secret(credentials: Optional[dict], key: str, env: str) -> str:
    """A secret from credentials.yml (``key``) or, as the project prefers, the environment (``env``)."""
    value = (credentials or {}).get(key) or os.environ.get(env) or ""
    return str(value).strip()


def refuse_unsafe_production(app: Any) -> None:
    """Stop this Rasa server (exit 78) in production mode while a secret is missing or weak, naming each.

    Checked here, at server start, and not only by the launcher, so that
    `rasa run` started directly refuses too (`bot.security.mode`).
    """
    if getattr(app.ctx, "mode_checked", False):
        return
    from bot.security.mode import ProductionRefused, refuse_unsafe_start

    try:
        refuse_unsafe_start("the Rasa server")
    except ProductionRefused as exc:
        logger.error("%s", exc)
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(ProductionRefused.exit_code) from None
    app.ctx.mode_checked = True


class DeskChannel:
    """Mixin for an `InputChannel` whose messages pass the handoff desk."""

    app: Any = None

    def watch(self, blueprint: Blueprint) -> Blueprint:
        """Let `blueprint` tell this channel which server it runs in and give it the desk."""
        rasa_shim.install_or_exit()  # Rasa registers the channels before it starts or loads the model (see bot/rasa_shim.py)
        experiments.declared_or_exit("the Rasa server")  # a broken bot/experiments.yml: exit 2, naming what is wrong

        @blueprint.listener("before_server_start")
        async def remember_app(app, _loop) -> None:
            refuse_unsafe_production(app)  # first: a refused server loads nothing
            self.app = app
            desk_for(app)
            api_guard.install(app)  # Rasa's HTTP API: token in a header only; 400, not 500, for a malformed request
            ingress.install(app, getattr(blueprint.ctx, "sio", None))  # 429 per address and per credential: /webhooks/*, socket.io

        @blueprint.listener("before_server_stop")
        async def close_sessions(app, _loop) -> None:
            await close_kept_sessions()
            # the sentiment rows still waiting to be written (a few tenths of a second's worth)
            await asyncio.get_running_loop().run_in_executor(None, desk_for(app).sentiments.flush)

        return blueprint

    def gated(self, on_new_message: OnNewMessage) -> OnNewMessage:
        """`on_new_message` behind the handoff desk."""

        async def through_desk(message: UserMessage) -> None:
            if self.app is None:  # served outside a Rasa server (tests of the channel alone)
                await on_new_message(message)
                return
            await desk_for(self.app).receive(message, on_new_message)

        return through_desk

    # Whether this channel's customers see the handoff state drawn (a waiting banner with their place in the
    # queue: `send_handoff_state` on its output). The desk fetches a waiting conversation's tracker to push its
    # new place only on such a channel (`bot.handoff.delivery.Delivery.push_positions`).
    draws_handoff_state = False

    def output_channel_for(self, tracker: DialogueStateTracker) -> Optional[OutputChannel]:
        """An output channel that reaches the customer of `tracker` without a request of theirs; None if none."""
        return None
