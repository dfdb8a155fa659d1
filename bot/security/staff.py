"""Staff accounts of the agent inbox: passwords, roles, sign-in throttling, server-side sessions.

Each person has an account (``staff_accounts``): a username, the display name
customers see, a role, and an argon2id password hash (argon2-cffi). Roles
nest: an ``agent`` works conversations; a ``supervisor`` also reads and
exports the audit log; an ``admin`` also adds, disables and resets accounts.

Sign-in (`sign_in`) is throttled per account and per client address. Each
attempt is counted as a failure *before* the password is checked, in one
database transaction that also checks the lock, so parallel guesses cannot
slip past the count: after `ACCOUNT_FREE_FAILURES` failures of an account
(or `ADDRESS_FREE_FAILURES` from one address) the next attempt waits 1 s,
doubling with each further failure up to 15 minutes. A right password
clears the account's count; it takes back only its own attempt from the
address's count, so an attacker's own valid account cannot wipe it.

A session is a random 256-bit token in the cookie; the database keeps only
its SHA-256, with a CSRF token, an absolute expiry (8 h) and an idle expiry
(1 h). Signing out revokes it; a password change or reset, and disabling
the account, revoke every session of that account.

Every change and every sign-in outcome is written to the audit log
(`bot.security.audit`).
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine

from bot.security import audit
from core import db

ROLES = ("agent", "supervisor", "admin")  # each role can do what the ones before it can
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,127}$")  # lower case; e-mail addresses allowed (OIDC)
DISPLAY_NAME = re.compile(r"^[\w .'-]{1,64}$", re.UNICODE)
MIN_PASSWORD, MAX_PASSWORD = 12, 256

SESSION_HOURS = 8  # absolute: one shift
IDLE_MINUTES = 60  # a session nobody used for this long is over
_TOUCH_EVERY_S = 60  # last_seen is written at most this often (the inbox polls every few seconds)

ACCOUNT_FREE_FAILURES = 5  # failed sign-ins of one account before the backoff starts
ADDRESS_FREE_FAILURES = 50  # from one client address (an office or a proxy shares one)
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 15 * 60.0
FORGET_FAILURES_AFTER_S = 24 * 3600.0  # a quiet day wipes a count

DEMO_ADMIN = "demo-admin"

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory parameters (64 MiB, 3 passes)
_DUMMY_HASH: Optional[str] = None  # checked for unknown accounts, so they answer as slowly as known ones


@dataclass(frozen=True)
class Account:
    """A staff account as the inbox and the command line show it (never the hash)."""

    username: str
    display_name: str
    role: str
    disabled: bool
    has_password: bool
    created_at: float
    password_changed_at: Optional[float]

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Session:
    """A signed-in person: who, with which role, and the CSRF token their page must send back."""

    id_hash: str
    username: str
    display_name: str
    role: str
    csrf_token: str
    expires_at: float

    def can(self, role: str) -> bool:
        """Whether this person's role includes `role`'s rights."""
        return role_includes(self.role, role)


@dataclass(frozen=True)
class SignIn:
    """What `sign_in` decided: ``ok`` (with `token` and `session`), ``failed``, or ``locked`` (`retry_after` s)."""

    outcome: str
    token: Optional[str] = None
    session: Optional[Session] = None
    retry_after: float = 0.0


def role_includes(role: str, needed: str) -> bool:
    """Whether `role` has at least the rights of `needed`."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def _engine(engine: Optional[Engine]) -> Engine:
    # None: the configured database (ASSISTANT_DATABASE_URL as this process sees it now).
    return engine if engine is not None else db.connect(os.environ.get("ASSISTANT_DATABASE_URL") or None)


# ------------------------------------------------------------------ passwords

def hash_password(password: str) -> str:
    """The argon2id hash of `password` (with its own random salt)."""
    return _hasher.hash(password)


def verify_password(password_hash: Optional[str], password: str) -> bool:
    """Whether `password` matches `password_hash`; False for a missing or malformed hash."""
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def new_password() -> str:
    """A random password of 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def check_password_strength(password: str) -> None:
    """Raise ValueError when `password` is too short or too long."""
    if not isinstance(password, str) or not (MIN_PASSWORD <= len(password) <= MAX_PASSWORD):
        raise ValueError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")


# ------------------------------------------------------------------ accounts

def normal_username(username: str) -> str:
    """`username` as stored (trimmed, lower case); ValueError when it is not a valid username."""
    name = (username or "").strip().lower()
    if not USERNAME.match(name):
        raise ValueError("a username is 1 to 128 lower-case letters, digits, '.', '_', '@', '+' or '-'")
    return name


def _account(row: Any) -> Account:
    return Account(
        username=row["username"], display_name=row["display_name"], role=row["role"], disabled=bool(row["disabled"]),
        has_password=bool(row["password_hash"]), created_at=row["created_at"], password_changed_at=row["password_changed_at"],
    )


def get_account(engine: Optional[Engine], username: str) -> Optional[Account]:
    """The account called `username`, or None."""
    try:
        name = normal_username(username)
    except ValueError:
        return None
    with _engine(engine).connect() as conn:
        row = conn.execute(sa.select(db.staff_accounts).where(db.staff_accounts.c.username == name)).mappings().first()
    return _account(row) if row is not None else None


def list_accounts(engine: Optional[Engine]) -> List[Account]:
    """Every account, by username."""
    with _engine(engine).connect() as conn:
        rows = conn.execute(sa.select(db.staff_accounts).order_by(db.staff_accounts.c.username)).mappings().all()
    return [_account(row) for row in rows]


def active_account_count(engine: Optional[Engine]) -> int:
    """How many enabled accounts can sign in with a password (production refuses to start with none and no OIDC).

    Accounts made ``--oidc-only`` are not counted: without the provider they cannot sign in.
    """
    t = db.staff_accounts
    with _engine(engine).connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(t).where(t.c.disabled == sa.false()).where(t.c.password_hash.isnot(None))
        ).scalar() or 0)


def add_account(
    engine: Optional[Engine],
    username: str,
    password: Optional[str] = None,
    role: str = "agent",
    display_name: Optional[str] = None,
    actor: str = "system",
    client: Optional[str] = None,
    oidc_only: bool = False,
) -> Optional[str]:
    """Create an account; returns its password (a generated one when `password` is None), None when `oidc_only`.

    Raises ValueError for a bad username, role, display name or password, or a username already taken.
    """
    engine = _engine(engine)
    name = normal_username(username)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    shown = (display_name or name.split("@")[0]).strip()
    if not DISPLAY_NAME.match(shown):
        raise ValueError("a display name is 1 to 64 letters, digits, spaces, dots, apostrophes or dashes")
    if oidc_only:
        password = None
    else:
        password = new_password() if password is None else password
        check_password_strength(password)
    now = time.time()
    try:
        with engine.begin() as conn:
            conn.execute(db.staff_accounts.insert().values(
                username=name, display_name=shown, role=role, disabled=False,
                password_hash=hash_password(password) if password else None,
                created_at=now, updated_at=now, password_changed_at=now if password else None,
            ))
    except sa.exc.IntegrityError as exc:
        raise ValueError(f"an account named '{name}' already exists") from exc
    audit.record(engine, actor, "account.add", name, client, {"role": role, "display_name": shown})
    return password


def disable_account(engine: Optional[Engine], username: str, actor: str = "system", client: Optional[str] = None) -> None:
    """Stop `username` signing in and end every session of theirs; ValueError when there is no such account."""
    engine = _engine(engine)
    name = normal_username(username)
    with engine.begin() as conn:
        changed = conn.execute(db.staff_accounts.update().where(db.staff_accounts.c.username == name)
                               .values(disabled=True, updated_at=time.time())).rowcount
        if not changed:
            raise ValueError(f"no account named '{name}'")
        _revoke_all(conn, name)
    audit.record(engine, actor, "account.disable", name, client)


def reset_password(
    engine: Optional[Engine], username: str, password: Optional[str] = None, actor: str = "system", client: Optional[str] = None,
) -> str:
    """Give `username` a new password (generated when None) and end every session of theirs; returns it."""
    engine = _engine(engine)
    name = normal_username(username)
    password = new_password() if password is None else password
    check_password_strength(password)
    _set_password(engine, name, password)
    audit.record(engine, actor, "account.reset", name, client)
    return password


def change_password(engine: Optional[Engine], username: str, current: str, new: str, client: Optional[str] = None) -> bool:
    """The person changes their own password; False when `current` is wrong. Every session of theirs ends."""
    engine = _engine(engine)
    check_password_strength(new)
    name = normal_username(username)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(db.staff_accounts.c.password_hash).where(db.staff_accounts.c.username == name)).scalar()
    if not verify_password(stored, current):
        audit.record(engine, name, "account.password", name, client, {"result": "wrong current password"})
        return False
    _set_password(engine, name, new)
    audit.record(engine, name, "account.password", name, client, {"result": "changed"})
    return True


def _set_password(engine: Engine, name: str, password: str) -> None:
    now = time.time()
    with engine.begin() as conn:
        changed = conn.execute(db.staff_accounts.update().where(db.staff_accounts.c.username == name).values(
            password_hash=hash_password(password), password_changed_at=now, updated_at=now)).rowcount
        if not changed:
            raise ValueError(f"no account named '{name}'")
        _revoke_all(conn, name)
        conn.execute(db.signin_throttle.update().where(db.signin_throttle.c.key == f"account:{name}")
                     .values(failures=0, locked_until=0.0, updated_at=now))


def ensure_demo_account(engine: Optional[Engine]) -> Tuple[str, Optional[str]]:
    """Demo mode: the admin account ``demo-admin`` with a new random password each start.

    Returns (username, password) for the launcher to print; the password is
    None when an administrator has disabled the demo account (it stays disabled).
    """
    engine = _engine(engine)
    account = get_account(engine, DEMO_ADMIN)
    if account is None:
        return DEMO_ADMIN, add_account(engine, DEMO_ADMIN, role="admin", display_name="Demo Admin", actor="demo")
    if account.disabled:
        return DEMO_ADMIN, None
    return DEMO_ADMIN, reset_password(engine, DEMO_ADMIN, actor="demo")


# ------------------------------------------------------------------ throttle

def _backoff(failures: int, free: int) -> float:
    """Seconds locked after `failures` failures when `free` are allowed: 0, then 1 s doubling up to 15 min."""
    if failures < free:
        return 0.0
    return min(BACKOFF_FIRST_S * 2 ** min(failures - free, 30), BACKOFF_MAX_S)


def _reserve(conn: sa.engine.Connection, keys: Sequence[Tuple[str, int]], now: float) -> float:
    """Count this attempt as a failure of every key (unless one is locked); 0, or the seconds to wait.

    The first statement on each key is a write, so the row is locked (PostgreSQL)
    or the database is (SQLite) until the transaction ends: concurrent attempts
    take their turn here and each sees the count the one before it left.
    """
    t = db.signin_throttle
    rows = {}
    for key, _free in keys:
        if not conn.execute(t.update().where(t.c.key == key).values(failures=t.c.failures)).rowcount:
            try:
                with conn.begin_nested():
                    conn.execute(t.insert().values(key=key, failures=0, locked_until=0.0, updated_at=now))
            except sa.exc.IntegrityError:  # another attempt created it first: take its lock
                conn.execute(t.update().where(t.c.key == key).values(failures=t.c.failures))
        rows[key] = conn.execute(sa.select(t.c.failures, t.c.locked_until, t.c.updated_at).where(t.c.key == key)).first()
    wait = max(row.locked_until - now for row in rows.values())
    if wait > 0:
        return wait
    for key, free in keys:
        row = rows[key]
        failures = (0 if now - row.updated_at > FORGET_FAILURES_AFTER_S else row.failures) + 1
        backoff = _backoff(failures, free)
        conn.execute(t.update().where(t.c.key == key).values(
            failures=failures, locked_until=now + backoff if backoff else 0.0, updated_at=now))
    return 0.0


def _throttle_keys(username: str, client: str) -> List[Tuple[str, int]]:
    return [(f"account:{username}"[:200], ACCOUNT_FREE_FAILURES), (f"address:{client}"[:200], ADDRESS_FREE_FAILURES)]


def _forgive(engine: Engine, username: str, client: str, now: float) -> None:
    """A right password: the account's count starts again; the address gets back this one attempt."""
    t = db.signin_throttle
    account_key, address_key = (key for key, _ in _throttle_keys(username, client))
    with engine.begin() as conn:
        conn.execute(t.update().where(t.c.key == account_key).values(failures=0, locked_until=0.0, updated_at=now))
        conn.execute(t.update().where(t.c.key == address_key).values(
            failures=sa.case((t.c.failures > 0, t.c.failures - 1), else_=0)))
        # Counts a quiet day has wiped anyway (guessed usernames included) need no row.
        conn.execute(t.delete().where(t.c.updated_at < now - FORGET_FAILURES_AFTER_S).where(t.c.locked_until < now))


# ------------------------------------------------------------------ sign-in and sessions

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def sign_in(engine: Optional[Engine], username: str, password: str, client: str) -> SignIn:
    """Check a username and password from `client` (an address), throttled; audited whatever the outcome.

    Blocking (argon2 takes tens of milliseconds and 64 MiB): call it from a worker thread in a server.
    """
    engine = _engine(engine)
    typed = (username or "").strip().lower()[:128]
    client = (client or "unknown")[:64]
    now = time.time()
    with engine.begin() as conn:
        wait = _reserve(conn, _throttle_keys(typed, client), now)
    if wait > 0:
        audit.record(engine, typed, "signin.locked", typed, client, {"retry_after_s": round(wait, 1)})
        return SignIn("locked", retry_after=wait)
    account_row = None
    if USERNAME.match(typed):
        with engine.connect() as conn:
            account_row = conn.execute(sa.select(db.staff_accounts).where(db.staff_accounts.c.username == typed)).mappings().first()
    stored = account_row["password_hash"] if account_row is not None and account_row["password_hash"] else _dummy_hash()
    right = verify_password(stored, password or "")
    if account_row is None or not account_row["password_hash"] or not right or account_row["disabled"]:
        reason = ("unknown account" if account_row is None else "no password (OIDC only)" if not account_row["password_hash"]
                  else "wrong password" if not right else "account disabled")
        audit.record(engine, typed, "signin.failed", typed, client, {"reason": reason, "method": "password"})
        return SignIn("failed")
    _forgive(engine, typed, client, now)
    if _hasher.check_needs_rehash(account_row["password_hash"]):  # parameters raised since it was stored
        with engine.begin() as conn:
            conn.execute(db.staff_accounts.update().where(db.staff_accounts.c.username == typed)
                         .values(password_hash=hash_password(password)))
    token, session = open_session(engine, typed, "password", client)
    return SignIn("ok", token=token, session=session)


def open_session(engine: Optional[Engine], username: str, method: str, client: Optional[str]) -> Tuple[str, Session]:
    """Start a session for an enabled account (its identity already proven); (cookie token, session). Audited."""
    engine = _engine(engine)
    account = get_account(engine, username)
    if account is None or account.disabled:
        raise ValueError(f"no enabled account named '{username}'")
    token = secrets.token_urlsafe(32)  # 256 random bits
    now = time.time()
    row = dict(id_hash=_token_hash(token), username=account.username, csrf_token=secrets.token_urlsafe(32), method=method,
               client=client, created_at=now, last_seen=now, expires_at=now + SESSION_HOURS * 3600, revoked_at=None)
    with engine.begin() as conn:
        conn.execute(db.staff_sessions.insert().values(**row))
        # Housekeeping, cheap with the index on username: this person's long-dead sessions go.
        conn.execute(db.staff_sessions.delete().where(db.staff_sessions.c.username == account.username)
                     .where(db.staff_sessions.c.expires_at < now - 7 * 86400))
    audit.record(engine, account.username, "signin", account.username, client, {"method": method})
    return token, Session(row["id_hash"], account.username, account.display_name, account.role, row["csrf_token"], row["expires_at"])


def session_for(engine: Optional[Engine], token: Optional[str]) -> Optional[Session]:
    """The live session whose cookie token is `token`: not revoked, not expired, not idle, account enabled; else None."""
    if not token or len(token) > 256:
        return None
    engine = _engine(engine)
    now = time.time()
    s, a = db.staff_sessions, db.staff_accounts
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(s.c.id_hash, s.c.username, s.c.csrf_token, s.c.expires_at, s.c.last_seen, s.c.revoked_at,
                      a.c.display_name, a.c.role, a.c.disabled)
            .select_from(s.join(a, a.c.username == s.c.username))
            .where(s.c.id_hash == _token_hash(token))
        ).mappings().first()
    if (row is None or row["revoked_at"] is not None or row["disabled"] or row["expires_at"] <= now
            or now - row["last_seen"] > IDLE_MINUTES * 60):
        return None
    if now - row["last_seen"] > _TOUCH_EVERY_S:
        with engine.begin() as conn:
            conn.execute(s.update().where(s.c.id_hash == row["id_hash"]).values(last_seen=now))
    return Session(row["id_hash"], row["username"], row["display_name"], row["role"], row["csrf_token"], row["expires_at"])


def agents_online(engine: Optional[Engine], within_s: float = 180) -> int:
    """How many people (enabled staff accounts) used the inbox in the last `within_s` seconds.

    The inbox polls every few seconds and a session's ``last_seen`` is written at most
    once a minute, so `within_s` should be a few minutes.
    """
    engine = _engine(engine)
    now = time.time()
    s, a = db.staff_sessions, db.staff_accounts
    with engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count(sa.distinct(s.c.username)))
            .select_from(s.join(a, a.c.username == s.c.username))
            .where(s.c.revoked_at.is_(None), s.c.expires_at > now, s.c.last_seen >= now - within_s,
                   a.c.disabled.is_(False), a.c.role.in_(ROLES))
        ).scalar() or 0)


def revoke_session(engine: Optional[Engine], session: Session, client: Optional[str] = None) -> None:
    """Sign out: this session's cookie stops working at once, on every replica. Audited."""
    engine = _engine(engine)
    with engine.begin() as conn:
        conn.execute(db.staff_sessions.update().where(db.staff_sessions.c.id_hash == session.id_hash)
                     .where(db.staff_sessions.c.revoked_at.is_(None)).values(revoked_at=time.time()))
    audit.record(engine, session.username, "signout", session.username, client)


def _revoke_all(conn: sa.engine.Connection, username: str) -> None:
    conn.execute(db.staff_sessions.update().where(db.staff_sessions.c.username == username)
                 .where(db.staff_sessions.c.revoked_at.is_(None)).values(revoked_at=time.time()))
