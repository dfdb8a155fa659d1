"""A person at the agent inbox over HTTP, for the e2e tests: an account made in the servers' database, its session.

    username, password = inbox_account(assistant.db_url, "supervisor", display_name="Sam")
    sam = InboxClient(assistant.url)
    assert sam.login(username, password)[0] == 200
    status, headers, body = sam.post("api/conversations/web:abc/take", {})

The cookie and the CSRF token are sent by hand, so the client also works
against production mode's ``Secure`` cookie over the tests' plain http.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any, Dict, Optional, Tuple


def inbox_account(db_url: str, role: str = "agent", display_name: Optional[str] = None,
                  username: Optional[str] = None) -> Tuple[str, str]:
    """A new staff account in the database at `db_url` (the running servers'); (username, password)."""
    from bot.security import staff
    from core import db

    username = username or f"{role}-{uuid.uuid4().hex[:8]}"
    password = staff.add_account(db.connect(db_url), username, role=role, display_name=display_name or username, actor="tests")
    return username, password


class InboxClient:
    """One browser's session with the inbox at `base_url` (the Rasa server's address)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/webhooks/inbox/"
        self.cookie: Optional[str] = None  # "inbox_session=..."
        self.csrf: Optional[str] = None
        self.me: Dict[str, Any] = {}

    def request(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
                timeout: float = 60) -> Tuple[int, Dict[str, str], Any]:
        """(status, headers, JSON body or text) of one request with this session's cookie (and CSRF token on POST)."""
        sent: Dict[str, str] = {}
        if method == "POST":
            sent["Content-Type"] = "application/json"
            if self.csrf:
                sent["X-CSRF-Token"] = self.csrf
        if self.cookie:
            sent["Cookie"] = self.cookie
        sent.update(headers or {})
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.base + path.lstrip("/"), data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                status, got, raw = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, got, raw = error.code, error.headers, error.read()
        try:
            return status, got, json.loads(raw)
        except ValueError:
            return status, got, raw.decode("utf-8", "replace")

    def login(self, username: str, password: str, **extra: Any) -> Tuple[int, Dict[str, str], Any]:
        """Sign in; on success the client keeps the session cookie and CSRF token."""
        status, headers, body = self.request("POST", "login", {"username": username, "password": password, **extra})
        if status == 200:
            self.cookie = headers["Set-Cookie"].split(";")[0]
            self.csrf, self.me = body["csrf_token"], body
        return status, headers, body

    def get(self, path: str, **kwargs: Any) -> Tuple[int, Dict[str, str], Any]:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Tuple[int, Dict[str, str], Any]:
        return self.request("POST", path, body, **kwargs)
