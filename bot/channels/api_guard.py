"""Rasa's HTTP API: its token travels in a header, and a malformed request gets 400, not a server error.

The token. Rasa 3.6 takes its API token (``--auth-token``) only from the
URL (``?token=``), where proxies, browsers and access logs keep it. Here the
API routes (`API_PATH`) take it only from ``Authorization: Bearer <token>``
(``RASA_API_TOKEN``, compared in constant time); a request with ``?token=``
is refused 401 whatever its value, and one without the header or with a
wrong token is refused 401 before Rasa sees it. A request with the right
header is handed on with the token put into its parsed query arguments,
which is where Rasa's own check (`rasa.server.requires_auth`) reads it, so
Rasa still checks the token itself. Started by bot/serve.py, Rasa's own
``--auth-token`` is a per-run value (``ASSISTANT_RASA_BRIDGE_TOKEN``) rather
than ``RASA_API_TOKEN``, which then appears in no process's command line; the
token handed on is that value. That bridge relies on Sanic 21's
`Request.args` being a cached, mutable mapping: `install` checks the Sanic
version and refuses to start on another one, and a request the bridge fails
is answered 503, never let through.

The shape of a body. Rasa 3.6's API handlers read the body themselves and turn any exception into
a 500 ("An unexpected error occurred"), so a body that is not JSON, a list
where an object belongs or a number where a text belongs reads as a failure
of the server (found by tests/e2e/test_fuzz.py). This response middleware
looks at 5xx answers of the API only: when the request's body does not have
the shape the endpoint documents, the answer becomes a 400 saying what is
wrong, in Rasa's own error format. It runs after the handler, so a request
without the API token still gets its 401 first, and a well-formed request
that fails keeps its 500: that one is a real failure.

The connection after an unread body. Sanic 21 answers a request whose
route does not exist or does not take its method (404, 405) without reading
its body, says ``Connection: keep-alive``, and only then reads the body off
the connection; when the body is larger than ``max_request_bytes`` it gives
up and closes the connection it has just promised to keep. The client sends
its next request on it and gets a reset (found by tests/e2e/test_fuzz.py:
an oversized POST to the web chat page, then a GET). A response middleware
(`_close_after_unread_body`) marks such an answer ``Connection: close``, so
the client opens a new connection instead. It reads Sanic 21's per-connection
state (`sanic.http.Http`), which is why `install` checks the version.

Installed once per server by the channels (`base.DeskChannel.watch`).
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import re
from typing import Any, Callable, Dict, Optional, Tuple

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from core.settings import BRIDGE_TOKEN_VARIABLE

logger = logging.getLogger(__name__)

Check = Callable[[Any], Optional[str]]


def _object_with(required: Dict[str, type], optional: Dict[str, Tuple[type, ...]]) -> Check:
    def check(body: Any) -> Optional[str]:
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        for key, kind in required.items():
            if not isinstance(body.get(key), kind) or isinstance(body.get(key), bool) and kind is not bool:
                return f"'{key}' must be a {_name(kind)}"
        for key, kinds in optional.items():
            if body.get(key) is not None and not isinstance(body[key], kinds):
                return f"'{key}' must be {' or '.join(_name(k) for k in kinds)}"
        return None

    return check


def _name(kind: type) -> str:
    return {str: "string", dict: "object", list: "list", int: "number", float: "number", bool: "boolean"}.get(kind, kind.__name__)


def _parse_data(body: Any) -> Optional[str]:
    problem = _object_with({"text": str, "sender": str}, {"parse_data": (dict,)})(body)
    if problem or body.get("parse_data") is None:
        return problem
    parse = body["parse_data"]
    intent = parse.get("intent")
    if intent is not None and not (isinstance(intent, dict) and isinstance(intent.get("name", ""), (str, type(None)))):
        return "'parse_data.intent' must be an object with a string 'name'"
    entities = parse.get("entities")
    if entities is not None and not (isinstance(entities, list) and all(isinstance(e, dict) for e in entities)):
        return "'parse_data.entities' must be a list of objects"
    if parse.get("text") is not None and not isinstance(parse["text"], str):
        return "'parse_data.text' must be a string"
    return None


def _events(body: Any) -> Optional[str]:
    events = body if isinstance(body, list) else [body]
    if not events:
        return "send at least one event"
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            return "send an event object, or a list of them, each with an 'event' name"
    return None


# (method, path pattern) -> what the body must look like
ROUTES = [
    ("POST", re.compile(r"^/model/parse/?$"), _object_with({"text": str}, {"message_id": (str,)})),
    ("POST", re.compile(r"^/conversations/.+/messages/?$"), _parse_data),
    ("POST", re.compile(r"^/conversations/.+/tracker/events/?$"), _events),
    ("PUT", re.compile(r"^/conversations/.+/tracker/events/?$"), _events),
    ("POST", re.compile(r"^/conversations/.+/execute/?$"), _object_with({"name": str}, {"policy": (str,), "confidence": (int, float)})),
    ("POST", re.compile(r"^/conversations/.+/trigger_intent/?$"), _object_with({"name": str}, {"entities": (dict,)})),
    ("PUT", re.compile(r"^/model/?$"), _object_with({}, {"model_file": (str,), "model_server": (dict,), "remote_storage": (str,)})),
]


def problem_with(method: str, path: str, body: Optional[bytes]) -> Optional[str]:
    """Why the body of an API request is malformed, or None (also for paths this does not know)."""
    for route_method, pattern, check in ROUTES:
        if method == route_method and pattern.match(path):
            if not body:
                return "the request needs a JSON body"
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                return "the body must be JSON (UTF-8, at most a few hundred levels deep)"
            return check(data)
    return None


async def _malformed_as_400(request: Request, answer: HTTPResponse) -> Optional[HTTPResponse]:
    if answer is None or answer.status < 500:
        return None
    problem = problem_with(request.method, request.path, request.body)
    if problem is None:
        return None
    logger.info("Rasa API %s %s: malformed request answered 400 (%s)", request.method, request.path, problem)
    from rasa.version import __version__

    return response.json(
        {"version": __version__, "status": "failure", "message": problem, "reason": "BadRequest", "details": {},
         "help": None, "code": 400},
        status=400,
    )


async def _close_after_unread_body(request: Request, answer: HTTPResponse) -> None:
    """Say ``Connection: close`` when Sanic will not read the rest of this request's body after answering.

    Its drain after the answer stops at the size limit and closes the connection; a chunked body's
    size is not known ahead, so an unread one closes it too (rare: browsers and webhooks send a length).
    """
    stream = request.stream
    if stream is None or not stream.request_body:  # no body, or read to its end
        return
    if stream.request_body == "chunked" or stream.request_bytes > request.app.config.REQUEST_MAX_SIZE:
        stream.keep_alive = False


# The routes of Rasa's HTTP API that `rasa.server.requires_auth` guards.
API_PATH = re.compile(r"^/(conversations|model|domain|status)(/|$)")
BRIDGED_SANIC = "21."  # the Sanic versions whose Request.args and Http state the guards know


def _refusal(message: str, status: int = 401) -> HTTPResponse:
    from rasa.version import __version__

    reason = {401: "NotAuthenticated", 503: "ServiceUnavailable"}.get(status, "Refused")
    return response.json(
        {"version": __version__, "status": "failure", "message": message, "reason": reason, "details": {},
         "help": None, "code": status},
        status=status, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


def token_refusal(path: str, query_has_token: bool, authorization: Optional[str], token: str) -> Optional[str]:
    """Why an API request is refused (None: the header carries `token`); `token` "" means no API token is set."""
    if not API_PATH.match(path):
        return None
    if query_has_token:
        return "the API token is not accepted in the URL (?token=): send it as 'Authorization: Bearer <token>'"
    if not token:
        return "Rasa's HTTP API has no token configured (RASA_API_TOKEN), so it answers nobody"
    scheme, _, presented = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return "send the API token as 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return "wrong API token"
    return None


def _token_guard(token: str, bridged: str = ""):
    """The request middleware: the header checked against `token`, then `bridged` (default `token`) handed to Rasa."""
    bridged = bridged or token

    async def check_token(request: Request) -> Optional[HTTPResponse]:
        if not API_PATH.match(request.path):
            return None
        problem = token_refusal(request.path, "token" in request.args, request.headers.get("authorization"), token)
        if problem:
            logger.info("Rasa API %s %s refused: %s", request.method, request.path, problem)
            return _refusal(problem)
        request.args["token"] = [bridged]  # where rasa.server.requires_auth reads it
        if request.args.get("token") != bridged:  # the bridge broke: refuse, never let through
            logger.error("Rasa API token bridge failed on %s %s; refusing", request.method, request.path)
            return _refusal("the API token could not be passed to Rasa on this server version", 503)
        return None

    return check_token


def install(app: Any) -> None:
    """Add the middlewares to the Rasa server's app (once): the API token in a header, 400 for malformed bodies,
    ``Connection: close`` after a body that will not be read."""
    if getattr(app.ctx, "rasa_api_guard", False):
        return
    import sanic

    if not sanic.__version__.startswith(BRIDGED_SANIC):
        raise RuntimeError(
            f"bot/channels/api_guard.py passes the API token to Rasa through Sanic {BRIDGED_SANIC}x's Request.args "
            f"and reads its per-connection state (sanic.http.Http); "
            f"this is Sanic {sanic.__version__}: check the bridge and update BRIDGED_SANIC"
        )
    app.ctx.rasa_api_guard = True
    token = (os.environ.get("RASA_API_TOKEN") or "").strip()
    # Started by bot/serve.py, Rasa's own --auth-token is the launcher's per-run value; started
    # by hand (or the Helm chart) it is RASA_API_TOKEN itself.
    app.register_middleware(_token_guard(token, (os.environ.get(BRIDGE_TOKEN_VARIABLE) or "").strip()), "request")
    app.register_middleware(_malformed_as_400, "response")
    app.register_middleware(_close_after_unread_body, "response")
