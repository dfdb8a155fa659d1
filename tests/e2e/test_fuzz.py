"""Bad input against every HTTP endpoint of the running server, property-based (hypothesis).

Endpoints: REST, the widget's socket.io (polling handshake and packets), Slack
(unsigned, and signed with the test signing secret so that fuzzed bodies
reach the parser), Telegram (with and without the secret header), the agent
inbox (signed in and not), the web pages, Rasa's HTTP API (with and without
the token) and /metrics, /health, /ready.

Inputs: malformed JSON, wrong types, binary, unicode edge cases, wrong
content types, and on every endpoint the same explicit extremes: a body over
1 MB, JSON nested 10,000 levels deep, invalid UTF-8, an empty body.

Properties: never a 5xx, never a Python traceback or a file path in the
body, and the server keeps serving (after each endpoint's batch a normal
message still gets its answer). The examples are derandomised (the same
cases every run); how many ran per endpoint is printed as a table at the end
and written to reports/fuzz.txt.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import urllib.parse
import uuid
from collections import defaultdict
from typing import Any, Dict, Iterator, Optional

import pytest
import requests
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.standins import SlackWebAPI, TelegramBotAPI
from core.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

COMMON = dict(
    derandomize=True,  # a fixed sequence of cases: the same run every time, no example database
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
    # No shrinking: each case is a round trip to the server, and a failing case is printed as found.
    phases=[Phase.explicit, Phase.generate],
)

# ------------------------------------------------------------------ inputs

class Blob(bytes):
    """Bytes that print short: hypothesis prints the arguments of a failing case."""

    def __repr__(self) -> str:
        return f"Blob({len(self)} bytes: {bytes(self[:48])!r}...)"


HUGE = Blob(json.dumps({"sender": "fuzz-huge", "message": "x" * 1_200_000}).encode())  # > 1 MB
DEEP_LIST = Blob(("[" * 10_000 + "]" * 10_000).encode())
DEEP_OBJECT = Blob(('{"a":' * 10_000 + "1" + "}" * 10_000).encode())
EXTREMES = {
    "huge": HUGE,
    "deep list": DEEP_LIST,
    "deep object": DEEP_OBJECT,
    # Deep, but within what Python's JSON reader takes: it must not break what comes after it.
    "deep metadata": Blob(json.dumps({"sender": "fuzz-deep", "message": "hi", "metadata": json.loads("[" * 900 + "]" * 900)}).encode()),
    "deep payload": Blob(json.dumps({"sender": "fuzz-payload", "message": "/greet" + '{"a":' * 1500}).encode()),
    "invalid utf-8": Blob(b"\xff\xfe\xfa" + "{\"message\": \"caf\xe9\"}".encode("latin-1")),
    "empty": Blob(b""),
    "null": Blob(b"null"),
    "nul bytes": Blob(b"\x00" * 64),
}
# Strings that have broken parsers: lone surrogates (as JSON escapes), NUL, bidi overrides,
# zero-width and combining characters, line separators, a BOM, emoji sequences.
EDGE_TEXTS = [
    "\\ud800", "\x00", "\u202e\u2066evil\u2069", "\u200b\u200d\ufeff", "e" + "\u0301" * 500,
    "\u2028\u2029", "👩‍👩‍👧‍👦🏳️‍🌈", "\U0010ffff", "%s%n%x", "{{7*7}}", "<script>alert(1)</script>",
    "../../../../etc/passwd", "' OR 1=1 --", "/rate_answer{\"answer_id\": ", "/select_suggestion{",
]
CONTENT_TYPES = [
    "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/octet-stream", "", "application/json; charset=latin-1", "application/xml",
]

texts = st.one_of(st.text(max_size=60), st.sampled_from(EDGE_TEXTS))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), texts,
)
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)), max_leaves=12
)


def header(text: str) -> str:
    """`text` as an HTTP header value can carry it (printable ASCII)."""
    return "".join(c for c in text if 32 < ord(c) < 127)


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as Python writes them: not strict JSON either


raw_bodies = st.one_of(st.binary(max_size=512), json_values.map(as_json), texts.map(lambda t: t.encode("utf-8", "surrogatepass")))


def shaped(**fields: st.SearchStrategy) -> st.SearchStrategy:
    """JSON objects with these keys (each kept or left out) holding right- or wrong-typed values."""
    return st.fixed_dictionaries({}, optional={k: st.one_of(v, json_values) for k, v in fields.items()}).map(as_json)


# ------------------------------------------------------------------ the client, the properties, the counts

COUNTS: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
LEAKS = [
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"]+\.py", line \d+'),
    re.compile(re.escape(str(PROJECT_ROOT))),
    re.compile(r"site-packages|/usr/lib/python3"),
]


class Fuzzer:
    """Sends requests, checks every answer (no 5xx, no leak) and counts them per endpoint."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()

    def send(self, endpoint: str, method: str, path: str, body: Optional[bytes] = None,
             headers: Optional[Dict[str, str]] = None, session: Optional[requests.Session] = None,
             timeout: float = 60) -> requests.Response:
        started = time.monotonic()
        answer = (session or self.http).request(method, self.base + path, data=body, headers=headers or {}, timeout=timeout)
        elapsed = time.monotonic() - started
        counts = COUNTS[endpoint]
        counts["cases"] += 1
        counts[f"{answer.status_code // 100}xx"] += 1
        counts[answer.status_code] += 1
        counts["slowest_ms"] = max(counts["slowest_ms"], int(elapsed * 1000))
        shown = f"{method} {path[:120]} ({len(body or b'')} bytes) -> {answer.status_code}: {answer.text[:300]!r}"
        assert answer.status_code < 500, f"server error: {shown}"
        for leak in LEAKS:
            assert not leak.search(answer.text), f"the answer shows the server's insides ({leak.pattern}): {shown}"
        return answer


@pytest.fixture(scope="module")
def fuzz(assistant, request) -> Iterator[Fuzzer]:
    """The fuzzer, with Slack's and Telegram's APIs stood in (so answers to fuzzed messages go somewhere)."""
    slack_port = urllib.parse.urlparse(assistant.env["SLACK_API_BASE_URL"]).port
    telegram_port = urllib.parse.urlparse(assistant.env["TELEGRAM_API_BASE_URL"]).port
    started = time.monotonic()
    with SlackWebAPI(port=slack_port), TelegramBotAPI(port=telegram_port):
        yield Fuzzer(assistant.url)
    report = table(time.monotonic() - started)
    out = PROJECT_ROOT / "reports" / "fuzz.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report, encoding="utf-8")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in report.splitlines():
            reporter.write_line(line)


def table(seconds: float) -> str:
    columns = ("cases", "2xx", "4xx", "5xx", "slowest_ms")

    def statuses(c: Dict) -> str:
        return " ".join(f"{code}x{n}" for code, n in sorted((k, v) for k, v in c.items() if isinstance(k, int)))

    rows = [("endpoint", *columns, "statuses")]
    rows += [(name, *(str(c.get(k, 0)) for k in columns), statuses(c)) for name, c in COUNTS.items()]
    rows.append(("total", *(str(sum(c.get(k, 0) for c in COUNTS.values())) if k != "slowest_ms" else "" for k in columns), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    ]
    rule = "-" * max(len(line) for line in lines)
    lines.insert(1, rule)
    lines.insert(-1, rule)
    return f"Fuzz cases per endpoint (hypothesis, derandomised), {seconds:.0f} s:\n" + "\n".join(lines) + "\n"


def still_serving(assistant, fuzz: Fuzzer) -> None:
    """A normal customer message still gets its answer after a batch of bad input."""
    answer = fuzz.http.post(
        f"{assistant.url}/webhooks/rest/webhook", json={"sender": f"fuzz-after-{uuid.uuid4().hex[:8]}", "message": "hello"}, timeout=60
    )
    assert answer.status_code == 200 and answer.json() and answer.json()[0].get("text"), answer.text[:300]


def with_extremes(test):
    """The explicit extremes as examples of a test taking `body` and `content_type`."""
    for body in EXTREMES.values():
        test = example(body=body, content_type="application/json")(test)
    return example(body=b'{"sender": "fuzz", "message": "hi"}', content_type="text/plain")(test)


# ------------------------------------------------------------------ REST

def test_rest_webhook(assistant, fuzz):
    rest_bodies = shaped(sender=st.one_of(texts, st.integers()), message=texts, metadata=st.dictionaries(texts, json_values, max_size=3))
    # Well-formed messages with odd text: these reach the assistant (NLU, dialogue, actions, tracker store).
    messages = st.fixed_dictionaries(
        {"sender": texts.map(lambda t: "fuzz-" + t), "message": texts},
        optional={"metadata": st.dictionaries(texts, json_values, max_size=3)},
    ).map(as_json)

    @settings(max_examples=400, **COMMON)
    @given(body=st.one_of(raw_bodies, rest_bodies, messages), content_type=st.sampled_from(CONTENT_TYPES))
    @with_extremes
    def case(body, content_type):
        answer = fuzz.send("REST /webhooks/rest/webhook", "POST", "/webhooks/rest/webhook", body, {"Content-Type": content_type})
        if answer.status_code == 200:
            replies = answer.json()
            assert isinstance(replies, list)
            try:
                sent = json.loads(body)
            except (ValueError, RecursionError):
                sent = None
            if isinstance(sent, dict) and isinstance(sent.get("message"), str) and sent["message"].strip():
                assert replies, f"a message was taken (200) but nothing was answered: {body[:200]!r}"

    case()
    still_serving(assistant, fuzz)


# ------------------------------------------------------------------ socket.io (the widget)

def _handshake(fuzz: Fuzzer, session: requests.Session) -> str:
    answer = fuzz.send("socket.io", "GET", "/socket.io/?EIO=4&transport=polling", session=session)
    assert answer.status_code == 200 and answer.text.startswith("0"), answer.text[:200]
    return json.loads(answer.text[1:])["sid"]


socketio_packets = st.one_of(
    raw_bodies,
    st.builds(lambda t, v: ("4" + t + json.dumps(v)).encode(), st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "9", ""]), json_values),
    st.builds(
        lambda name, data: ("42" + json.dumps([name, data])).encode(),
        st.one_of(st.sampled_from(["session_request", "user_uttered", "history_request"]), texts),
        st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "message": texts, "session_id": texts, "customer_id": texts, "customer_token": texts,
            "metadata": st.dictionaries(texts, json_values, max_size=2),
        })),
    ),
)


def test_socketio(assistant, fuzz):
    @settings(max_examples=200, **COMMON)
    @given(
        query=st.dictionaries(st.sampled_from(["EIO", "transport", "sid", "t", "b64"]), texts, max_size=3),
        packets=st.lists(socketio_packets, min_size=1, max_size=3),
    )
    @example(query={}, packets=[b"2"])  # a PING, which only the server may send: its POST used to hang for ever
    @example(query={}, packets=[b"9x", b"4"])
    @example(query={}, packets=[Blob(b"42" + DEEP_LIST)])
    @example(query={}, packets=[Blob(b"42" + HUGE)])
    @example(query={}, packets=[Blob(b"42" + json.dumps(["user_uttered", {"message": "x" * 100_000}]).encode())])
    def case(query, packets):
        session = requests.Session()
        # Garbage in the query string of the handshake itself.
        fuzz.send("socket.io", "GET", "/socket.io/?" + urllib.parse.urlencode(query), session=session)
        sid = _handshake(fuzz, session)
        path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        fuzz.send("socket.io", "POST", path, b"40", {"Content-Type": "text/plain"}, session=session)
        fuzz.send("socket.io", "POST", path, b'42["session_request",{}]', {"Content-Type": "text/plain"}, session=session)
        for packet in packets:
            fuzz.send("socket.io", "POST", path, packet, {"Content-Type": "text/plain;charset=UTF-8"}, session=session)

    case()
    still_serving(assistant, fuzz)


# ------------------------------------------------------------------ Slack

def _slack_signed(secret: str, body: bytes, content_type: str) -> Dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


slack_messages = st.fixed_dictionaries({
    "type": st.just("event_callback"),
    "event": st.fixed_dictionaries(
        {"type": st.sampled_from(["message", "app_mention"]), "channel_type": st.sampled_from(["im", "channel"]),
         "channel": texts.map(lambda t: "D" + t), "user": texts.map(lambda t: "U" + t), "text": texts},
        optional={"ts": st.one_of(texts, json_values), "thread_ts": st.one_of(texts, json_values), "bot_id": texts, "subtype": texts},
    ),
}, optional={"authorizations": st.one_of(st.lists(st.fixed_dictionaries({"user_id": texts}), max_size=2), json_values),
             "authed_users": st.one_of(st.lists(texts, max_size=2), json_values)}).map(as_json)
slack_events = shaped(
    type=st.sampled_from(["event_callback", "url_verification", "block_actions"]),
    challenge=texts,
    event=st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["message", "app_mention"]), "channel_type": st.sampled_from(["im", "channel"]),
        "channel": texts, "user": texts, "text": texts, "ts": texts, "thread_ts": texts, "bot_id": texts,
    }),
    authorizations=st.lists(st.fixed_dictionaries({"user_id": texts}), max_size=2),
    authed_users=st.lists(texts, max_size=2),
)
slack_payloads = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["block_actions", "interactive_message", "view_submission"]),
    "user": st.fixed_dictionaries({}, optional={"id": texts}),
    "channel": st.fixed_dictionaries({}, optional={"id": texts}),
    "message": st.fixed_dictionaries({}, optional={"ts": texts, "thread_ts": texts}),
    "actions": st.lists(st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["button", "static_select", "datepicker", "overflow"]), "value": texts,
        "selected_option": json_values, "action_id": texts,
    }), max_size=2),
}).map(lambda payload: urllib.parse.urlencode({"payload": json.dumps(payload)}).encode())
slack_forms = st.one_of(
    slack_payloads,
    st.dictionaries(st.sampled_from(["payload", "other"]), texts, max_size=2).map(lambda f: urllib.parse.urlencode(f).encode()),
    raw_bodies,
)


def test_slack_signed(assistant, fuzz):
    secret = assistant.env["SLACK_SIGNING_SECRET"]

    @settings(max_examples=400, **COMMON)
    @given(
        body_and_type=st.one_of(
            st.tuples(st.one_of(slack_messages, slack_events, raw_bodies), st.just("application/json")),
            st.tuples(slack_forms, st.just("application/x-www-form-urlencoded")),
            st.tuples(raw_bodies, st.sampled_from(CONTENT_TYPES)),
        ),
    )
    @example(body_and_type=(DEEP_OBJECT, "application/json"))
    @example(body_and_type=(DEEP_LIST, "application/json"))
    @example(body_and_type=(Blob(urllib.parse.urlencode({"payload": DEEP_LIST.decode()}).encode()), "application/x-www-form-urlencoded"))
    @example(body_and_type=(HUGE, "application/json"))
    @example(body_and_type=(as_json({"type": "event_callback", "authed_users": 5, "authorizations": 7, "event": {
        "type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "hi"}}), "application/json"))
    @example(body_and_type=(EXTREMES["invalid utf-8"], "application/x-www-form-urlencoded"))
    def case(body_and_type):
        body, content_type = body_and_type
        fuzz.send("Slack (signed)", "POST", "/webhooks/slack/webhook", body, _slack_signed(secret, body, content_type))

    case()
    still_serving(assistant, fuzz)


def test_slack_unsigned(assistant, fuzz):
    @settings(max_examples=80, **COMMON)
    @given(body=raw_bodies, content_type=st.sampled_from(CONTENT_TYPES),
           signature=st.one_of(st.none(), texts), timestamp=st.one_of(st.none(), texts, st.integers().map(str)))
    @example(body=HUGE, content_type="application/json", signature="v0=00", timestamp="0")
    @example(body=DEEP_LIST, content_type="application/json", signature=None, timestamp=None)
    def case(body, content_type, signature, timestamp):
        headers = {"Content-Type": content_type}
        if signature is not None:
            headers["X-Slack-Signature"] = header(signature)
        if timestamp is not None:
            headers["X-Slack-Request-Timestamp"] = header(timestamp)
        answer = fuzz.send("Slack (unsigned)", "POST", "/webhooks/slack/webhook", body, headers)
        assert answer.status_code in (401, 413), answer.status_code

    case()
    still_serving(assistant, fuzz)


# ------------------------------------------------------------------ Telegram

chats = st.fixed_dictionaries({}, optional={"id": st.one_of(st.integers(), texts), "type": texts})
users = st.fixed_dictionaries({}, optional={"id": st.one_of(st.integers(), texts), "is_bot": st.booleans(), "first_name": texts})
messages = st.fixed_dictionaries({}, optional={
    "message_id": st.integers(), "date": st.integers(), "chat": chats, "from": users, "text": texts,
    "entities": st.lists(json_values, max_size=2),
})
telegram_updates = shaped(
    update_id=st.integers(),
    message=messages,
    edited_message=messages,
    callback_query=st.fixed_dictionaries({}, optional={"id": texts, "from": users, "message": messages, "data": texts}),
)


def test_telegram_with_secret(assistant, fuzz):
    secret = assistant.env["TELEGRAM_SECRET_TOKEN"]

    @settings(max_examples=400, **COMMON)
    @given(body=st.one_of(telegram_updates, raw_bodies), content_type=st.sampled_from(CONTENT_TYPES))
    @with_extremes
    @example(body=as_json({"update_id": 1, "edited_message": {"message_id": 1, "date": -(2**62), "chat": {"id": 1}, "text": "hi"}}),
             content_type="application/json")  # a date out of range: aiogram raised OSError (500)
    def case(body, content_type):
        headers = {"Content-Type": content_type, "X-Telegram-Bot-Api-Secret-Token": secret}
        fuzz.send("Telegram (secret)", "POST", "/webhooks/telegram/webhook", body, headers)

    case()
    still_serving(assistant, fuzz)


def test_telegram_without_secret(assistant, fuzz):
    @settings(max_examples=60, **COMMON)
    @given(body=st.one_of(telegram_updates, raw_bodies), secret=st.one_of(st.none(), texts))
    def case(body, secret):
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = header(secret)
        answer = fuzz.send("Telegram (no secret)", "POST", "/webhooks/telegram/webhook", body, headers)
        assert answer.status_code in (401, 413), answer.status_code

    case()
    still_serving(assistant, fuzz)


# ------------------------------------------------------------------ the agent inbox

def _quoted(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="") or "x"


inbox_requests = st.one_of(
    st.tuples(st.just("POST"), st.just("/webhooks/inbox/login"), st.one_of(shaped(username=texts, password=texts), raw_bodies)),
    st.tuples(st.just("POST"), st.just("/webhooks/inbox/logout"), raw_bodies),
    st.tuples(st.just("GET"), st.sampled_from(["/webhooks/inbox/api/me", "/webhooks/inbox/api/conversations"]), st.just(b"")),
    st.tuples(st.just("GET"), texts.map(lambda c: f"/webhooks/inbox/api/conversations/{_quoted(c)}"), st.just(b"")),
    st.tuples(
        st.just("POST"),
        st.tuples(texts, st.one_of(st.sampled_from(["take", "reply", "handback"]), texts)).map(
            lambda ca: f"/webhooks/inbox/api/conversations/{_quoted(ca[0])}/{_quoted(ca[1])}"
        ),
        st.one_of(shaped(text=texts), raw_bodies),
    ),
    st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), texts.map(lambda p: f"/webhooks/inbox/{_quoted(p)}"), raw_bodies),
)


def _inbox(assistant, fuzz, signed_in: bool, max_examples: int) -> None:
    session = requests.Session()
    endpoint = "inbox (signed in)" if signed_in else "inbox (signed out)"
    if signed_in:
        username, password = assistant.inbox_account("agent", display_name="Fuzz Agent")
        login = fuzz.send(endpoint, "POST", "/webhooks/inbox/login", as_json({"username": username, "password": password}),
                          {"Content-Type": "application/json"}, session=session)
        assert login.status_code == 200
        session.headers["X-CSRF-Token"] = login.json()["csrf_token"]  # so the cases reach past the CSRF check

    @settings(max_examples=max_examples, **COMMON)
    @given(request=inbox_requests, content_type=st.sampled_from(CONTENT_TYPES))
    @example(request=("POST", "/webhooks/inbox/login", DEEP_OBJECT), content_type="application/json")
    @example(request=("POST", "/webhooks/inbox/api/conversations/x/reply", DEEP_LIST), content_type="application/json")
    @example(request=("POST", "/webhooks/inbox/api/conversations/x/reply", HUGE), content_type="application/json")
    @example(request=("GET", "/webhooks/inbox/api/conversations/" + "%00" * 3, b""), content_type="")
    def case(request, content_type):
        method, path, body = request
        if signed_in and path.endswith("/logout"):
            return  # would end the session the rest of the cases need
        fuzz.send(endpoint, method, path, body or None, {"Content-Type": content_type} if content_type else {}, session=session)

    case()
    still_serving(assistant, fuzz)


def test_inbox_signed_out(assistant, fuzz):
    _inbox(assistant, fuzz, signed_in=False, max_examples=200)


def test_inbox_signed_in(assistant, fuzz):
    _inbox(assistant, fuzz, signed_in=True, max_examples=200)


# ------------------------------------------------------------------ the web pages

def test_web_pages(assistant, fuzz):
    @settings(max_examples=150, **COMMON)
    @given(
        method=st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "DELETE"]),
        page=st.one_of(st.sampled_from(["", "health", "widget.js", "widget.js.map", ".."]), texts.map(_quoted)),
        query=st.dictionaries(st.sampled_from(["customer", "t", "lang"]), texts, max_size=2),
        body=st.one_of(st.just(b""), raw_bodies),
    )
    @example(method="GET", page="", query={"customer": "<script>alert(1)</script>"}, body=b"")
    @example(method="POST", page="", query={}, body=HUGE)
    def case(method, page, query, body):
        path = f"/webhooks/web/{page}" + ("?" + urllib.parse.urlencode(
            {k: v.encode("utf-8", "surrogatepass") for k, v in query.items()}) if query else "")
        answer = fuzz.send("web pages", method, path, body or None)
        if "customer" in query and answer.status_code == 200 and method == "GET" and page == "":
            assert "<script>alert(1)</script>" not in answer.text  # the customer id is escaped into the page

    case()
    still_serving(assistant, fuzz)


def test_an_oversized_body_the_route_refuses_does_not_break_the_next_request(assistant, fuzz):
    """Sanic answers 405 before reading a body, then closes the connection when the body is over the limit:
    the answer must say so, or the client's next request on the kept connection is reset (CI, 2026-12-05)."""
    session = requests.Session()
    for _ in range(20):
        refused = fuzz.send("web pages", "POST", "/webhooks/web/", bytes(HUGE), session=session)
        assert refused.status_code in (405, 413) and refused.headers.get("connection") == "close", refused.headers
        assert fuzz.send("web pages", "GET", "/webhooks/web/", session=session).status_code == 200


# ------------------------------------------------------------------ Rasa's HTTP API

def test_rasa_http_api_with_token(assistant, fuzz):
    token = assistant.env["RASA_API_TOKEN"]
    conversation = texts.map(lambda c: _quoted(c) if c.strip("/") else "fuzz")
    api_requests = st.one_of(
        st.tuples(st.just("POST"), st.just("/model/parse"), st.one_of(shaped(text=texts, message_id=texts), raw_bodies)),
        st.tuples(st.just("GET"), st.tuples(conversation, st.dictionaries(
            st.sampled_from(["include_events", "until"]), st.one_of(texts, st.sampled_from(["ALL", "APPLIED", "NONE", "AFTER_RESTART"])),
            max_size=2)).map(lambda ci: f"/conversations/{ci[0]}/tracker?" + urllib.parse.urlencode(
                {k: v.encode("utf-8", "surrogatepass") for k, v in ci[1].items()})), st.just(b"")),
        st.tuples(st.just("POST"), conversation.map(lambda c: f"/conversations/{c}/messages?"),
                  st.one_of(shaped(text=texts, sender=st.sampled_from(["user", "bot"]), parse_data=json_values), raw_bodies)),
        st.tuples(st.just("POST"), conversation.map(lambda c: f"/conversations/{c}/tracker/events?"),
                  st.one_of(st.lists(shaped(event=st.sampled_from(["user", "bot", "slot", "action", "restart", "reminder"]),
                                            text=texts, name=texts, value=json_values, timestamp=json_values),
                                     max_size=3).map(lambda bodies: b"[" + b",".join(bodies) + b"]"), raw_bodies)),
        st.tuples(st.just("POST"), conversation.map(lambda c: f"/conversations/{c}/predict?"), st.just(b"")),
        st.tuples(st.sampled_from(["GET", "POST"]), st.sampled_from(["/status?", "/version?", "/domain?", "/?"]), raw_bodies),
    )

    @settings(max_examples=500, **COMMON)
    @given(request=api_requests, content_type=st.sampled_from(["application/json", "text/plain", ""]))
    @example(request=("POST", "/model/parse", DEEP_LIST), content_type="application/json")
    @example(request=("POST", "/model/parse", b"[1, 2]"), content_type="application/json")
    @example(request=("POST", "/model/parse", b"not json"), content_type="application/json")
    @example(request=("POST", "/model/parse", HUGE), content_type="application/json")
    @example(request=("POST", "/conversations/fuzz/messages?", b"[1, 2]"), content_type="application/json")
    @example(request=("POST", "/conversations/fuzz/tracker/events?", DEEP_OBJECT), content_type="application/json")
    def case(request, content_type):
        method, path, body = request
        headers = {"Authorization": f"Bearer {token}", **({"Content-Type": content_type} if content_type else {})}
        fuzz.send("Rasa HTTP API (token)", method, path, body or None, headers)

    case()
    still_serving(assistant, fuzz)


def test_rasa_http_api_without_token(assistant, fuzz):
    @settings(max_examples=80, **COMMON)
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        path=st.sampled_from(["/model/parse", "/conversations/x/tracker", "/conversations/x/tracker/events",
                              "/conversations/x/messages", "/model", "/status", "/domain"]),
        token=st.one_of(st.none(), texts),
        body=raw_bodies,
    )
    def case(method, path, token, body):
        if token is not None:
            path += "?" + urllib.parse.urlencode({"token": token.encode("utf-8", "surrogatepass")})
        answer = fuzz.send("Rasa HTTP API (no token)", method, path, body or None, {"Content-Type": "application/json"})
        assert answer.status_code in (401, 403, 404, 405, 413), answer.status_code

    case()
    still_serving(assistant, fuzz)


# ------------------------------------------------------------------ /metrics, /health, /ready

def test_operations_endpoints(assistant, fuzz):
    """Also 404 where the ops channel is not mounted: the properties hold either way."""

    @settings(max_examples=120, **COMMON)
    @given(
        method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
        path=st.sampled_from(["/metrics", "/health", "/ready"]),
        query=st.dictionaries(texts, texts, max_size=2),
        authorization=st.one_of(st.none(), texts),
        body=st.one_of(st.just(b""), raw_bodies),
    )
    @example(method="POST", path="/health", query={}, authorization=None, body=HUGE)
    def case(method, path, query, authorization, body):
        headers = {}
        if authorization is not None:
            headers["Authorization"] = "Bearer " + header(authorization)
        if query:
            path += "?" + urllib.parse.urlencode({k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass") for k, v in query.items()})
        fuzz.send("/metrics /health /ready", method, path, body or None, headers)

    case()
    still_serving(assistant, fuzz)
