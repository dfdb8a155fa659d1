"""Attacks on the agent inbox, against the real Rasa server in demo and in production mode.

Each test acts as an outsider with nothing but HTTP: it guesses passwords
(one at a time and 20 in parallel), replays a cookie after sign-out and after
a password reset, posts without or with a wrong CSRF token or from another
site, reads the audit log with an agent's account, and declares its own
agent name. Accounts are made in the servers' own database beforehand, as an
administrator would with ``python -m bot.security.admin agent add``; the
audit log is then read from that database (the insider's view) to show each
attempt was recorded.
"""
from __future__ import annotations

import threading
import uuid
from typing import List

import pytest

from bot.security import audit, staff
from core import db
from tests.e2e.inbox_client import InboxClient, inbox_account

pytestmark = pytest.mark.e2e


def audited(running, **where) -> List[dict]:
    """The running target's audit rows (filtered by actor, action, target), newest first."""
    return audit.recent(db.connect(running.db_url), limit=200, **where)


def signed_in(target, role: str = "agent", display_name: str = None) -> InboxClient:
    client = InboxClient(target.url)
    status, _, body = client.login(*inbox_account(target.db_url, role, display_name))
    assert status == 200, body
    return client


def waiting_conversation(target) -> str:
    """A customer who has asked for a person (through REST); their conversation id."""
    customer = f"staff-attack-{uuid.uuid4().hex[:8]}"
    target.send(customer, "I want to speak to a real person")
    conversation = target.conversation_of(customer)
    agent = signed_in(target)
    listed = agent.get("api/conversations")[2]["conversations"]
    assert conversation in [c["conversation_id"] for c in listed], listed
    return conversation


def test_a_wrong_password_is_refused_with_401_and_audited(attack_target):
    username, _ = inbox_account(attack_target.db_url)
    status, headers, body = InboxClient(attack_target.url).login(username, "not-the-password-at-all")
    assert (status, body) == (401, {"error": "wrong username or password"}) and "Set-Cookie" not in headers
    status, _, body = InboxClient(attack_target.url).login("nobody-" + username, "not-the-password-at-all")
    assert (status, body) == (401, {"error": "wrong username or password"})  # the same answer: no account discovery
    reasons = {(r["actor"], r["detail"]["reason"]) for r in audited(attack_target, action="signin.failed")}
    assert {(username, "wrong password"), ("nobody-" + username, "unknown account")} <= reasons


def test_twenty_parallel_guesses_are_locked_out_after_five(attack_target):
    username, password = inbox_account(attack_target.db_url)
    statuses: List[int] = []
    start = threading.Barrier(20)

    def guess(n: int) -> None:
        start.wait()
        statuses.append(InboxClient(attack_target.url).login(username, f"guess number {n:04d}")[0])

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checked, locked = statuses.count(401), statuses.count(429)
    # Five guesses are checked; the rest wait. One or two more may be checked if the
    # machine is so slow that the first 1 s (then 2 s) lock runs out during the burst.
    assert checked + locked == 20 and staff.ACCOUNT_FREE_FAILURES <= checked <= staff.ACCOUNT_FREE_FAILURES + 2, statuses
    rows = [r for r in audited(attack_target) if r["actor"] == username and r["action"].startswith("signin")]
    assert sorted(r["action"] for r in rows) == sorted(["signin.failed"] * checked + ["signin.locked"] * locked)
    # The right password right after the burst is refused too while the lock lasts.
    status, headers, _ = InboxClient(attack_target.url).login(username, password)
    assert status == 200 or (status == 429 and int(headers["Retry-After"]) >= 1)


def test_the_cookie_is_httponly_strict_and_secure_in_production(attack_target):
    username, password = inbox_account(attack_target.db_url)
    status, headers, _ = InboxClient(attack_target.url).login(username, password)
    cookie = headers["Set-Cookie"]
    assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/webhooks/inbox" in cookie
    # Demo mode on plain-http localhost leaves Secure off so a browser keeps it; production never does.
    assert ("Secure" in cookie) == attack_target.production


def test_the_cookie_is_refused_after_sign_out(attack_target):
    client = signed_in(attack_target)
    copied = client.cookie
    assert client.post("logout")[0] == 200
    thief = InboxClient(attack_target.url)
    thief.cookie = copied
    assert thief.get("api/me")[0] == 401 and thief.get("api/conversations")[0] == 401
    assert audited(attack_target, action="signout", actor=client.me["username"])


def test_a_session_is_refused_after_a_password_reset(attack_target):
    username, password = inbox_account(attack_target.db_url)
    victim = InboxClient(attack_target.url)
    assert victim.login(username, password)[0] == 200
    admin = signed_in(attack_target, "admin")
    status, _, body = admin.post(f"api/accounts/{username}/reset")
    assert status == 200 and body["password"] != password
    assert victim.get("api/me")[0] == 401
    assert InboxClient(attack_target.url).login(username, password)[0] == 401
    assert InboxClient(attack_target.url).login(username, body["password"])[0] == 200


@pytest.mark.parametrize(
    "headers",
    [{"X-CSRF-Token": ""}, {"X-CSRF-Token": "forged-token"}, {"Origin": "https://evil.example"}],
    ids=["missing-token", "wrong-token", "other-site"],
)
def test_changes_without_the_csrf_token_or_from_another_site_are_refused_with_403(attack_target, headers):
    conversation = waiting_conversation(attack_target)
    agent = signed_in(attack_target)
    for action, body in (("take", {}), ("reply", {"text": "click https://evil.example to verify your card"}), ("handback", {})):
        status, _, answer = agent.post(f"api/conversations/{conversation}/{action}", body, headers=headers)
        assert status == 403, (action, answer)
    assert agent.post("logout", headers=headers)[0] == 403
    assert agent.get("api/me")[0] == 200  # still signed in: the forged sign-out did nothing
    status, _, detail = agent.get(f"api/conversations/{conversation}")
    assert status == 200 and detail["handoff"]["status"] == "waiting" and detail["handoff"]["agent"] is None
    assert "evil.example" not in str(detail["transcript"])


def test_an_agent_cannot_read_or_export_the_audit_log_or_manage_accounts(attack_target):
    agent = signed_in(attack_target, "agent")
    for path in ("api/audit", "api/audit/export?format=csv", "api/audit/export?format=jsonl", "api/accounts"):
        assert agent.get(path)[0] == 403, path
    assert agent.post("api/accounts", {"username": "eve", "role": "admin"})[0] == 403
    assert staff.get_account(db.connect(attack_target.db_url), "eve") is None
    supervisor = signed_in(attack_target, "supervisor")
    status, _, body = supervisor.get("api/audit?limit=20")
    assert status == 200 and body["entries"]


def test_the_agent_name_customers_see_is_the_accounts_not_a_self_declared_one(attack_target):
    conversation = waiting_conversation(attack_target)
    username, password = inbox_account(attack_target.db_url, "agent", display_name="Dana Whitfield")
    agent = InboxClient(attack_target.url)
    status, _, me = agent.login(username, password, name="Chief Executive")
    assert status == 200 and me["name"] == "Dana Whitfield"
    status, _, detail = agent.post(f"api/conversations/{conversation}/take", {"name": "Chief Executive", "agent": "Chief Executive"})
    assert status == 200, detail
    assert detail["handoff"]["agent"] == "Dana Whitfield"
    status, _, detail = agent.post(f"api/conversations/{conversation}/reply", {"text": "Hello, how can I help?", "agent": "Chief Executive"})
    assert status == 200
    said = [m for m in detail["transcript"] if m.get("sender") == "agent" or "joined" in (m.get("text") or "")]
    assert said and all("Chief Executive" not in str(m) for m in said)
    assert any(m.get("agent") == "Dana Whitfield" for m in said) and any("Dana Whitfield" in (m.get("text") or "") for m in said)
    # Who opened and acted on this customer's conversation is on record.
    mine = [r["action"] for r in audited(attack_target, target=conversation) if r["actor"] == username]
    assert {"conversation.take", "conversation.reply"} <= set(mine)
    for _ in range(3):  # opened, then refreshed twice by the page: one row for the session
        assert agent.get(f"api/conversations/{conversation}")[0] == 200
    opened = [r for r in audited(attack_target, action="conversation.open", target=conversation) if r["actor"] == username]
    assert len(opened) == 1 and opened[0]["detail"]["customer_id"], opened
