"""The agent inbox's sign-in, sessions, CSRF checks, roles, audit view and OIDC, over real HTTP.

The inbox channel runs in a real Sanic server on loopback (as in
tests/test_channels_webhooks.py) with a real SQLite database; OpenID Connect
sign-in goes to a local stand-in provider that speaks the protocol
(tests/oidc_standin.py). Opening and acting on conversations needs the real
assistant behind the desk: tests/e2e/attacks/test_staff.py does that.
"""
from __future__ import annotations

import csv
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional, Tuple

import pytest

from bot.channels import inbox as inbox_module
from bot.channels.inbox import AgentInbox
from bot.handoff.queue import HandoffQueue
from bot.security import audit, staff
from bot.security.oidc import OidcProvider
from core import db
from tests.oidc_standin import OidcStandIn, no_redirects
from tests.test_channels_webhooks import ServedChannels

PASSWORD = "correct horse battery staple"


class Client:
    """One browser's view of the inbox: its cookie and CSRF token."""

    def __init__(self, served: ServedChannels) -> None:
        self.base = served.url + "/webhooks/inbox"
        self.cookie: Optional[str] = None
        self.csrf: Optional[str] = None

    def call(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
             raw: Optional[bytes] = None) -> Tuple[int, Dict[str, str], Any]:
        sent = {"Content-Type": "application/json"} if method == "POST" else {}
        if self.cookie:
            sent["Cookie"] = self.cookie
        if self.csrf and method == "POST":
            sent["X-CSRF-Token"] = self.csrf
        sent.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if method == "POST" else None)
        request = urllib.request.Request(self.base + path, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, got, text = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, got, text = error.code, error.headers, error.read()
        try:
            return status, got, json.loads(text)
        except ValueError:
            return status, got, text.decode()

    def login(self, username: str, password: str = PASSWORD, **extra: Any) -> Tuple[int, Dict[str, str], Any]:
        status, headers, body = self.call("POST", "/login", {"username": username, "password": password, **extra})
        if status == 200:
            self.cookie = headers["Set-Cookie"].split(";")[0]
            self.csrf = body["csrf_token"]
        return status, headers, body


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return db.connect(f"sqlite:///{tmp_path_factory.mktemp('inbox') / 'assistant.db'}")


@pytest.fixture(scope="module")
def accounts(engine):
    for name, role in (("alex", "agent"), ("sam", "supervisor"), ("ada", "admin")):
        staff.add_account(engine, name, PASSWORD, role=role, display_name=name.title())
    return engine


@pytest.fixture(scope="module")
def served(accounts, engine):
    server = ServedChannels([AgentInbox(engine)], engine).start()
    yield server
    server.stop()


def signed_in(served, username: str) -> Client:
    client = Client(served)
    assert client.login(username)[0] == 200
    return client


# ------------------------------------------------------------------ sign-in

def test_an_agent_signs_in_with_username_and_password_and_gets_a_strict_cookie(served, engine):
    HandoffQueue(engine).open("web:conv-inbox-1", "asked", customer_id="c_0042", channel="web")
    client = Client(served)
    status, headers, body = client.login("Alex", name="Mallory the Great")  # a self-declared name is ignored
    assert status == 200
    assert (body["username"], body["name"], body["role"]) == ("alex", "Alex", "agent") and len(body["csrf_token"]) >= 43
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/webhooks/inbox" in cookie
    assert "Secure" not in cookie  # plain http on localhost outside production mode
    status, _, listed = client.call("GET", "/api/conversations")
    assert status == 200
    assert [(c["conversation_id"], c["status"], c["position"]) for c in listed["conversations"]] == [("web:conv-inbox-1", "waiting", 1)]
    assert client.call("GET", "/api/me")[2] == body


def test_percent_encoded_conversation_ids_and_usernames_are_decoded(served, engine):
    # The page sends encodeURIComponent("web:conv-encoded"): the desk finds the waiting conversation
    # (and fails only for want of an assistant here), and says "not waiting" for an unknown one.
    HandoffQueue(engine).open("web:conv-encoded", "asked", customer_id="c_0043", channel="web")
    agent, admin = signed_in(served, "alex"), signed_in(served, "ada")
    status, _, body = agent.call("POST", "/api/conversations/web%3Aconv-encoded/take", {})
    assert (status, body) == (409, {"error": "the assistant has no model loaded yet"})  # found; no assistant here
    status, _, body = agent.call("POST", "/api/conversations/web%3Anobody/take", {})
    assert (status, body) == (409, {"error": "this conversation is not waiting for an agent"})
    assert admin.call("POST", "/api/accounts/sam%40nowhere/reset", {})[2] == {"error": "no account named 'sam@nowhere'"}


def test_in_production_mode_the_cookie_is_always_secure(served, monkeypatch):
    monkeypatch.setattr(inbox_module, "current_mode", lambda: "production")
    status, headers, _ = Client(served).login("alex")
    assert status == 200 and "Secure" in headers["Set-Cookie"]


def test_a_wrong_password_is_refused_with_401_no_cookie_and_audited(served, engine):
    status, headers, body = Client(served).login("alex", "not the password")
    assert (status, body) == (401, {"error": "wrong username or password"}) and "Set-Cookie" not in headers
    [row] = audit.recent(engine, limit=1)
    assert (row["action"], row["actor"], row["client"], row["detail"]["reason"]) == (
        "signin.failed", "alex", "127.0.0.1", "wrong password")


@pytest.mark.parametrize(
    "raw, content_type",
    [(b"{bad", "application/json"), (b"[]", "application/json"), (b'{"username": 1, "password": "x"}', "application/json"),
     (b"username=a&password=b", "application/x-www-form-urlencoded"), (b'{"username": "", "password": "x"}', "application/json"),
     (b'{"name": "alex", "password": "x"}', "application/json")],
)
def test_malformed_sign_ins_get_400(served, raw, content_type):
    status, headers, _ = Client(served).call("POST", "/login", raw=raw, headers={"Content-Type": content_type})
    assert status == 400 and "Set-Cookie" not in headers


def test_the_client_address_is_forwarded_only_by_trusted_proxies(served, engine, monkeypatch):
    spoofed = {"X-Forwarded-For": "203.0.113.50"}
    Client(served).call("POST", "/login", {"username": "alex", "password": "wrong password!"}, headers=spoofed)
    assert audit.recent(engine, limit=1)[0]["client"] == "127.0.0.1"  # no proxy trusted: the header is ignored
    monkeypatch.setattr(inbox_module, "_proxy_hops", lambda: 1)  # ingress_proxy_hops: 1, as behind the Helm ingress
    Client(served).call("POST", "/login", {"username": "alex", "password": "wrong password!"}, headers=spoofed)
    assert audit.recent(engine, limit=1)[0]["client"] == "203.0.113.50"
    assert Client(served).login("alex")[0] == 200  # (the right password clears the account's count)


def test_a_sign_in_posted_from_another_site_is_refused(served):
    client = Client(served)
    status, _, body = client.call("POST", "/login", {"username": "alex", "password": PASSWORD},
                                  headers={"Origin": "https://evil.example"})
    assert status == 403 and "another site" in body["error"]


def test_the_api_needs_a_session(served):
    for path in ("/api/me", "/api/conversations", "/api/conversations/web:conv-inbox-1", "/api/audit", "/api/accounts"):
        assert Client(served).call("GET", path)[0] == 401, path
    forged = Client(served)
    forged.cookie = "inbox_session=" + "A" * 43
    assert forged.call("GET", "/api/me")[0] == 401


def test_repeated_failures_lock_the_account_with_429_and_retry_after(engine, accounts):
    server = ServedChannels([AgentInbox(engine)], engine).start()
    try:
        staff.add_account(engine, "locky", PASSWORD)
        for _ in range(staff.ACCOUNT_FREE_FAILURES):
            assert Client(server).login("locky", "wrong password!")[0] == 401
        status, headers, body = Client(server).login("locky")
        assert status == 429 and headers["Retry-After"] == "1" and "try again" in body["error"]
    finally:
        server.stop()


def test_an_inbox_without_accounts_says_how_to_add_one(tmp_path):
    empty = db.connect(f"sqlite:///{tmp_path / 'empty.db'}")
    server = ServedChannels([AgentInbox(empty)], empty).start()
    try:
        status, _, body = Client(server).login("alex")
        assert status == 401 and "python -m bot.security.admin agent add" in body["error"]
    finally:
        server.stop()


# ------------------------------------------------------------------ CSRF and sessions

@pytest.mark.parametrize(
    "headers, expected",
    [({"X-CSRF-Token": ""}, 403), ({"X-CSRF-Token": "not-the-token"}, 403),
     ({"Origin": "https://evil.example"}, 403), ({"Origin": "null"}, 403), ({"Sec-Fetch-Site": "cross-site"}, 403),
     ({"Content-Type": "text/plain"}, 400)],
    ids=["missing-token", "wrong-token", "other-origin", "null-origin", "cross-site-fetch", "not-json"],
)
def test_state_changing_requests_need_the_csrf_token_same_origin_and_json(served, headers, expected):
    client = signed_in(served, "alex")
    status, _, body = client.call("POST", "/api/conversations/web:conv-inbox-1/take", {}, headers=headers)
    assert status == expected, body
    assert client.call("POST", "/logout", {}, headers=headers)[0] == 403 if expected == 403 else True
    assert client.call("GET", "/api/me")[0] == 200  # nothing happened to the session


def test_sign_out_revokes_the_session_on_the_server(served, engine):
    client = signed_in(served, "alex")
    kept = client.cookie
    status, headers, _ = client.call("POST", "/logout", {})
    assert status == 200 and "Max-Age=0" in headers["Set-Cookie"]
    client.cookie = kept  # a copy of the cookie taken before signing out
    assert client.call("GET", "/api/me")[0] == 401
    assert audit.recent(engine, limit=1)[0]["action"] == "signout"


def test_changing_ones_password_ends_every_session(served, engine):
    client, other = signed_in(served, "sam"), signed_in(served, "sam")
    status, _, body = client.call("POST", "/api/password", {"current_password": "wrong one!", "new_password": PASSWORD + "!"})
    assert status == 403 and client.call("GET", "/api/me")[0] == 200
    assert client.call("POST", "/api/password", {"current_password": PASSWORD, "new_password": "short"})[0] == 400
    assert client.call("POST", "/api/password", {"current_password": PASSWORD, "new_password": PASSWORD + "!"})[0] == 200
    assert client.call("GET", "/api/me")[0] == 401 and other.call("GET", "/api/me")[0] == 401
    assert Client(served).login("sam", PASSWORD + "!")[0] == 200
    staff.reset_password(engine, "sam", PASSWORD)  # as the other tests expect


# ------------------------------------------------------------------ roles

def test_an_agent_cannot_read_the_audit_log_or_manage_accounts(served):
    agent = signed_in(served, "alex")
    for path in ("/api/audit", "/api/audit/export?format=csv", "/api/accounts"):
        status, _, body = agent.call("GET", path)
        assert status == 403 and "role" in body["error"], path
    assert agent.call("POST", "/api/accounts", {"username": "eve", "role": "admin"})[0] == 403
    assert agent.call("POST", "/api/accounts/sam/reset", {})[0] == 403


def test_a_supervisor_reads_and_exports_the_audit_log(served, engine):
    supervisor = signed_in(served, "sam")
    status, _, body = supervisor.call("GET", "/api/audit?limit=5")
    assert status == 200 and len(body["entries"]) == 5 and body["entries"][0]["action"] == "signin"
    status, _, body = supervisor.call("GET", "/api/audit?action=signin.failed&actor=alex")
    assert status == 200 and body["entries"] and {e["action"] for e in body["entries"]} == {"signin.failed"}
    assert supervisor.call("GET", "/api/audit?limit=many")[0] == 400
    status, headers, text = supervisor.call("GET", "/api/audit/export?format=csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv") and "attachment" in headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {"signin", "signin.failed", "account.add"} <= {r["action"] for r in rows}
    status, _, text = supervisor.call("GET", "/api/audit/export?format=jsonl")
    assert status == 200 and all(json.loads(line)["id"] for line in text.splitlines())
    assert supervisor.call("GET", "/api/audit/export?format=xlsx")[0] == 400
    assert audit.recent(engine, limit=1, action="audit.export")[0]["actor"] == "sam"
    assert supervisor.call("GET", "/api/accounts")[0] == 403


def test_supervisors_see_the_analytics_page_and_agents_do_not(served):
    status, headers, page = signed_in(served, "sam").call("GET", "/analytics?since=2026-01-01&until=2026-01-31")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and "<html" in page.lower()
    assert signed_in(served, "sam").call("GET", "/analytics?since=yesterday")[0] == 400
    assert signed_in(served, "alex").call("GET", "/analytics")[0] == 403


def test_an_admin_adds_resets_and_disables_accounts(served, engine):
    admin = signed_in(served, "ada")
    status, _, body = admin.call("POST", "/api/accounts", {"username": "Nia", "role": "agent", "display_name": "Nia Okafor"})
    assert status == 201 and body["account"]["display_name"] == "Nia Okafor" and len(body["password"]) >= 20
    assert admin.call("POST", "/api/accounts", {"username": "nia", "role": "agent"})[0] == 409
    assert admin.call("POST", "/api/accounts", {"username": "x y", "role": "agent"})[0] == 400
    assert admin.call("POST", "/api/accounts", {"username": "zed", "role": "root"})[0] == 400
    nia = signed_in_with(served, "nia", body["password"])
    status, _, reset = admin.call("POST", "/api/accounts/nia/reset", {})
    assert status == 200 and reset["password"] != body["password"]
    assert nia.call("GET", "/api/me")[0] == 401  # reset ends the sessions
    nia = signed_in_with(served, "nia", reset["password"])
    assert admin.call("POST", "/api/accounts/nia/disable", {})[2]["account"]["disabled"] is True
    assert nia.call("GET", "/api/me")[0] == 401 and Client(served).login("nia", reset["password"])[0] == 401
    assert admin.call("POST", "/api/accounts/ada/disable", {})[0] == 409
    assert admin.call("POST", "/api/accounts/nobody/disable", {})[0] == 404
    assert [r["action"] for r in audit.recent(engine, limit=50, target="nia") if r["actor"] == "ada"] == [
        "account.disable", "account.reset", "account.add"]


def signed_in_with(served, username: str, password: str) -> Client:
    client = Client(served)
    assert client.login(username, password)[0] == 200
    return client


# ------------------------------------------------------------------ OpenID Connect

@pytest.fixture(scope="module")
def provider():
    with OidcStandIn(client_id="northwind-inbox", client_secret="stand-in-client-secret") as standin:
        yield standin


@pytest.fixture(scope="module")
def oidc_served(provider, accounts, engine):
    staff.add_account(engine, "robin@example.com", role="supervisor", display_name="Robin", oidc_only=True)
    staff.add_account(engine, "gone@example.com", role="agent", oidc_only=True)
    staff.disable_account(engine, "gone@example.com")
    channel = AgentInbox(engine, oidc=OidcProvider(provider.issuer, provider.client_id, provider.client_secret))
    server = ServedChannels([channel], engine).start()
    yield server
    server.stop()


def oidc_sign_in(served, state: Optional[str] = None) -> Tuple[int, Dict[str, str], Client]:
    """Walk the browser through start -> provider -> callback; (status, headers) of the callback and the client."""
    opener = no_redirects()
    client = Client(served)

    def get(url: str, cookie: Optional[str] = None):
        request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
        try:
            with opener.open(request, timeout=30) as answer:
                return answer.status, answer.headers
        except urllib.error.HTTPError as error:
            return error.code, error.headers

    status, headers = get(client.base + "/oidc/start")
    assert status == 303
    pending = headers["Set-Cookie"].split(";")[0]
    assert "SameSite=Lax" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    status, headers = get(headers["Location"])  # the provider
    assert status == 302
    back = headers["Location"]
    if state is not None:
        parts = urllib.parse.urlsplit(back)
        query = dict(urllib.parse.parse_qsl(parts.query), state=state)
        back = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    status, headers = get(back, pending)
    cookies = headers.get_all("Set-Cookie") or []
    session = [c for c in cookies if c.startswith("inbox_session=") and "Max-Age=0" not in c]
    if session:
        client.cookie = session[0].split(";")[0]
    return status, dict(headers), client


def test_oidc_sign_in_uses_pkce_state_and_nonce_and_opens_a_session(oidc_served, provider, engine):
    provider.person = {"sub": "u-17", "preferred_username": "robin@example.com", "email": "robin@example.com"}
    status, headers, client = oidc_sign_in(oidc_served)
    assert status == 303 and headers["Location"] == "/webhooks/inbox/"
    asked = provider.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["state"] and asked["nonce"] and "openid" in asked["scope"]
    assert provider.token_requests[-1]["code_verifier"]
    status, _, me = client.call("GET", "/api/me")
    assert status == 200 and (me["username"], me["name"], me["role"]) == ("robin@example.com", "Robin", "supervisor")
    [row] = audit.recent(engine, limit=1, action="signin")
    assert (row["actor"], row["detail"]) == ("robin@example.com", {"method": "oidc"})


@pytest.mark.parametrize(
    "person, tamper, foreign_key, state, reason",  # foreign_key: True (unpublished key) or "hs256"
    [
        ({"sub": "u-9", "preferred_username": "stranger@example.com"}, {}, False, None, "no enabled inbox account"),
        ({"sub": "u-8", "preferred_username": "gone@example.com"}, {}, False, None, "no enabled inbox account"),
        ({"sub": "u-17", "preferred_username": "robin@example.com"}, {}, True, None, "ID token"),
        ({"sub": "u-17", "preferred_username": "robin@example.com"}, {}, "hs256", None, "ID token was refused"),
        ({"sub": "u-17", "preferred_username": "robin@example.com"}, {"aud": "another-app"}, False, None, "aud"),
        ({"sub": "u-17", "preferred_username": "robin@example.com"}, {"iss": "https://evil.example"}, False, None, "iss"),
        ({"sub": "u-17", "preferred_username": "robin@example.com"}, {"exp": 1_000_000}, False, None, "expired"),
        ({"sub": "u-17", "preferred_username": "robin@example.com"}, {"nonce": "replayed"}, False, None, "nonce"),
        ({"sub": "u-17", "preferred_username": "robin@example.com"}, {}, False, "forged-state", "state mismatch"),
    ],
    ids=["unknown-account", "disabled-account", "unpublished-key", "hs256-with-client-secret", "wrong-aud", "wrong-iss", "expired", "wrong-nonce", "wrong-state"],
)
def test_oidc_answers_that_do_not_check_out_open_no_session(oidc_served, provider, engine, person, tamper, foreign_key, state, reason):
    provider.person, provider.tamper = person, tamper
    provider.foreign_key, provider.hs256 = foreign_key is True, foreign_key == "hs256"
    try:
        status, headers, client = oidc_sign_in(oidc_served, state)
    finally:
        provider.tamper, provider.foreign_key, provider.hs256 = {}, False, False
    assert status == 303 and "signin_error=" in headers["Location"]
    assert reason in urllib.parse.unquote_plus(headers["Location"])
    assert client.cookie is None
    [row] = audit.recent(engine, limit=1)
    assert row["action"] == "signin.failed" and row["detail"]["method"] == "oidc" and reason in row["detail"]["reason"]


def test_a_sign_in_left_at_the_provider_for_over_10_minutes_is_not_finished(oidc_served, provider, engine):
    from bot.security.oidc import Pending

    fresh = Pending("s", "n", "v", time.time() - 590)
    assert Pending.from_dict(fresh.as_dict()) == fresh
    assert Pending.from_dict({**fresh.as_dict(), "started": time.time() - 610}) is None
    assert Pending.from_dict({"state": "s"}) is None


def test_without_oidc_settings_the_oidc_routes_are_off(served):
    assert Client(served).call("GET", "/oidc/start")[0] == 404
    assert Client(served).call("GET", "/signin-options")[2] == {"password": True, "oidc": False}
