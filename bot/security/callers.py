"""Trusted REST callers: the company's own servers, each with a bearer credential.

A caller sends ``Authorization: Bearer <token>``. Tokens come from two places:

- ``REST_CALLER_TOKENS`` in the environment: ``name=token,name2=token2``;
- the ``api_callers`` table, managed with ``python -m bot.security.admin
  rest-caller add NAME | revoke NAME | list`` (``add`` prints the token once;
  only its SHA-256 is stored: the tokens are 256 random bits, so a fast hash
  is enough).

Every presented token is hashed and compared with every known hash in
constant time. The table is re-read at most every `REFRESH_S` seconds, so a
revocation takes effect on every server within that time, without a restart.
"""
from __future__ import annotations

import hashlib
import logging
import hmac
import os
import re
import secrets
import threading
import time
from typing import Dict, List, Mapping, Optional, Tuple

import sqlalchemy as sa

from core import db

logger = logging.getLogger(__name__)

CALLER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REFRESH_S = 2.0  # longest time a revoked credential is still accepted by a running server
DEMO_CALLER = "demo"


class CallerRefused(PermissionError):
    """A REST request whose credential is missing, unknown or revoked; the message says which."""


def token_hash(token: str) -> str:
    """The SHA-256 of `token`, hex: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_caller_tokens(value: str) -> Dict[str, str]:
    """``name=token,...`` -> {name: token}; raises `ValueError` naming the bad entry."""
    tokens: Dict[str, str] = {}
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, token = entry.partition("=")
        name, token = name.strip(), token.strip()
        if not sep or not CALLER_NAME.match(name) or not token:
            raise ValueError(
                f"REST_CALLER_TOKENS entry {name or entry[:12]!r} must be name=token "
                "(name: letters, digits, '_' or '-')"
            )
        tokens[name] = token
    return tokens


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not CALLER_NAME.match(name) or name == DEMO_CALLER:
        raise ValueError(f"a caller name is 1-64 letters, digits, '_' or '-' and not '{DEMO_CALLER}'; got {name!r}")


def add_caller(name: str, engine=None) -> str:
    """Create caller `name` and return its new token (the only time it is shown)."""
    _check_name(name)
    engine = engine if engine is not None else db.connect()
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        active = conn.execute(sa.select(db.api_callers.c.id).where(
            db.api_callers.c.name == name, db.api_callers.c.revoked_at.is_(None))).first()
        if active is not None:
            raise ValueError(f"REST caller '{name}' already has an active token; revoke it first")
        conn.execute(db.api_callers.insert().values(name=name, token_sha256=token_hash(token), created_at=time.time()))
    return token


def revoke_caller(name: str, engine=None) -> bool:
    """Revoke every active token of caller `name`; False if it had none."""
    engine = engine if engine is not None else db.connect()
    with engine.begin() as conn:
        done = conn.execute(db.api_callers.update().where(
            db.api_callers.c.name == name, db.api_callers.c.revoked_at.is_(None)).values(revoked_at=time.time()))
    return done.rowcount > 0


def list_callers(engine=None, environ: Optional[Mapping[str, str]] = None) -> List[Dict[str, str]]:
    """Every caller: name, source (database | environment) and state (active | revoked at ...)."""
    engine = engine if engine is not None else db.connect()
    environ = os.environ if environ is None else environ
    rows = [{"name": name, "source": "environment", "state": "active"}
            for name in parse_caller_tokens(environ.get("REST_CALLER_TOKENS", ""))]
    with engine.connect() as conn:
        for row in conn.execute(sa.select(db.api_callers).order_by(db.api_callers.c.id)).mappings():
            state = "active" if row["revoked_at"] is None else time.strftime(
                "revoked %Y-%m-%d %H:%M:%S UTC", time.gmtime(row["revoked_at"]))
            rows.append({"name": row["name"], "source": "database", "state": state})
    return rows


class CallerRegistry:
    """Who a bearer token belongs to: the environment's callers and the table's, refreshed every few seconds."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None, engine=None, refresh_s: float = REFRESH_S):
        environ = os.environ if environ is None else environ
        self._environment = [(token_hash(token), name) for name, token in
                             parse_caller_tokens(environ.get("REST_CALLER_TOKENS", "")).items()]
        self._engine = engine
        self._refresh_s = refresh_s
        self._stored: List[Tuple[str, str, bool]] = []  # (hash, name, revoked)
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def _table(self) -> List[Tuple[str, str, bool]]:
        if time.monotonic() - self._read_at >= self._refresh_s:
            with self._lock:
                if time.monotonic() - self._read_at >= self._refresh_s:
                    try:
                        engine = self._engine if self._engine is not None else db.connect()
                        with engine.connect() as conn:
                            self._stored = [
                                (row.token_sha256, row.name, row.revoked_at is not None)
                                for row in conn.execute(sa.select(
                                    db.api_callers.c.token_sha256, db.api_callers.c.name, db.api_callers.c.revoked_at))
                            ]
                        self._read_at = time.monotonic()
                    except (sa.exc.SQLAlchemyError, db.DatabaseUnavailableError) as exc:
                        # Keep the last list read (revocations still hold); the environment's callers still work.
                        logger.error("cannot read the REST callers table: %s", exc)
        return self._stored

    @property
    def configured(self) -> bool:
        """Whether any caller credential exists (environment or table)."""
        return bool(self._environment) or any(not revoked for _, _, revoked in self._table())

    def caller_for(self, authorization: Optional[str], demo: bool = False) -> str:
        """The caller named by an ``Authorization`` header value; raises `CallerRefused` with the reason.

        In demo mode a request without the header is caller ``demo``; a wrong
        credential is refused in every mode.
        """
        if not authorization:
            if demo:
                return DEMO_CALLER
            raise CallerRefused("missing credential: send Authorization: Bearer <caller token>")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CallerRefused("the Authorization header must be 'Bearer <caller token>'")
        presented = token_hash(token)
        found: Optional[str] = None
        revoked = False
        # Every entry is compared, so the time taken does not tell which one matched.
        for known, name in self._environment:
            if hmac.compare_digest(presented, known):
                found = name
        for known, name, is_revoked in self._table():
            if hmac.compare_digest(presented, known):
                found, revoked = name, is_revoked
        if revoked:
            raise CallerRefused("revoked credential")
        if found is None:
            raise CallerRefused("unknown credential")
        return found
