"""Slack: Events API messages and interactive buttons, answered with Block Kit.

Rasa's standard path, ``/webhooks/slack/webhook``, for both the Events API
(JSON) and interactivity (form-encoded ``payload``). Every request must carry
Slack's signature (``X-Slack-Signature`` over ``v0:<timestamp>:<body>`` with
the app's signing secret, timestamp within five minutes); a missing, forged
or stale signature gets 401 and never reaches the assistant. Without a
signing secret the channel refuses everything (and says so at start).

Answers are Block Kit messages: the text, suggestion and other buttons as an
``actions`` block, and the rating as a thumbs up / thumbs down block.
Outbound calls go to ``api_base_url`` (``SLACK_API_BASE_URL``; Slack's own
by default) so that tests can point them at a local Slack stand-in.

Secrets come from the environment: ``SLACK_TOKEN`` (bot token) and
``SLACK_SIGNING_SECRET``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Text
from urllib.parse import parse_qs

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.slack import SlackBot, SlackInput as RasaSlackInput
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.base import DeskChannel, secret
from bot.security import identity
from bot.channels.replies import BotReply

logger = logging.getLogger(__name__)

SLACK_API = "https://slack.com/api/"
NAMESPACE = "slack:"  # conversation and customer ids slack:<user>
SECTION_LIMIT = 3000  # characters Slack accepts in one section's text
BUTTON_TITLE_LIMIT = 75


def _mrkdwn(text: str) -> str:
    # Slack's three control characters; everything else is shown as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _button(title: str, value: str, action_id: str) -> Dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": title[:BUTTON_TITLE_LIMIT] or "…", "emoji": True},
        "value": value[:2000],
    }


def slack_message(reply: BotReply) -> Dict[str, Any]:
    """``text`` (the notification fallback) and ``blocks`` for one bot message."""
    text = reply.text
    if reply.agent:
        text = f"*{_mrkdwn(reply.agent)}* (Northwind Bank): {_mrkdwn(text)}"
    else:
        text = _mrkdwn(text)
    blocks: List[Dict[str, Any]] = []
    if text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}})
    if reply.image:
        blocks.append({"type": "image", "image_url": reply.image, "alt_text": reply.text[:100] or "image"})
    choices = [*reply.buttons, *reply.quick_replies]
    for start in range(0, len(choices), 5):  # five to a row reads well; Slack allows 25
        blocks.append(
            {
                "type": "actions",
                "block_id": f"choices_{start // 5}",
                "elements": [
                    _button(b.title, b.payload, f"choice_{start + i}") for i, b in enumerate(choices[start : start + 5])
                ],
            }
        )
    if reply.rating:
        thumbs = [("up", "👍 Helpful"), ("down", "👎 Not helpful")]
        elements = [
            _button(title, reply.rating.payload_for(choice), f"rate_{choice}")
            for choice, title in thumbs
            if reply.rating.payload_for(choice)
        ]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "Was this answer helpful?"}]})
        blocks.append({"type": "actions", "block_id": "rating", "elements": elements})
    return {"text": text or "…", "blocks": blocks}


def user_of(conversation_id: Text) -> Text:
    """The Slack id inside conversation id ``slack:<id>`` (with granularity ``sender``, the user's DM)."""
    return conversation_id[len(NAMESPACE):] if conversation_id.startswith(NAMESPACE) else conversation_id


class SlackOutput(SlackBot):
    """Posts Block Kit messages through Slack's Web API at a configurable address."""

    def __init__(
        self,
        token: Text,
        api_base_url: Text = SLACK_API,
        slack_channel: Optional[Text] = None,
        thread_id: Optional[Text] = None,
        proxy: Optional[Text] = None,
    ) -> None:
        super().__init__(token, slack_channel, thread_id, proxy)
        self.client = AsyncWebClient(token, base_url=api_base_url, proxy=proxy)

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """One ``chat.postMessage`` per bot message."""
        reply = BotReply.from_message(message)
        if reply.is_empty:
            return
        await self._post_message(channel=self.slack_channel or user_of(recipient_id), **slack_message(reply))

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        """Send plain text."""
        await self.send_response(recipient_id, {"text": text})


class SlackInput(DeskChannel, RasaSlackInput):
    """Rasa's Slack channel with 401 for unsigned requests, Block Kit answers and a configurable API address."""

    @classmethod
    def name(cls) -> Text:
        return "slack"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}
        return cls(
            slack_token=secret(credentials, "slack_token", "SLACK_TOKEN"),
            slack_channel=credentials.get("slack_channel"),
            proxy=credentials.get("proxy"),
            use_threads=bool(credentials.get("use_threads", False)),
            slack_signing_secret=secret(credentials, "slack_signing_secret", "SLACK_SIGNING_SECRET"),
            conversation_granularity=credentials.get("conversation_granularity", "sender"),
            api_base_url=credentials.get("api_base_url") or os.environ.get("SLACK_API_BASE_URL") or SLACK_API,
        )

    def __init__(self, slack_token: Text, *args: Any, api_base_url: Text = SLACK_API, **kwargs: Any) -> None:
        self.api_base_url = api_base_url if api_base_url.endswith("/") else api_base_url + "/"
        kwargs.setdefault("slack_retry_reason_header", "x-slack-retry-reason")
        kwargs.setdefault("slack_retry_number_header", "x-slack-retry-num")
        super().__init__(slack_token, *args, **kwargs)
        self._tasks: Set[asyncio.Task] = set()

    def _validate_credentials(self) -> None:
        """No signing secret: the channel stays up but refuses every request."""
        if not self.slack_signing_secret:
            logger.warning("Slack channel refuses every request: set SLACK_SIGNING_SECRET (and SLACK_TOKEN) to use it")
        elif not self.slack_token:
            logger.warning("Slack channel cannot answer: set SLACK_TOKEN (the bot token)")

    def get_output_channel(self, channel: Optional[Text] = None, thread_id: Optional[Text] = None) -> OutputChannel:
        """Block Kit output to `channel` (default: the configured channel, else the customer's DM)."""
        return SlackOutput(self.slack_token, self.api_base_url, channel or self.slack_channel, thread_id, self.proxy)

    def output_channel_for(self, tracker: DialogueStateTracker) -> Optional[OutputChannel]:
        """Where the customer last wrote from (channel and thread), for an agent's reply."""
        latest = tracker.get_last_event_for(UserUttered)
        metadata = (latest.metadata if latest else None) or {}
        thread = metadata.get("thread_id") if self.use_threads else None
        return self.get_output_channel(metadata.get("out_channel"), thread)

    def is_request_from_slack_authentic(self, request: Request) -> bool:
        """Signed with our signing secret within the last five minutes (an unset secret trusts nothing)."""
        if not self.slack_signing_secret:
            return False
        return super().is_request_from_slack_authentic(request)

    def _conversation(self, user: Text, channel: Optional[Text], thread: Optional[Text]) -> Text:
        """``slack:<Rasa's conversation id>``, linked to customer ``slack:<user>`` (vouched for by Slack's signature)."""
        conversation = f"{NAMESPACE}{self._get_conversation_id(user, channel, thread)}"
        identity.link_at_ingress(conversation, f"{NAMESPACE}{user}", "slack", "slack")
        return conversation

    def _deliver_later(self, handler: Callable[[UserMessage], Awaitable[Any]], message: UserMessage) -> None:
        # Slack wants its answer within 3 seconds; the assistant may take longer.
        task = asyncio.create_task(handler(message))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a Slack message failed: %s", task.exception())

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """Health check and the signed webhook."""
        slack = self.watch(Blueprint("project_slack", __name__))
        deliver = self.gated(on_new_message)

        @slack.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @slack.route("/webhook", methods=["GET", "POST"])
        async def webhook(request: Request) -> HTTPResponse:
            if request.method != "POST":
                return response.text("Slack posts to this address.", status=HTTPStatus.METHOD_NOT_ALLOWED)
            if not self.is_request_from_slack_authentic(request):
                return response.text("missing, invalid or stale X-Slack-Signature", status=HTTPStatus.UNAUTHORIZED)
            if request.headers.get(self.retry_num_header) and request.headers.get(self.retry_reason_header) in self.errors_ignore_retry:
                return response.text("", status=HTTPStatus.CREATED, headers={"X-Slack-No-Retry": "1"})
            content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
            if content_type == "application/json":
                return self._event(request, deliver)
            if content_type == "application/x-www-form-urlencoded":
                return self._interaction(request, deliver)
            return response.text("unsupported content type", status=HTTPStatus.UNSUPPORTED_MEDIA_TYPE)

        return slack

    def _event(self, request: Request, deliver) -> HTTPResponse:
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's JSON reader goes
            return response.text("the body must be JSON", status=HTTPStatus.BAD_REQUEST)
        if not isinstance(body, dict):
            return response.text("the body must be a JSON object", status=HTTPStatus.BAD_REQUEST)
        if body.get("type") == "url_verification":
            return response.json({"challenge": str(body.get("challenge", ""))})
        event = body.get("event")
        if not isinstance(event, dict):
            return response.text("no event in the body", status=HTTPStatus.BAD_REQUEST)
        if not self._is_user_message(body) or not isinstance(event.get("text"), str) or not isinstance(event.get("user"), str):
            return response.text("not a user message; ignored")
        # Lists in Slack's events; anything else (a number, say) is ignored rather than iterated.
        authed = body.get("authed_users") if isinstance(body.get("authed_users"), list) else []
        authorizations = body.get("authorizations") if isinstance(body.get("authorizations"), list) else []
        users = authed or [a.get("user_id") for a in authorizations if isinstance(a, dict)][:1]
        metadata = {
            "channel": "slack",
            "out_channel": event.get("channel"),
            "thread_id": event.get("thread_ts", event.get("ts")),
            "users": [u for u in users if isinstance(u, str)],
        }
        if not self._is_supported_channel(body, metadata):
            return response.text("channel not supported; ignored")
        sender = self._conversation(event["user"], metadata["out_channel"], metadata["thread_id"])
        metadata["customer_id"] = f"{NAMESPACE}{event['user']}"
        text = self._sanitize_user_message(event["text"], metadata["users"])
        output = self.get_output_channel(metadata["out_channel"], metadata["thread_id"] if self.use_threads else None)
        self._deliver_later(deliver, UserMessage(text, output, sender, input_channel=self.name(), metadata=metadata))
        return response.text("")

    def _interaction(self, request: Request, deliver) -> HTTPResponse:
        try:
            fields = parse_qs(request.body.decode("utf-8"), strict_parsing=True)
            payload = json.loads(fields["payload"][0])
        except (ValueError, KeyError, UnicodeDecodeError, RecursionError):
            return response.text("the body must carry a JSON 'payload' field", status=HTTPStatus.BAD_REQUEST)
        if not isinstance(payload, dict) or not isinstance(payload.get("user"), dict) or not isinstance(payload.get("actions"), list):
            return response.text("the payload must name a user and its actions", status=HTTPStatus.BAD_REQUEST)
        action = payload["actions"][0] if payload["actions"] else None
        if not isinstance(action, dict) or not self._is_interactive_message(payload):
            return response.text("unsupported interaction", status=HTTPStatus.BAD_REQUEST)
        try:
            text = self._get_interactive_response(action)
        except (AttributeError, IndexError, KeyError, TypeError):  # e.g. a "selected_option" that is not an object
            return response.text("the action's value is malformed", status=HTTPStatus.BAD_REQUEST)
        user = payload["user"].get("id")
        if not isinstance(text, str) or not isinstance(user, str):
            return response.text("nothing to send; ignored")  # e.g. a link button
        channel = (payload.get("channel") or {}).get("id") if isinstance(payload.get("channel"), dict) else None
        message = payload.get("message") if isinstance(payload.get("message"), dict) else {}
        thread = message.get("thread_ts", message.get("ts"))
        metadata = {"channel": "slack", "out_channel": channel, "thread_id": thread, "users": [user], "customer_id": f"{NAMESPACE}{user}"}
        sender = self._conversation(user, channel, thread)
        output = self.get_output_channel(channel, thread if self.use_threads else None)
        self._deliver_later(deliver, UserMessage(text, output, sender, input_channel=self.name(), metadata=metadata))
        return response.text("")
