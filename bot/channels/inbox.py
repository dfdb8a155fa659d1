"""The agent inbox: a web page, behind a sign-in, where people take over conversations.

Served by the Rasa server at ``/webhooks/inbox/``. Each person signs in with
their own staff account (`bot.security.staff`: username and password, or the
company's OpenID Connect provider when INBOX_OIDC_* are set), then sees the
waiting and active conversations, each with its full transcript, the
customer's profile and the assistant's best guesses (intent ranking and
retrieved past answers for the customer's latest messages). The agent takes a
conversation, writes to the customer on whatever channel they use (as the
account's display name), and hands the conversation back to the assistant.
Supervisors also read and export the audit log; admins also manage accounts.

JSON API (same origin; session cookie ``inbox_session``; every POST also needs
``Content-Type: application/json`` and the session's CSRF token in
``X-CSRF-Token``, and is refused when its ``Origin`` is another site):

- ``POST login`` {username, password} -> {username, name, role, csrf_token} ·
  ``POST logout`` · ``GET api/me`` · ``POST api/password`` {current_password, new_password};
- ``GET api/conversations`` · ``GET api/conversations/<id>`` ·
  ``POST api/conversations/<id>/take`` · ``.../reply`` {text, draft?: {source, id}} · ``.../handback`` (agent);
- ``GET api/conversations/<id>/drafts`` -> {message, sentiment, drafts: [{source, id, text, question, score}],
  profile_summary} (agent assist, `bot.channels.assist`; the reply logs the draft it started from);
- ``GET api/audit`` ?limit, before, actor, action, target · ``GET api/audit/export`` ?format=csv|jsonl ·
  ``GET analytics`` ?since, until (the analytics report page, with a date-range picker) ·
  ``GET customers/<id>`` · ``GET segments`` (customer pages and segments, `bot.insight.pages`) ·
  ``GET onboarding`` · ``GET onboarding/c/<id>`` · ``POST onboarding/decide`` · ``POST onboarding/run``
  (review of the intents discovered in chat history, `bot.insight.onboarding_page`; its POSTs take a
  form with the CSRF token in the ``csrf_token`` field, or JSON) (supervisor);
- ``GET api/accounts`` · ``POST api/accounts`` {username, role, display_name?, password?} ·
  ``POST api/accounts/<username>/disable`` · ``POST api/accounts/<username>/reset`` (admin);
- ``GET oidc/start`` -> the provider · ``GET oidc/callback`` (only with INBOX_OIDC_*).

The session cookie is ``HttpOnly``, ``SameSite=Strict``, path ``/webhooks/inbox``,
and ``Secure`` except for plain-http requests to localhost outside production
mode (so `make run` works in a browser on the same machine).
"""
from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import logging
import math
import time
import urllib.parse
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.shared.core.events import UserUttered
from sanic import Blueprint, response
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import HTTPResponse
from sqlalchemy.engine import Engine

from bot.channels import assist, ingress
from bot.channels.base import DeskChannel
from bot.handoff.desk import HandoffError, desk_for
from bot.handoff.queue import WAITING
from bot.channels.transcript import transcript
from bot.insight import onboarding_page
from bot.insight import pages as insight_pages
from bot.security import audit, staff
from bot.security.mode import current_mode
from bot.security.oidc import OidcError, OidcProvider, Pending, account_for
from core import db
from core.payloads import is_payload
from nlu import latest_sentiments, most_upset_first
from recommender import customer_summary
from retrieval import rating_counts
from core.settings import PROJECT_ROOT, get_settings

logger = logging.getLogger(__name__)

PAGES = PROJECT_ROOT / "web" / "pages"
COOKIE = "inbox_session"
COOKIE_PATH = "/webhooks/inbox"
OIDC_COOKIE = "inbox_oidc"
OIDC_PATH = "/webhooks/inbox/oidc"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
OPEN_AUDIT_WINDOW_S = 300  # one audit row per session and conversation per 5 minutes of the page's refreshes


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
    summary = customer_summary(engine, customer_id)  # the recommender's tables
    row = summary["profile"]
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
        {"kind": r["kind"], "what": r["title"] or r["topic"], "ts": r["ts"]} for r in summary["recent"]
    ]
    profile["ratings"] = rating_counts(engine, customer_id)  # retrieval's table
    return profile


def best_guesses(events, last: int = 3) -> List[Dict[str, Any]]:
    """For the customer's last typed messages: the assistant's intent ranking and retrieved answers."""
    guesses = []
    for event in [e for e in events if isinstance(e, UserUttered) and e.text and not is_payload(e.text)][-last:]:
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


def _proxy_hops() -> int:
    return get_settings().ingress_proxy_hops


def client_address(request: Request) -> str:
    """The client's address as the ingress limits see it: the peer's, or the one `ingress_proxy_hops` trusted proxies forwarded."""
    return ingress.client_address(request.ip, request.headers.get("x-forwarded-for"), _proxy_hops())[:64]


def _secure_cookie(request: Request) -> bool:
    # A browser drops a Secure cookie over plain http, except that the inbox must work at
    # http://localhost for `make run`; production always sends Secure.
    if current_mode() == "production":
        return True
    host = urllib.parse.urlsplit(f"//{request.host or ''}").hostname or ""
    return not (request.scheme == "http" and host in LOOPBACK)


def _set_cookie(reply: HTTPResponse, request: Request, name: str, value: str, path: str, max_age: int, samesite: str) -> None:
    reply.cookies[name] = value
    for key, setting in (("httponly", True), ("samesite", samesite), ("path", path), ("max-age", max_age)):
        reply.cookies[name][key] = setting
    if _secure_cookie(request):
        reply.cookies[name]["secure"] = True


def _cross_site(request: Request) -> bool:
    """Whether the browser says this request comes from another site (Origin, or Sec-Fetch-Site without Origin)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return urllib.parse.urlsplit(origin).netloc.lower() != (request.host or "").lower()
    return (request.headers.get("sec-fetch-site") or "").lower() in ("cross-site", "same-site")


def _refused(status: int, error: str, **headers: str) -> HTTPResponse:
    return response.json({"error": error}, status=status, headers=headers or None)


class AgentInbox(DeskChannel, InputChannel):
    """The inbox pages and API; it receives no customer messages itself."""

    @classmethod
    def name(cls) -> Text:
        return "inbox"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        # Accounts live in the database; the only settings are the optional OIDC provider's (environment).
        return cls(oidc=OidcProvider.from_env())

    def __init__(self, engine: Optional[Engine] = None, oidc: Optional[OidcProvider] = None) -> None:
        self._engine = engine
        self.oidc = oidc
        self._opened: Dict[tuple, float] = {}  # (session, conversation) -> when its opening was audited

    @property
    def engine(self) -> Engine:
        """The project database (accounts, sessions, audit log)."""
        if self._engine is None:
            self._engine = db.connect()
        return self._engine

    # -------------------------------------------------------------- sessions
    def session_of(self, request: Request) -> Optional[staff.Session]:
        """The signed-in person's live session, or None."""
        return staff.session_for(self.engine, request.cookies.get(COOKIE))

    def staff_only(self, role: str = "agent", changes: bool = False):
        """Run `handler(request, session, ...)` for a signed-in person with `role`; refuse otherwise.

        401 without a live session; for a request that `changes` something, 403 when it comes
        from another site or lacks the session's CSRF token, 400 when it is not JSON; 403
        when the role is not enough.
        """

        def decorate(handler: Callable[..., Awaitable[HTTPResponse]]):
            @functools.wraps(handler)
            async def guarded(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
                session = self.session_of(request)
                if session is None:
                    return _refused(401, "sign in first")
                if changes:
                    problem = self._csrf_problem(request, session)
                    if problem:
                        return _refused(403, problem)
                    if _json_body(request) is None:
                        return _refused(400, "send a JSON object (Content-Type: application/json)")
                if not session.can(role):
                    return _refused(403, f"this needs the {role} role; you are signed in as {session.role}")
                return await handler(request, session, *args, **kwargs)

            return guarded

        return decorate

    @staticmethod
    def _csrf_problem(request: Request, session: staff.Session, sent: Optional[str] = None) -> Optional[str]:
        """Why a changing request is refused (another site; no or a wrong CSRF token), or None.

        The token is the ``X-CSRF-Token`` header's unless `sent` gives it (a page's form field).
        """
        if _cross_site(request):
            return "refused: this request comes from another site"
        sent = (request.headers.get("x-csrf-token") or "") if sent is None else sent
        if not hmac.compare_digest(sent.encode("utf-8"), session.csrf_token.encode("utf-8")):
            return "missing or wrong CSRF token (the X-CSRF-Token header, or a page form's csrf_token field)"
        return None

    def _signed_in(self, request: Request, token: str, session: staff.Session) -> HTTPResponse:
        reply = response.json(self._me(session))
        _set_cookie(reply, request, COOKIE, token, COOKIE_PATH, staff.SESSION_HOURS * 3600, "Strict")
        return reply

    def _me(self, session: staff.Session) -> Dict[str, Any]:
        return {"username": session.username, "name": session.display_name, "role": session.role,
                "csrf_token": session.csrf_token}

    def _audit(self, request: Request, session: Optional[staff.Session], action: str, target: Optional[str] = None,
               detail: Optional[Dict[str, Any]] = None, actor: Optional[str] = None) -> None:
        audit.record(self.engine, actor or (session.username if session else "?"), action, target, client_address(request), detail)

    def _audit_opening(self, request: Request, session: staff.Session, conversation_id: str, customer_id: Optional[str]) -> None:
        """Record that `session` opened a transcript and profile; the page's 3-second refreshes count once per window."""
        now = time.time()
        key = (session.id_hash, conversation_id)
        if now - self._opened.get(key, 0.0) < OPEN_AUDIT_WINDOW_S:
            return
        if len(self._opened) > 10_000:  # forget old entries rather than grow without end
            self._opened = {k: t for k, t in self._opened.items() if now - t < OPEN_AUDIT_WINDOW_S}
        self._audit(request, session, "conversation.open", conversation_id, {"customer_id": customer_id})
        self._opened[key] = now

    # ------------------------------------------------------------- blueprint
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The inbox page and its API."""
        inbox = self.watch(Blueprint("agent_inbox", __name__))

        @inbox.listener("after_server_start")
        async def say_who_can_sign_in(_app, _loop) -> None:
            try:
                accounts = staff.active_account_count(self.engine)
            except Exception as exc:  # the database's own errors are reported when a request needs it
                logger.warning("agent inbox: cannot count staff accounts (%s)", exc)
                return
            if not accounts and self.oidc is None:
                logger.warning("agent inbox lets nobody in: add an account with "
                               "`python -m bot.security.admin agent add NAME --role admin`")

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

        @inbox.route("/signin-options", methods=["GET"])
        async def signin_options(_: Request) -> HTTPResponse:
            return response.json({"password": True, "oidc": self.oidc is not None})

        @inbox.route("/login", methods=["POST"])
        async def login(request: Request) -> HTTPResponse:
            if _cross_site(request):
                return _refused(403, "refused: this request comes from another site")
            body = _json_body(request)
            if body is None or not isinstance(body.get("username"), str) or not isinstance(body.get("password"), str):
                return _refused(400, "send JSON with username and password")
            if not body["username"].strip() or len(body["username"]) > 128 or len(body["password"]) > staff.MAX_PASSWORD:
                return _refused(400, f"a username of 1 to 128 characters and a password of at most {staff.MAX_PASSWORD}")
            client = client_address(request)
            result = await asyncio.get_running_loop().run_in_executor(
                None, staff.sign_in, self.engine, body["username"], body["password"], client)
            if result.outcome == "locked":
                wait = max(1, math.ceil(result.retry_after))
                return _refused(429, f"too many failed sign-ins: try again in {wait} s", **{"Retry-After": str(wait)})
            if result.outcome != "ok":
                if not staff.active_account_count(self.engine) and self.oidc is None:
                    return _refused(401, "the inbox has no accounts yet: an administrator adds one with "
                                         "`python -m bot.security.admin agent add NAME --role admin`")
                return _refused(401, "wrong username or password")
            logger.info("%s signed in to the inbox", result.session.username)
            return self._signed_in(request, result.token, result.session)

        @inbox.route("/logout", methods=["POST"])
        async def logout(request: Request) -> HTTPResponse:
            session = self.session_of(request)
            if session is not None:
                problem = self._csrf_problem(request, session)
                if problem:
                    return _refused(403, problem)
                staff.revoke_session(self.engine, session, client_address(request))
            reply = response.json({"signed_out": True})
            _set_cookie(reply, request, COOKIE, "", COOKIE_PATH, 0, "Strict")
            return reply

        @inbox.route("/api/me", methods=["GET"])
        @self.staff_only()
        async def me(_: Request, session: staff.Session) -> HTTPResponse:
            return response.json(self._me(session))

        @inbox.route("/api/password", methods=["POST"])
        @self.staff_only(changes=True)
        async def change_password(request: Request, session: staff.Session) -> HTTPResponse:
            body = _json_body(request) or {}
            current, new = body.get("current_password"), body.get("new_password")
            if not isinstance(current, str) or not isinstance(new, str):
                return _refused(400, "send JSON with current_password and new_password")
            try:
                changed = await asyncio.get_running_loop().run_in_executor(
                    None, staff.change_password, self.engine, session.username, current, new, client_address(request))
            except ValueError as exc:
                return _refused(400, str(exc))
            if not changed:
                return _refused(403, "the current password is wrong")
            reply = response.json({"signed_out": True, "password_changed": True})
            _set_cookie(reply, request, COOKIE, "", COOKIE_PATH, 0, "Strict")
            return reply

        # ------------------------------------------------------ conversations
        @inbox.route("/api/conversations", methods=["GET"])
        @self.staff_only()
        async def conversations(_: Request, session: staff.Session) -> HTTPResponse:
            desk = desk_for(self.app)
            listed = []
            for position, handoff in enumerate(desk.queue.open_handoffs(), start=1):
                entry = handoff.as_dict()
                entry["position"] = position if handoff.status == WAITING else None
                listed.append(entry)
            # Each one's latest message sentiment (nlu.sentiment); the most upset waiting conversations first.
            moods = latest_sentiments(desk.queue.engine, [entry["conversation_id"] for entry in listed])
            for entry in listed:
                entry["sentiment"] = moods.get(entry["conversation_id"])
            return response.json({"conversations": most_upset_first(listed), "now": time.time()})

        @inbox.route("/api/conversations/<conversation_id:str>", methods=["GET"])
        @self.staff_only()
        async def conversation(request: Request, session: staff.Session, conversation_id: str) -> HTTPResponse:
            conversation_id = urllib.parse.unquote(conversation_id)  # the page encodes the ':' of web:..., rest:...
            detail = await self._conversation(conversation_id)
            if detail is None:
                return _refused(404, "no handoff for this conversation")
            self._audit_opening(request, session, conversation_id, detail["customer"].get("id"))
            return response.json(detail)

        @inbox.route("/api/conversations/<conversation_id:str>/drafts", methods=["GET"])
        @self.staff_only()
        async def drafts(request: Request, session: staff.Session, conversation_id: str) -> HTTPResponse:
            conversation_id = urllib.parse.unquote(conversation_id)
            offered = await self._drafts(conversation_id)
            if offered is None:
                return _refused(404, "no handoff for this conversation")
            self._audit_opening(request, session, conversation_id, offered["customer_id"])
            return response.json(offered)

        @inbox.route("/api/conversations/<conversation_id:str>/<action:str>", methods=["POST"])
        @self.staff_only(changes=True)
        async def act(request: Request, session: staff.Session, conversation_id: str, action: str) -> HTTPResponse:
            conversation_id = urllib.parse.unquote(conversation_id)
            body = _json_body(request) or {}
            desk = desk_for(self.app)
            agent_name = session.display_name  # what the customer sees; never what the page says
            try:
                if action == "take":
                    await desk.take(conversation_id, agent_name)
                    delivered, detail = True, {}
                elif action == "reply":
                    if not isinstance(body.get("text"), str):
                        return _refused(400, "'text' must be a string")
                    draft = body.get("draft")
                    if draft is not None and not (isinstance(draft, dict) and isinstance(draft.get("source"), str)
                                                  and isinstance(draft.get("id"), str)):
                        return _refused(400, "'draft' must be {source, id} strings, or left out")
                    offered = await self._drafts(conversation_id)  # what the panel offered before this reply
                    delivered = await desk.reply(conversation_id, agent_name, body["text"])
                    detail = {"chars": len(body["text"]), "draft": draft}
                    if offered is not None:
                        await asyncio.get_running_loop().run_in_executor(None, functools.partial(
                            assist.try_log_reply, self.engine, conversation_id, session.username, agent_name,
                            body["text"], offered, draft))
                elif action == "handback":
                    await desk.hand_back(conversation_id, agent_name)
                    delivered, detail = True, {}
                else:
                    return _refused(404, f"unknown action '{action}'")
            except HandoffError as exc:
                return _refused(409, str(exc))
            result = await self._conversation(conversation_id)
            customer = (result or {}).get("customer", {}).get("id")
            self._audit(request, session, f"conversation.{action}", conversation_id, {"customer_id": customer, **detail})
            if result is None:
                return _refused(404, "no handoff for this conversation")
            return response.json(result, headers={"X-Delivered": "yes" if delivered else "stored"})

        # ------------------------------------------------------ audit log
        @inbox.route("/api/audit", methods=["GET"])
        @self.staff_only("supervisor")
        async def audit_rows(request: Request, session: staff.Session) -> HTTPResponse:
            args = request.args
            try:
                limit = int(args.get("limit", 100))
                before = int(args["before"]) if args.get("before") else None
            except ValueError:
                return _refused(400, "limit and before are whole numbers")
            rows = audit.recent(self.engine, limit=limit, before_id=before, actor=args.get("actor"),
                                action=args.get("action"), target=args.get("target"))
            return response.json({"entries": rows})

        @inbox.route("/api/audit/export", methods=["GET"])
        @self.staff_only("supervisor")
        async def audit_export(request: Request, session: staff.Session) -> HTTPResponse:
            fmt = request.args.get("format", "csv")
            if fmt not in audit.EXPORT_FORMATS:
                return _refused(400, f"format must be one of {', '.join(audit.EXPORT_FORMATS)}")
            self._audit(request, session, "audit.export", None, {"format": fmt})
            content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"
            stream = await request.respond(content_type=content_type, headers={
                "Content-Disposition": f'attachment; filename="audit-{time.strftime("%Y%m%d-%H%M%S")}.{fmt}"',
                "Cache-Control": "no-store"})
            for chunk in audit.export(self.engine, fmt):
                await stream.send(chunk)
            await stream.eof()
            return stream

        @inbox.route("/analytics", methods=["GET"])
        @self.staff_only("supervisor")
        async def analytics(request: Request, session: staff.Session) -> HTTPResponse:
            from bot.insight.analytics_page import analytics_page

            since, until = request.args.get("since"), request.args.get("until")
            status, page = await asyncio.get_running_loop().run_in_executor(None, analytics_page, since, until)
            return response.html(page, status=status, headers={"Cache-Control": "no-store"})

        # ------------------------------------------------------ accounts
        @inbox.route("/api/accounts", methods=["GET"])
        @self.staff_only("admin")
        async def accounts(_: Request, session: staff.Session) -> HTTPResponse:
            return response.json({"accounts": [a.as_dict() for a in staff.list_accounts(self.engine)]})

        @inbox.route("/api/accounts", methods=["POST"])
        @self.staff_only("admin", changes=True)
        async def add_account(request: Request, session: staff.Session) -> HTTPResponse:
            body = _json_body(request) or {}
            fields = {k: body.get(k) for k in ("username", "role", "display_name", "password")}
            if not isinstance(fields["username"], str) or not isinstance(fields["role"], str) or any(
                    fields[k] is not None and not isinstance(fields[k], str) for k in ("display_name", "password")):
                return _refused(400, "send JSON with username and role (display_name and password optional)")
            try:
                password = await asyncio.get_running_loop().run_in_executor(None, functools.partial(
                    staff.add_account, self.engine, fields["username"], fields["password"], role=fields["role"],
                    display_name=fields["display_name"], actor=session.username, client=client_address(request)))
            except ValueError as exc:
                return _refused(409 if "already exists" in str(exc) else 400, str(exc))
            account = staff.get_account(self.engine, fields["username"])
            answer: Dict[str, Any] = {"account": account.as_dict()}
            if fields["password"] is None:
                answer["password"] = password  # generated: shown this once
            return response.json(answer, status=201)

        @inbox.route("/api/accounts/<username:str>/<change:str>", methods=["POST"])
        @self.staff_only("admin", changes=True)
        async def change_account(request: Request, session: staff.Session, username: str, change: str) -> HTTPResponse:
            username = urllib.parse.unquote(username)
            if change not in ("disable", "reset"):
                return _refused(404, f"unknown change '{change}': disable or reset")
            if staff.get_account(self.engine, username) is None:
                return _refused(404, f"no account named '{username}'")
            if change == "disable":
                if staff.normal_username(username) == session.username:
                    return _refused(409, "you cannot disable your own account")
                staff.disable_account(self.engine, username, actor=session.username, client=client_address(request))
                return response.json({"account": staff.get_account(self.engine, username).as_dict()})
            password = await asyncio.get_running_loop().run_in_executor(None, functools.partial(
                staff.reset_password, self.engine, username, actor=session.username, client=client_address(request)))
            return response.json({"account": staff.get_account(self.engine, username).as_dict(), "password": password})

        # ------------------------------------------------------ OpenID Connect
        @inbox.route("/oidc/start", methods=["GET"])
        async def oidc_start(request: Request) -> HTTPResponse:
            if self.oidc is None:
                return _refused(404, "sign-in through OpenID Connect is not configured")
            try:
                url, pending = await asyncio.get_running_loop().run_in_executor(
                    None, self.oidc.begin, self._callback_url(request))
            except OidcError as exc:
                return _refused(503, str(exc))
            reply = response.redirect(url, status=303)
            kept = base64.urlsafe_b64encode(json.dumps(pending.as_dict()).encode()).decode()
            # Lax, not Strict: the provider sends the browser back with a cross-site redirect.
            _set_cookie(reply, request, OIDC_COOKIE, kept, OIDC_PATH, 600, "Lax")
            return reply

        @inbox.route("/oidc/callback", methods=["GET"])
        async def oidc_callback(request: Request) -> HTTPResponse:
            if self.oidc is None:
                return _refused(404, "sign-in through OpenID Connect is not configured")
            pending = self._pending(request)
            args = request.args
            claims: Dict[str, Any] = {}
            try:
                if args.get("error"):
                    raise OidcError(f"the provider said: {args.get('error_description') or args.get('error')}")
                claims = await asyncio.get_running_loop().run_in_executor(
                    None, self.oidc.finish, args.get("code") or "", args.get("state") or "", pending, self._callback_url(request))
                account = account_for(self.engine, claims)
                if account is None:
                    who = claims.get("preferred_username") or claims.get("email") or claims.get("sub")
                    raise OidcError(f"no enabled inbox account for '{who}': ask an administrator to add one")
            except OidcError as exc:
                self._audit(request, None, "signin.failed", None, {"method": "oidc", "reason": str(exc)[:300]},
                            actor=str(claims.get("preferred_username") or claims.get("email") or "?"))
                reply = response.redirect(f"{COOKIE_PATH}/?{urllib.parse.urlencode({'signin_error': str(exc)[:300]})}", status=303)
                _set_cookie(reply, request, OIDC_COOKIE, "", OIDC_PATH, 0, "Lax")
                return reply
            token, session = staff.open_session(self.engine, account.username, "oidc", client_address(request))
            reply = response.redirect(f"{COOKIE_PATH}/", status=303)
            _set_cookie(reply, request, COOKIE, token, COOKIE_PATH, staff.SESSION_HOURS * 3600, "Strict")
            _set_cookie(reply, request, OIDC_COOKIE, "", OIDC_PATH, 0, "Lax")
            return reply

        insight_pages.register(inbox, self)  # customer pages and segments (supervisor)
        onboarding_page.register(inbox, self)  # review of the intents discovered in chat history (supervisor)
        return inbox

    def _callback_url(self, request: Request) -> str:
        return f"{request.scheme}://{request.host}{OIDC_PATH}/callback"

    @staticmethod
    def _pending(request: Request) -> Optional[Pending]:
        kept = request.cookies.get(OIDC_COOKIE)
        if not kept or len(kept) > 2048:
            return None
        try:
            return Pending.from_dict(json.loads(base64.urlsafe_b64decode(kept.encode())))
        except (ValueError, TypeError):
            return None

    async def _drafts(self, conversation_id: str) -> Optional[Dict[str, Any]]:
        """Agent assist's drafts for the conversation (`bot.channels.assist`), None without a handoff."""
        found = await self._handed_off(conversation_id)
        if found is None:
            return None
        handoff, agent, tracker = found
        offered = assist.build_drafts(list(tracker.events) if tracker else [], agent.domain.responses)
        customer_id = handoff.customer_id or conversation_id
        profile = await asyncio.get_running_loop().run_in_executor(None, customer_profile, customer_id)
        return {**offered, "conversation_id": conversation_id, "customer_id": profile.get("id"),
                "profile_summary": assist.profile_summary(profile)}

    async def _handed_off(self, conversation_id: str):
        """(latest handoff, Rasa agent, full tracker or None) of a handed-off conversation; None without either."""
        desk = desk_for(self.app)
        handoff = desk.queue.latest(conversation_id)
        agent = desk.agent
        if handoff is None or agent is None:
            return None
        return handoff, agent, await agent.tracker_store.retrieve_full_tracker(conversation_id)

    async def _conversation(self, conversation_id: str) -> Optional[Dict[str, Any]]:
        found = await self._handed_off(conversation_id)
        if found is None:
            return None
        handoff, _agent, tracker = found
        desk = desk_for(self.app)
        events = list(tracker.events) if tracker else []
        return {
            "conversation_id": conversation_id,
            "handoff": {**handoff.as_dict(), "position": desk.queue.position(conversation_id)},
            "channel": handoff.channel or (tracker.get_latest_input_channel() if tracker else None),
            "transcript": transcript(events),
            "customer": customer_profile(handoff.customer_id or conversation_id),
            "guesses": best_guesses(events),
            "satisfaction": _satisfaction_of(conversation_id),  # the customer's 1-5 rating, or None
        }


def _satisfaction_of(conversation_id: str) -> Optional[Dict[str, Any]]:
    """The conversation's end-of-conversation rating (core/satisfaction.py) for the inbox, or None."""
    from core import satisfaction

    try:
        row = satisfaction.of_conversation(conversation_id)
    except satisfaction.STORAGE_ERRORS:
        return None
    return {k: row[k] for k in ("score", "handled_by", "intent", "ts")} if row else None
