"""Telegram: the bot's webhook, answered with inline keyboards.

Rasa's standard path, ``/webhooks/telegram/webhook``. Telegram repeats the
secret token given to ``setWebhook`` in the ``X-Telegram-Bot-Api-Secret-Token``
header of every update; an update without the right one gets 401 and never
reaches the assistant. Without a bot token and a secret token the channel
refuses everything (and says so at start).

Suggestions and other buttons become inline keyboard rows; the rating is a
row with a thumbs up and a thumbs down. Telegram allows 64 bytes of
``callback_data``, too little for payloads such as
``/select_suggestion{"item_id": "..."}``, so a button carries a short digest
of its payload and a press is looked up among the buttons the assistant
offered in that chat (nothing to store, and a press can only send a payload
that was offered). Every press is answered (``answerCallbackQuery``) so the
customer's client stops its spinner.

Outbound calls go to ``api_base_url`` (``TELEGRAM_API_BASE_URL``; Telegram's
own by default) so that tests can point them at a local Bot API stand-in.
Secrets come from the environment: ``TELEGRAM_TOKEN`` and
``TELEGRAM_SECRET_TOKEN``; ``TELEGRAM_VERIFY`` is the bot's username (its
@-mentions are taken out of group messages). With ``TELEGRAM_WEBHOOK_URL``
set, the webhook is registered with Telegram at start.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Text

from aiogram import Bot
from aiogram.bot.api import TelegramAPIServer
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Update
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.telegram import TelegramInput as RasaTelegramInput, TelegramOutput as RasaTelegramOutput
from rasa.shared.core.events import BotUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.base import DeskChannel, secret
from bot.security import identity
from bot.channels.replies import RATE_ANSWER, BotReply, parse_payload

logger = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org"
NAMESPACE = "telegram:"  # conversation ids telegram:<chat>, customer ids telegram:<user>
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT_LIMIT = 4096
CALLBACK_PREFIX = "p:"


def callback_data(payload: str) -> str:
    """The short digest a button carries instead of its payload (24 bytes, within Telegram's 64)."""
    digest = hashlib.sha256(payload.encode("utf-8")).digest()[:16]
    return CALLBACK_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def payload_for_callback(data: str, events) -> Optional[str]:
    """The payload of the offered button whose digest is `data`, newest offers first."""
    if not data.startswith(CALLBACK_PREFIX):
        return None
    for event in reversed(list(events)):
        if isinstance(event, BotUttered):
            for key in ("buttons", "quick_replies"):
                for button in event.data.get(key) or []:
                    payload = button.get("payload") if isinstance(button, dict) else None
                    if isinstance(payload, str) and hmac.compare_digest(callback_data(payload), data):
                        return payload
    return None


def inline_keyboard(reply: BotReply) -> Optional[InlineKeyboardMarkup]:
    """One row per choice, then the rating row; None when there is nothing to press."""
    markup = InlineKeyboardMarkup()
    for button in (*reply.buttons, *reply.quick_replies):
        markup.row(InlineKeyboardButton(button.title[:64], callback_data=callback_data(button.payload)))
    if reply.rating:
        thumbs = [
            InlineKeyboardButton(title, callback_data=callback_data(reply.rating.payload_for(choice)))
            for choice, title in (("up", "👍"), ("down", "👎"))
            if reply.rating.payload_for(choice)
        ]
        markup.row(*thumbs)
    return markup if markup.inline_keyboard else None


def telegram_text(reply: BotReply) -> str:
    """The message text (an agent's messages say who wrote them)."""
    text = reply.text or ("Please choose:" if (reply.buttons or reply.quick_replies) else "Was this answer helpful?")
    if reply.agent:
        text = f"{reply.agent} (Northwind Bank): {text}"
    return text[:TEXT_LIMIT]


def chat_of(conversation_id: Text) -> Text:
    """The Telegram chat id of conversation ``telegram:<chat>``."""
    return conversation_id[len(NAMESPACE):] if conversation_id.startswith(NAMESPACE) else conversation_id


class TelegramOutput(RasaTelegramOutput):
    """Sends messages with inline keyboards through the Bot API at a configurable address."""

    def __init__(self, access_token: Text, api_base_url: Text = TELEGRAM_API) -> None:
        Bot.__init__(self, access_token, server=TelegramAPIServer.from_base(api_base_url))

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """One ``sendMessage`` per bot message (and ``sendPhoto`` for an image) to the chat of ``telegram:<chat>``."""
        reply = BotReply.from_message(message)
        if reply.is_empty:
            return
        recipient_id = chat_of(recipient_id)
        if reply.text or reply.buttons or reply.quick_replies or reply.rating:
            await self.send_message(recipient_id, telegram_text(reply), reply_markup=inline_keyboard(reply))
        if reply.image:
            await self.send_photo(recipient_id, reply.image)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        """Send plain text."""
        await self.send_response(recipient_id, {"text": text})


class TelegramInput(DeskChannel, RasaTelegramInput):
    """Rasa's Telegram channel with the secret-token check, inline keyboards and a configurable API address."""

    @classmethod
    def name(cls) -> Text:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}
        return cls(
            access_token=secret(credentials, "access_token", "TELEGRAM_TOKEN"),
            verify=credentials.get("verify") or os.environ.get("TELEGRAM_VERIFY") or "",
            webhook_url=credentials.get("webhook_url") or os.environ.get("TELEGRAM_WEBHOOK_URL") or "",
            secret_token=secret(credentials, "secret_token", "TELEGRAM_SECRET_TOKEN"),
            api_base_url=credentials.get("api_base_url") or os.environ.get("TELEGRAM_API_BASE_URL") or TELEGRAM_API,
        )

    def __init__(
        self,
        access_token: Text,
        verify: Text = "",
        webhook_url: Text = "",
        secret_token: Text = "",
        api_base_url: Text = TELEGRAM_API,
    ) -> None:
        super().__init__(access_token, verify, webhook_url, debug_mode=False)
        self.secret_token = secret_token
        self.api_base_url = api_base_url
        self._output: Optional[TelegramOutput] = None
        self._tasks: Set[asyncio.Task] = set()
        if not (access_token and secret_token):
            logger.warning(
                "Telegram channel refuses every update: set TELEGRAM_TOKEN and TELEGRAM_SECRET_TOKEN to use it"
            )

    @property
    def enabled(self) -> bool:
        """Whether the channel can check updates and answer them."""
        return bool(self.access_token and self.secret_token)

    def get_output_channel(self) -> TelegramOutput:
        """The bot, created once in the server's event loop (Rasa's registers the webhook here; we do it at start)."""
        if self._output is None:
            self._output = TelegramOutput(self.access_token, self.api_base_url)
        return self._output

    def output_channel_for(self, tracker: DialogueStateTracker) -> Optional[OutputChannel]:
        """The bot (the conversation id is the chat id)."""
        return self.get_output_channel() if self.enabled else None

    def is_authentic(self, request: Request) -> bool:
        """The update carries our secret token (an unset token trusts nothing)."""
        given = request.headers.get(SECRET_HEADER, "")
        return self.enabled and hmac.compare_digest(given.encode("utf-8"), self.secret_token.encode("utf-8"))

    def _text_of(self, text: str) -> str:
        if self.verify:  # "@northwind_bot what is ..." in a group
            text = re.sub(rf"@{re.escape(self.verify)}\b", "", text, flags=re.IGNORECASE)
        return text.replace("/bot", "").strip()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """Health check and the webhook; registers the webhook with Telegram at start when asked to."""
        telegram = self.watch(Blueprint("project_telegram", __name__))
        deliver = self.gated(on_new_message)

        @telegram.listener("after_server_start")
        async def register_webhook(_app, _loop) -> None:
            if self.enabled and self.webhook_url:
                try:
                    await self.get_output_channel().request(
                        "setWebhook", {"url": self.webhook_url, "secret_token": self.secret_token}
                    )
                    logger.info("Telegram webhook registered: %s", self.webhook_url)
                except Exception as exc:
                    logger.error("could not register the Telegram webhook %s: %s", self.webhook_url, exc)

        @telegram.listener("after_server_stop")
        async def close_bot(_app, _loop) -> None:
            if self._output is not None:
                await self._output.session.close()  # Bot.close() is the Bot API's "close", not ours

        @telegram.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @telegram.route("/webhook", methods=["GET", "POST"])
        async def webhook(request: Request) -> HTTPResponse:
            if request.method != "POST":
                return response.text("Telegram posts to this address.", status=HTTPStatus.METHOD_NOT_ALLOWED)
            if not self.is_authentic(request):
                return response.text(f"missing or wrong {SECRET_HEADER}", status=HTTPStatus.UNAUTHORIZED)
            try:
                body = json.loads(request.body)
                update = Update(**body) if isinstance(body, dict) else None
            except Exception:  # any field aiogram cannot read (e.g. a date out of range: OSError) is a malformed update
                update = None
            if update is None:
                return response.text("the body must be a Telegram update (a JSON object)", status=HTTPStatus.BAD_REQUEST)
            try:
                return await self._handle(update, request, deliver)
            except (AttributeError, TypeError, KeyError, ValueError, RecursionError, OverflowError):
                return response.text("malformed Telegram update", status=HTTPStatus.BAD_REQUEST)

        return telegram

    async def _handle(self, update: Update, request: Request, deliver) -> HTTPResponse:
        bot = self.get_output_channel()
        if update.callback_query is not None:
            query = update.callback_query
            chat = query.message.chat if query.message is not None else None
            if chat is None or not isinstance(query.data, str):
                return response.text("callback without a chat or data", status=HTTPStatus.BAD_REQUEST)
            sender = f"{NAMESPACE}{chat.id}"
            payload = await self._payload_for(sender, query.data)
            parsed = parse_payload(payload) if payload else None
            thanks = "Thanks for your feedback!" if parsed and parsed[0] == RATE_ANSWER else None
            self._later(self._answer_callback(bot, query.id, None if payload else "This button has expired.", thanks))
            if payload is None:
                return response.text("unknown button; answered")
            text = payload
            user = query.from_user.id if query.from_user is not None else chat.id
        else:
            message = update.message or update.edited_message
            if message is None or message.chat is None:
                return response.text("not a message; ignored")
            if not isinstance(message.text, str) or not message.text.strip():
                return response.text("only text messages are read; ignored")
            sender = f"{NAMESPACE}{message.chat.id}"
            text = self._text_of(message.text)
            user = message.from_user.id if message.from_user is not None else message.chat.id
        # The chat is the conversation, the Telegram user the customer: both vouched for by the secret token.
        customer = f"{NAMESPACE}{user}"
        try:
            identity.link_at_ingress(sender, customer, "telegram", "telegram")
        except identity.IdentityConflict:
            pass  # a group chat: linked to its first writer; each message still names its own author below
        metadata = {"channel": "telegram", "customer_id": customer, "chat_id": chat_of(sender)}
        self._later(deliver(UserMessage(text, bot, sender, input_channel=self.name(), metadata=metadata)))
        return response.text("success")

    async def _payload_for(self, sender: str, data: str) -> Optional[str]:
        agent = getattr(self.app.ctx, "agent", None) if self.app is not None else None
        if agent is None or agent.tracker_store is None:
            return None
        tracker = await agent.tracker_store.retrieve_full_tracker(sender)
        return payload_for_callback(data, tracker.events) if tracker else None

    @staticmethod
    async def _answer_callback(bot: TelegramOutput, query_id: str, alert: Optional[str], thanks: Optional[str]) -> None:
        try:
            await bot.answer_callback_query(query_id, text=alert or thanks)
        except Exception as exc:
            logger.warning("could not answer a Telegram button press: %s", exc)

    def _later(self, coroutine: Awaitable[Any]) -> None:
        # Answer Telegram at once; the assistant may take longer than its patience.
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a Telegram update failed: %s", task.exception())
