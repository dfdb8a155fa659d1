"""The website chat widget's channel: socket.io for the conversation, plus the pages.

Served by the Rasa server itself (``--credentials bot/credentials.yml``):

- ``/webhooks/web/``           a demo page of the bank's website with the widget;
- ``/webhooks/web/widget.js``  the widget, built from ``web/src`` by
  ``scripts/setup-web`` (socket.io-client bundled in; nothing from a CDN);
- ``/socket.io/``              the socket.io endpoint the widget talks to.

Any page embeds the widget with one tag::

    <script src="https://assistant.example/webhooks/web/widget.js"
            data-customer-token="<signed by your site>" async></script>

Socket.io events (client -> server): ``session_request`` {session_id,
customer_token}, ``user_uttered`` {message}, ``history_request``.
Server -> client: ``session_confirm`` (the conversation id), ``session_refused``
{reason}, ``bot_uttered`` (a `BotReply.as_widget_event`), ``typing`` {on},
``handoff_state`` {status, position, agent}, ``history`` {messages, handoff}.

Who the customer is (see `bot.security.identity`): the server decides, never
the page's word.

- A signed-in customer: ``customer_token`` is a JWT signed by the company's
  website (`bot.security.tokens`); the conversation is ``web:<sub>``. A token
  that is not believed gets ``session_refused`` with the reason, and no session.
- An anonymous visitor: the server issues ``web:anon-<32 random hex>``. The
  browser keeps it and presents it back as ``session_id``; it is taken back
  only if this server issued it and it has been used (linked at its first
  message), otherwise a new one is issued. 128 random bits: nobody can guess
  another visitor's.
- ``customer_id`` from the page is never read. In demo mode only, the demo page
  ``/webhooks/web/?customer=<id>`` signs in as that customer with a token
  minted by `bot.security.tokens.demo_token`; in any other mode
  ``?customer=`` is ignored.

The socket's conversation is bound to it on the server (socket.io's session);
``user_uttered`` and ``history_request`` only ever use that one.
"""
from __future__ import annotations

import html
import logging
import secrets
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Text

import engineio
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOInput
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncServer

from bot.channels.base import DeskChannel
from bot.security import identity
from bot.security.tokens import CustomerTokenError, TokenVerifier, demo_token
from bot.handoff.desk import desk_for
from bot.channels.replies import BotReply
from bot.channels.transcript import transcript
from core.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

WEB_ROOT = PROJECT_ROOT / "web"
WIDGET_BUNDLE = WEB_ROOT / "dist" / "widget.js"
DEMO_PAGE = WEB_ROOT / "pages" / "demo.html"
HISTORY_LIMIT = 200  # messages restored in the widget after a reload


class _EngineIOServer(engineio.AsyncServer):
    """engine.io that answers a client's bad packets with 400, never a hang or a 500.

    Two faults of python-engineio 4, found by tests/e2e/test_fuzz.py:

    - it drops a session whose client posted a packet it refuses (a PING,
      say: only the server sends those) by waiting until that client has
      fetched everything queued for it. Such a client never polls again, so
      its POST hung for ever, holding a connection. Here the session is
      closed without waiting, and the POST is answered 400;
    - a session its client closed (a CLOSE packet) stays listed until the
      next request for it, which then fails with a KeyError (500). Here such
      a session is forgotten first, so the request gets "Invalid session".
    """

    async def handle_request(self, *args, **kwargs):
        request = args[0] if args else None
        sid = request.args.get("sid") if hasattr(request, "args") else None
        socket = self.sockets.get(sid) if isinstance(sid, str) else None
        if socket is not None and socket.closed:
            self.sockets.pop(sid, None)
        return await super().handle_request(*args, **kwargs)

    async def disconnect(self, sid=None):
        if sid is None:
            return await super().disconnect()
        socket = self.sockets.get(sid)
        if socket is not None:
            await socket.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
            self.sockets.pop(sid, None)


def shared_rooms():
    """socket.io's Redis client manager on the lock store's Redis, or None (rooms in this process)."""
    from core.settings import get_settings, lock_store_redis_options

    settings = get_settings()
    if not settings.lock_store_url.startswith(("redis://", "rediss://")):
        return None
    from socketio import AsyncRedisManager

    return AsyncRedisManager(
        settings.lock_store_url,
        channel=f"{settings.lock_store_key_prefix or 'northwind'}:socketio",
        redis_options=lock_store_redis_options(settings.lock_store_url) or None,
    )


class _SocketIOServer(AsyncServer):
    def _engineio_server_class(self):
        return _EngineIOServer


class WebChatOutput(OutputChannel):
    """Sends bot messages, typing and handoff state to a widget session's room."""

    @classmethod
    def name(cls) -> Text:
        return "web"

    def __init__(self, sio: AsyncServer) -> None:
        self.sio = sio

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """One widget event per bot message: text, buttons, quick replies and rating together."""
        reply = BotReply.from_message(message)
        if reply.is_empty:
            return
        event = reply.as_widget_event(timestamp=message.get("timestamp") or time.time())
        await self.sio.emit("bot_uttered", event, room=recipient_id)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        """Send plain text."""
        await self.send_response(recipient_id, {"text": text})

    async def send_typing(self, recipient_id: Text, on: bool) -> None:
        """Show or hide the typing indicator."""
        await self.sio.emit("typing", {"on": on}, room=recipient_id)

    async def send_handoff_state(self, recipient_id: Text, state: Dict[Text, Any]) -> None:
        """Show whether the customer waits for, or talks to, a human."""
        await self.sio.emit("handoff_state", state, room=recipient_id)


class WebChatInput(DeskChannel, SocketIOInput):
    """The website widget's socket.io channel and its pages."""

    draws_handoff_state = True  # the widget's banner (WebChatOutput.send_handoff_state)

    @classmethod
    def name(cls) -> Text:
        return "web"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}
        return cls(socketio_path=credentials.get("socketio_path", "/socket.io"), title=credentials.get("title", "Northwind Bank"))

    def __init__(self, socketio_path: Text = "/socket.io", title: Text = "Northwind Bank", verifier: Optional[TokenVerifier] = None):
        super().__init__(session_persistence=True, socketio_path=socketio_path)
        self.title = title
        self.verifier = verifier or TokenVerifier.from_environment()
        if not self.verifier.enabled:
            logger.warning(
                "web widget: no WEB_CUSTOMER_TOKEN_SECRET or WEB_CUSTOMER_TOKEN_PUBLIC_KEY, so every visitor "
                "is anonymous (signed-in customers need a token signed by your website)"
            )

    # ------------------------------------------------------------- identity
    def session_for(self, data: Dict[Text, Any]) -> Dict[Text, Text]:
        """The conversation a ``session_request`` gets: {conversation_id, customer_id, verified_by}.

        Raises `CustomerTokenError` for a token that is not believed.
        """
        token = data.get("customer_token")
        if token:
            customer = self.verifier.verify(token)
            return {"conversation_id": f"web:{customer}", "customer_id": customer, "verified_by": "token"}
        presented = data.get("session_id")
        if (
            isinstance(presented, str) and identity.ANONYMOUS_CONVERSATION.match(presented)
            and identity.customer_of(presented) == presented  # issued here, used, and still anonymous
        ):
            conversation = presented
        else:
            conversation = f"web:anon-{secrets.token_hex(16)}"
        return {"conversation_id": conversation, "customer_id": conversation, "verified_by": "anonymous"}

    # ------------------------------------------------------------ blueprint
    def output_channel_for(self, tracker: DialogueStateTracker) -> Optional[OutputChannel]:
        """The widget session's room (every open tab of the conversation)."""
        return WebChatOutput(self.sio) if self.sio is not None else None

    def get_output_channel(self) -> Optional[OutputChannel]:
        """Rasa's API (``output_channel=latest``) reaches the widget too."""
        return WebChatOutput(self.sio) if self.sio is not None else None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> SocketBlueprint:
        """The socket.io events and the widget's HTTP routes."""
        # [] : any site may embed the widget. With several Rasa servers (a Redis lock store
        # configured), rooms are shared through Redis: an agent's reply sent by one server
        # reaches a widget connected to another.
        sio = _SocketIOServer(async_mode="sanic", cors_allowed_origins=[], client_manager=shared_rooms())
        self.sio = sio
        blueprint = self.watch(SocketBlueprint(sio, self.socketio_path, "web_chat", __name__))
        deliver = self.gated(on_new_message)

        @blueprint.route("/", methods=["GET"])
        async def demo_page(request: Request) -> HTTPResponse:
            return response.html(self.demo_page(request))

        @blueprint.route("/health", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok", "widget_built": WIDGET_BUNDLE.exists()})

        @blueprint.route("/widget.js", methods=["GET"])
        async def widget(_: Request) -> HTTPResponse:
            if not WIDGET_BUNDLE.exists():
                return response.text(
                    "The chat widget is not built: run scripts/setup-web (npm ci and build in web/).", status=404
                )
            return await response.file(
                WIDGET_BUNDLE, mime_type="application/javascript", headers={"Cache-Control": "no-cache"}
            )

        @sio.on("connect")
        async def connect(sid: Text, environ: Dict, auth: Optional[Dict] = None) -> bool:
            return True

        async def refuse(sid: Text, reason: Text) -> None:
            """No session for this socket (one it had is dropped, with its room), and why."""
            await sio.save_session(sid, {})
            for room in list(sio.rooms(sid)):
                if room != sid:
                    await sio.leave_room(sid, room)
            await sio.emit("session_refused", {"reason": reason}, room=sid)

        @sio.on("session_request")
        async def session_request(sid: Text, data: Any) -> None:
            data = data if isinstance(data, dict) else {}
            try:
                session = self.session_for(data)
            except CustomerTokenError as refused:
                logger.info("web widget: customer token refused (%s)", refused)
                await refuse(sid, str(refused))
                return
            except Exception as exc:  # the identity table is unreachable: no session rather than a wrong one
                logger.error("web widget: cannot open a session: %s", exc)
                await refuse(sid, "the assistant cannot open a session now; try again")
                return
            previous = (await sio.get_session(sid) or {}).get("conversation_id")
            if previous and previous != session["conversation_id"]:
                await sio.leave_room(sid, previous)
            await sio.save_session(sid, session)
            await sio.enter_room(sid, session["conversation_id"])  # a coroutine in python-socketio 5.x
            await sio.emit("session_confirm", session["conversation_id"], room=sid)

        @sio.on("user_uttered")
        async def user_uttered(sid: Text, data: Any) -> None:
            session = await sio.get_session(sid)
            text = data.get("message") if isinstance(data, dict) else None
            if not session or not isinstance(text, str) or not text.strip():
                return  # no session yet, or nothing to say: the widget always asks for a session first
            conversation_id = session["conversation_id"]
            try:
                identity.link_at_ingress(conversation_id, session["customer_id"], "web", session["verified_by"])
            except identity.IdentityConflict:
                await refuse(sid, "this conversation belongs to another customer")
                return
            metadata = {"channel": "web", "customer_id": session["customer_id"]}
            page = (data.get("metadata") or {}).get("page") if isinstance(data.get("metadata"), dict) else None
            if isinstance(page, str):
                metadata["page"] = page[:300]  # redacted with the rest of the metadata (core.redaction)
            output = WebChatOutput(sio)
            await output.send_typing(conversation_id, True)
            try:
                await deliver(UserMessage(text, output, conversation_id, input_channel=self.name(), metadata=metadata))
            finally:
                await output.send_typing(conversation_id, False)

        @sio.on("history_request")
        async def history_request(sid: Text, _data: Any = None) -> None:
            session = await sio.get_session(sid)
            if not session:
                return  # only the socket's own conversation, bound at session_request; the request's data is ignored
            await sio.emit("history", await self.history(session["conversation_id"]), room=sid)

        return blueprint

    async def history(self, conversation_id: Text) -> Dict[Text, Any]:
        """The conversation so far and the handoff state, for a widget that (re)opens."""
        agent = getattr(self.app.ctx, "agent", None) if self.app is not None else None
        if agent is None or agent.tracker_store is None:
            return {"messages": [], "handoff": {"status": "none"}}
        tracker = await agent.tracker_store.retrieve_full_tracker(conversation_id)
        messages = transcript(tracker.events, limit=HISTORY_LIMIT) if tracker else []
        try:
            state = desk_for(self.app).state(conversation_id)
        except Exception as exc:  # the queue is down; the history still shows
            logger.error("handoff state unavailable for %s: %s", conversation_id, exc)
            state = {"status": "none"}
        return {"messages": messages, "handoff": state}

    def demo_page(self, request: Request) -> Text:
        """The demo site; in demo mode only, ``?customer=<id>`` signs in as that customer (a demo token)."""
        customer = request.args.get("customer", "")
        attributes = ""
        signed_in = None
        if customer and identity.is_demo() and identity.CUSTOMER_ID.match(customer) and not customer.startswith("anon-"):
            attributes = f' data-customer-token="{html.escape(demo_token(customer))}"'
            signed_in = customer
        page = DEMO_PAGE.read_text(encoding="utf-8") if DEMO_PAGE.exists() else "<!doctype html><title>Chat</title>__WIDGET__"
        tag = f'<script src="{request.app.url_for("web_chat.widget")}"{attributes} data-title="{html.escape(self.title)}" async></script>'
        return (
            page.replace("__WIDGET__", tag)
            .replace("__CUSTOMER__", html.escape(signed_in) if signed_in else "Guest")
        )
