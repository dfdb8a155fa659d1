"""Rasa's REST channel for trusted servers, behind the handoff desk and strict about its input.

Same path and JSON as Rasa's (``POST /webhooks/rest/webhook`` with
``{"sender": ..., "message": ..., "metadata": {...}}``, answered with the
list of bot messages). A body that is not such an object gets 400 with the
reason, never a 500. REST cannot push, so while a conversation is with an
agent the agent's messages come back with the customer's next message.

Only trusted server-to-server callers may post: ``Authorization: Bearer
<token>`` of a caller in ``REST_CALLER_TOKENS`` or the ``api_callers`` table
(`bot.security.callers`), else 401 with the reason. ``sender`` is the customer
id the caller vouches for (`bot.security.identity.CUSTOMER_ID`); the
conversation is ``rest:<caller>:<sender>``, so two callers never share one,
and the customer id is ``<sender>``. The client's ``metadata.customer_id`` and
``metadata.channel`` are dropped: the channel sets them. In demo mode only, a
request without credential is caller ``demo``.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Text, Tuple

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.base import DeskChannel
from bot.security import identity
from bot.security.callers import CallerRefused, CallerRegistry

logger = logging.getLogger(__name__)


def read_rest_body(request: Request) -> Tuple[Optional[Dict[Text, Any]], Optional[Text]]:
    """(sender, message, metadata) from a REST request, or (None, why it is refused)."""
    try:
        body = json.loads(request.body or b"")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's JSON reader goes
        return None, "the body must be JSON"
    if not isinstance(body, dict):
        return None, "the body must be a JSON object"
    sender, text, metadata = body.get("sender"), body.get("message"), body.get("metadata")
    if not isinstance(sender, (str, int)) or isinstance(sender, bool) or not str(sender).strip():
        return None, "'sender' must be a non-empty string"
    if not identity.CUSTOMER_ID.match(str(sender)):
        return None, "'sender' must be a customer id: 1-128 letters, digits, '_', '.', '@' or '-'"
    if not isinstance(text, str):
        return None, "'message' must be a string"
    if metadata is not None and not isinstance(metadata, dict):
        return None, "'metadata' must be an object"
    # The channel says who the customer is and where they wrote from, never the client.
    kept = {key: value for key, value in (metadata or {}).items() if key not in ("customer_id", "channel")}
    return {"sender": str(sender), "message": text, "metadata": kept}, None


class RestOutput(CollectingOutputChannel):
    """Rasa's collected messages, plus who wrote them (``agent``) and desk notices (``notice``)."""

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """Collect `message` as Rasa does and keep its author."""
        before = len(self.messages)
        await super().send_response(recipient_id, dict(message))
        for key in ("agent", "notice"):
            if isinstance(message.get(key), str):
                for collected in self.messages[before:]:
                    collected[key] = message[key]


class RestInput(DeskChannel, RasaRestInput):
    """``/webhooks/rest/webhook``: one request, the bot's messages in the response."""

    @classmethod
    def name(cls) -> Text:
        return "rest"

    callers: Optional[CallerRegistry] = None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """Health check and webhook."""
        rest = self.watch(Blueprint("project_rest", __name__))
        deliver = self.gated(on_new_message)
        if self.callers is None:  # tests give one with their own database
            self.callers = CallerRegistry()

        @rest.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @rest.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            began = time.perf_counter()
            reply = await answer(request)
            # How long the server worked on this request once its handler ran (W3C Server-Timing): a
            # client's latency beyond it was spent reaching the handler (the listen queue, the event loop).
            reply.headers["Server-Timing"] = f"handler;dur={(time.perf_counter() - began) * 1000:.1f}"
            return reply

        async def answer(request: Request) -> HTTPResponse:
            try:
                caller = self.callers.caller_for(request.headers.get("Authorization"), demo=identity.is_demo())
            except CallerRefused as refused:
                return response.json({"error": str(refused)}, status=401, headers={"WWW-Authenticate": "Bearer"})
            body, problem = read_rest_body(request)
            if body is None:
                return response.json({"error": problem}, status=400)
            conversation_id = f"rest:{caller}:{body['sender']}"
            try:
                identity.link_at_ingress(conversation_id, body["sender"], "rest", f"rest:{caller}")
            except identity.IdentityConflict:  # cannot happen with derived ids; refuse rather than mix customers
                return response.json({"error": "this conversation belongs to another customer"}, status=403)
            metadata = {**body["metadata"], "channel": "rest", "customer_id": body["sender"], "rest_caller": caller}
            collector = RestOutput()
            try:
                await deliver(UserMessage(body["message"], collector, conversation_id, input_channel=self.name(), metadata=metadata))
            except Exception:  # the customer still gets what was said before the failure
                logger.exception("REST message for %s could not be handled", conversation_id)
            retry_after = getattr(collector, "retry_after", None)  # set by the desk's rate limit or admission gate
            if retry_after:
                status = getattr(collector, "retry_status", 429)  # 503: the server is busy, not this caller too fast
                return response.json(collector.messages, status=status, headers={"Retry-After": str(retry_after)})
            return response.json(collector.messages)

        return rest
