"""The agent inbox: a web page, behind a login, where people take over conversations.

Served by the Rasa server at ``/webhooks/inbox/``. An agent signs in with
their name and the team password (``INBOX_PASSWORD``; without it the inbox
lets nobody in and says so), then sees the waiting and active conversations,
each with its full transcript, the customer's profile and the assistant's
best guesses (intent ranking and retrieved past answers for the customer's
latest messages). The agent takes a conversation, writes to the customer on
whatever channel they use, and hands the conversation back to the assistant.

JSON API (same origin, session cookie):
``POST login`` {name, password} · ``POST logout`` · ``GET api/me`` ·
``GET api/conversations`` · ``GET api/conversations/<id>`` ·
``POST api/conversations/<id>/take`` · ``POST api/conversations/<id>/reply``
{text} · ``POST api/conversations/<id>/handback``.
"""
from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
import re
import secrets
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

import jwt
import sqlalchemy as sa
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.shared.core.events import UserUttered
from sanic import Blueprint, response
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.base import DeskChannel, secret
from bot.channels.desk import HandoffError, desk_for
from bot.channels.queue import WAITING
from bot.channels.transcript import transcript
from core import db
from core.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

PAGES = PROJECT_ROOT / "web" / "pages"
COOKIE = "inbox_session"
SESSION_HOURS = 8
AGENT_NAME = re.compile(r"^[\w .'-]{1,64}$", re.UNICODE)


def _json_body(request: Request) -> Optional[Dict[str, Any]]:
    if (request.headers.get("content-type") or "").split(";")[0].strip().lower() != "application/json":
        return None  # JSON only: a form on another site cannot post here
    try:
        body = json.loads(request.body or b"")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's JSON reader goes
        return None
    return body if isinstance(body, dict) else None


def customer_profile(customer_id: Optional[str]) -> Dict[str, Any]:
    """What the project's database knows about a customer: profile, recent activity, ratings."""
    if not customer_id:
        return {"id": None, "known": False}
    engine = db.connect()
    with engine.connect() as conn:
        row = conn.execute(sa.select(db.customers).where(db.customers.c.id == customer_id)).mappings().first()
        recent = conn.execute(
            sa.select(db.interactions.c.kind, db.interactions.c.topic, db.interactions.c.ts, db.items.c.title)
            .select_from(db.interactions.outerjoin(db.items, db.items.c.id == db.interactions.c.item_id))
            .where(db.interactions.c.customer_id == customer_id)
            .order_by(db.interactions.c.ts.desc())
            .limit(10)
        ).mappings().all()
        ratings = dict(
            conn.execute(
                sa.select(db.answer_ratings.c.rating, sa.func.count())
                .where(db.answer_ratings.c.customer_id == customer_id)
                .group_by(db.answer_ratings.c.rating)
            ).all()
        )
    profile: Dict[str, Any] = {"id": customer_id, "known": row is not None}
    if row is not None:
        profile.update(
            segment=row["segment"],
            age_band=row["age_band"],
            attributes=row["attributes"] or {},
            suggestions_opt_out=bool(row["suggestions_opt_out"]),
            synthetic=bool(row["synthetic"]),
        )
    profile["recent"] = [
        {"kind": r["kind"], "what": r["title"] or r["topic"], "ts": r["ts"]} for r in recent
    ]
    profile["ratings"] = {"up": ratings.get(1, 0), "down": ratings.get(-1, 0)}
    return profile


def best_guesses(events, last: int = 3) -> List[Dict[str, Any]]:
    """For the customer's last typed messages: the assistant's intent ranking and retrieved answers."""
    guesses = []
    for event in [e for e in events if isinstance(e, UserUttered) and e.text and not e.text.startswith("/")][-last:]:
        parse = event.parse_data or {}
        ranking = parse.get("intent_ranking") or ([parse["intent"]] if parse.get("intent") else [])
        hits = (parse.get("retrieval") or {}).get("hits") or []
        guesses.append(
            {
                "text": event.text,
                "intents": [
                    {"name": r.get("name"), "confidence": round(float(r.get("confidence") or 0.0), 3)}
                    for r in ranking[:3]
                ],
                "answers": [
                    {"question": h.get("question"), "answer": h.get("answer"), "score": round(float(h.get("score") or 0.0), 3)}
                    for h in hits[:3]
                ],
            }
        )
    return guesses[::-1]  # newest first


class AgentInbox(DeskChannel, InputChannel):
    """The inbox pages and API; it receives no customer messages itself."""

    @classmethod
    def name(cls) -> Text:
        return "inbox"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}
        return cls(
            password=secret(credentials, "password", "INBOX_PASSWORD"),
            session_secret=secret(credentials, "session_secret", "INBOX_SESSION_SECRET"),
        )

    def __init__(self, password: Text = "", session_secret: Text = "") -> None:
        self.password = password
        # Without a configured secret, sessions last until the server restarts.
        self.session_secret = session_secret or secrets.token_urlsafe(32)
        if not password:
            logger.warning("agent inbox lets nobody in: set INBOX_PASSWORD to open it")

    # -------------------------------------------------------------- sessions
    def agent_of(self, request: Request) -> Optional[str]:
        """The signed-in agent's name, or None."""
        token = request.cookies.get(COOKIE)
        if not token or not self.password:
            return None
        try:
            return str(jwt.decode(token, self.session_secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})["sub"])
        except jwt.PyJWTError:
            return None

    def signed_in(self, handler: Callable[..., Awaitable[HTTPResponse]]):
        """Run `handler(request, agent_name, ...)` for a signed-in agent; 401 otherwise."""

        @functools.wraps(handler)
        async def guarded(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            agent = self.agent_of(request)
            if agent is None:
                return response.json({"error": "sign in first"}, status=401)
            return await handler(request, agent, *args, **kwargs)

        return guarded

    # ------------------------------------------------------------- blueprint
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The inbox page and its API."""
        inbox = self.watch(Blueprint("agent_inbox", __name__))

        @inbox.exception(Exception)
        async def failed(request: Request, exc: Exception) -> HTTPResponse:
            # Sanic's own errors keep their status (404, 405, ...); anything else is the
            # database or a platform failing, which the agent should see as such.
            if isinstance(exc, SanicException):
                return response.json({"error": str(exc)}, status=exc.status_code)
            logger.exception("inbox request %s failed", request.path)
            return response.json({"error": "the inbox could not do that just now: see the server log"}, status=503)

        @inbox.route("/", methods=["GET"])
        async def page(_: Request) -> HTTPResponse:
            return await response.file(PAGES / "inbox.html", mime_type="text/html", headers={"Cache-Control": "no-cache"})

        @inbox.route("/inbox.js", methods=["GET"])
        async def script(_: Request) -> HTTPResponse:
            return await response.file(PAGES / "inbox.js", mime_type="application/javascript", headers={"Cache-Control": "no-cache"})

        @inbox.route("/login", methods=["POST"])
        async def login(request: Request) -> HTTPResponse:
            body = _json_body(request)
            if body is None or not isinstance(body.get("name"), str) or not isinstance(body.get("password"), str):
                return response.json({"error": "send JSON with name and password"}, status=400)
            if not self.password:
                return response.json({"error": "the inbox is closed: the server has no INBOX_PASSWORD"}, status=401)
            name = body["name"].strip()
            if not AGENT_NAME.match(name):
                return response.json({"error": "a name of 1 to 64 letters, digits, spaces, dots or dashes"}, status=400)
            if not hmac.compare_digest(body["password"].encode("utf-8"), self.password.encode("utf-8")):
                await asyncio.sleep(0.5)  # slows down guessing
                return response.json({"error": "wrong password"}, status=401)
            token = jwt.encode({"sub": name, "exp": int(time.time()) + SESSION_HOURS * 3600}, self.session_secret, "HS256")
            reply = response.json({"name": name})
            reply.cookies[COOKIE] = token
            for key, value in (("httponly", True), ("samesite", "Strict"), ("path", "/webhooks/inbox"), ("max-age", SESSION_HOURS * 3600)):
                reply.cookies[COOKIE][key] = value
            logger.info("agent %s signed in to the inbox", name)
            return reply

        @inbox.route("/logout", methods=["POST"])
        async def logout(_: Request) -> HTTPResponse:
            reply = response.json({"signed_out": True})
            reply.cookies[COOKIE] = ""
            reply.cookies[COOKIE]["max-age"] = 0
            reply.cookies[COOKIE]["path"] = "/webhooks/inbox"
            return reply

        @inbox.route("/api/me", methods=["GET"])
        @self.signed_in
        async def me(_: Request, agent: str) -> HTTPResponse:
            return response.json({"name": agent})

        @inbox.route("/api/conversations", methods=["GET"])
        @self.signed_in
        async def conversations(_: Request, agent: str) -> HTTPResponse:
            desk = desk_for(self.app)
            listed = []
            for position, handoff in enumerate(desk.queue.open_handoffs(), start=1):
                entry = handoff.as_dict()
                entry["position"] = position if handoff.status == WAITING else None
                listed.append(entry)
            return response.json({"conversations": listed, "now": time.time()})

        @inbox.route("/api/conversations/<conversation_id:str>", methods=["GET"])
        @self.signed_in
        async def conversation(_: Request, agent: str, conversation_id: str) -> HTTPResponse:
            return await self._conversation(conversation_id)

        @inbox.route("/api/conversations/<conversation_id:str>/<action:str>", methods=["POST"])
        @self.signed_in
        async def act(request: Request, agent: str, conversation_id: str, action: str) -> HTTPResponse:
            body = _json_body(request)
            if body is None:
                return response.json({"error": "send a JSON object (Content-Type: application/json)"}, status=400)
            desk = desk_for(self.app)
            try:
                if action == "take":
                    await desk.take(conversation_id, agent)
                    delivered = True
                elif action == "reply":
                    if not isinstance(body.get("text"), str):
                        return response.json({"error": "'text' must be a string"}, status=400)
                    delivered = await desk.reply(conversation_id, agent, body["text"])
                elif action == "handback":
                    await desk.hand_back(conversation_id, agent)
                    delivered = True
                else:
                    return response.json({"error": f"unknown action '{action}'"}, status=404)
            except HandoffError as exc:
                return response.json({"error": str(exc)}, status=409)
            result = await self._conversation(conversation_id)
            result.headers["X-Delivered"] = "yes" if delivered else "stored"
            return result

        return inbox

    async def _conversation(self, conversation_id: str) -> HTTPResponse:
        desk = desk_for(self.app)
        handoff = desk.queue.latest(conversation_id)
        agent = desk.agent
        if handoff is None or agent is None:
            return response.json({"error": "no handoff for this conversation"}, status=404)
        tracker = await agent.tracker_store.retrieve_full_tracker(conversation_id)
        events = list(tracker.events) if tracker else []
        detail = {
            "conversation_id": conversation_id,
            "handoff": {**handoff.as_dict(), "position": desk.queue.position(conversation_id)},
            "channel": handoff.channel or (tracker.get_latest_input_channel() if tracker else None),
            "transcript": transcript(events),
            "customer": customer_profile(handoff.customer_id or conversation_id),
            "guesses": best_guesses(events),
        }
        return response.json(detail)
