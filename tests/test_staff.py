"""Staff accounts (bot/security/staff.py) and the audit log (bot/security/audit.py) on a real database.

SQLite in a temporary folder for most tests, and a real PostgreSQL 15
(tests/e2e/services.py; skipped only when it is not installed) for the two
things the database itself must guarantee: the audit log refuses changes,
and parallel sign-in attempts are counted one after the other.
"""
from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from bot.security import admin, audit, staff
from core import db
from tests.e2e.services import postgres  # noqa: F401  (a fixture)

PASSWORD = "correct horse battery staple"


class Clock:
    """A clock the test moves by hand (installed as `staff.time`)."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def engine(tmp_path):
    return db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(staff, "time", clock)
    return clock


def actions(engine, **where):
    return [(row["action"], row["actor"], row["detail"]) for row in reversed(audit.recent(engine, limit=1000, **where))]


# ------------------------------------------------------------------ passwords and accounts

def test_passwords_are_stored_as_salted_argon2id_hashes(engine):
    staff.add_account(engine, "alex", PASSWORD)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(db.staff_accounts.c.password_hash)).scalar()
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PASSWORD not in stored  # RFC 9106 low-memory
    assert staff.hash_password(PASSWORD) != staff.hash_password(PASSWORD)  # a fresh salt each time
    assert staff.verify_password(stored, PASSWORD) and not staff.verify_password(stored, PASSWORD + "!")
    assert not staff.verify_password("not a hash", PASSWORD) and not staff.verify_password(None, PASSWORD)


def test_an_account_is_added_with_a_generated_password_and_audited(engine):
    password = staff.add_account(engine, "Robin.Lee@Example.com", role="supervisor", display_name="Robin Lee", actor="cli:ops")
    account = staff.get_account(engine, "robin.lee@example.com")
    assert (account.username, account.display_name, account.role, account.disabled) == (
        "robin.lee@example.com", "Robin Lee", "supervisor", False)
    assert len(password) >= 20 and staff.sign_in(engine, "ROBIN.LEE@example.com", password, "10.0.0.1").outcome == "ok"
    assert actions(engine, action="account.add") == [("account.add", "cli:ops", {"role": "supervisor", "display_name": "Robin Lee"})]


@pytest.mark.parametrize(
    "username, password, role, display_name, reason",
    [
        ("alex", "short", "agent", None, "12 to 256"),
        ("alex", "x" * 257, "agent", None, "12 to 256"),
        ("alex", PASSWORD, "root", None, "role must be"),
        ("al ex", PASSWORD, "agent", None, "username"),
        ("", PASSWORD, "agent", None, "username"),
        ("alex", PASSWORD, "agent", "<script>", "display name"),
    ],
)
def test_bad_accounts_are_refused_with_the_reason(engine, username, password, role, display_name, reason):
    with pytest.raises(ValueError, match=reason):
        staff.add_account(engine, username, password, role=role, display_name=display_name)
    assert staff.list_accounts(engine) == []


def test_a_username_is_taken_once(engine):
    staff.add_account(engine, "alex", PASSWORD)
    with pytest.raises(ValueError, match="already exists"):
        staff.add_account(engine, "ALEX", PASSWORD)


def test_roles_nest_agent_supervisor_admin():
    assert [r for r in staff.ROLES if staff.role_includes("agent", r)] == ["agent"]
    assert [r for r in staff.ROLES if staff.role_includes("supervisor", r)] == ["agent", "supervisor"]
    assert [r for r in staff.ROLES if staff.role_includes("admin", r)] == ["agent", "supervisor", "admin"]
    assert not staff.role_includes("root", "agent")


def test_active_accounts_are_counted_for_production_mode(engine):
    assert staff.active_account_count(engine) == 0
    staff.add_account(engine, "alex", PASSWORD)
    staff.add_account(engine, "sam", PASSWORD)
    staff.disable_account(engine, "sam")
    staff.add_account(engine, "robin@example.com", oidc_only=True)  # cannot sign in without the provider
    assert staff.active_account_count(engine) == 1


def test_the_demo_account_gets_a_new_password_each_start_until_disabled(engine):
    name, first = staff.ensure_demo_account(engine)
    assert name == staff.DEMO_ADMIN and staff.get_account(engine, name).role == "admin"
    signed = staff.sign_in(engine, name, first, "127.0.0.1")
    _, second = staff.ensure_demo_account(engine)
    assert second != first
    assert staff.session_for(engine, signed.token) is None  # the old run's session ended
    assert staff.sign_in(engine, name, first, "127.0.0.1").outcome == "failed"
    assert staff.sign_in(engine, name, second, "127.0.0.1").outcome == "ok"
    staff.disable_account(engine, name)
    assert staff.ensure_demo_account(engine) == (name, None)
    assert staff.get_account(engine, name).disabled


# ------------------------------------------------------------------ sign-in and lockout

def test_failed_sign_ins_are_audited_with_the_reason_and_address(engine):
    staff.add_account(engine, "alex", PASSWORD)
    staff.add_account(engine, "sam", PASSWORD)
    staff.disable_account(engine, "sam")
    assert staff.sign_in(engine, "alex", "wrong password!", "203.0.113.9").outcome == "failed"
    assert staff.sign_in(engine, "nobody", PASSWORD, "203.0.113.9").outcome == "failed"
    assert staff.sign_in(engine, "sam", PASSWORD, "203.0.113.9").outcome == "failed"
    rows = audit.recent(engine, action="signin.failed")
    assert [(r["actor"], r["client"], r["detail"]["reason"]) for r in reversed(rows)] == [
        ("alex", "203.0.113.9", "wrong password"), ("nobody", "203.0.113.9", "unknown account"),
        ("sam", "203.0.113.9", "account disabled")]


def test_after_five_failures_an_account_waits_1s_then_2s_then_4s_even_with_the_right_password(engine, clock):
    staff.add_account(engine, "alex", PASSWORD)
    for _ in range(staff.ACCOUNT_FREE_FAILURES):
        assert staff.sign_in(engine, "alex", "wrong password!", "10.0.0.1").outcome == "failed"
    locked = staff.sign_in(engine, "alex", PASSWORD, "10.0.0.2")  # another address: the account is locked
    assert (locked.outcome, locked.retry_after) == ("locked", pytest.approx(1.0))
    for wait in (2.0, 4.0, 8.0):
        clock.advance(wait / 2 + 0.01)
        assert staff.sign_in(engine, "alex", "wrong password!", "10.0.0.1").outcome == "failed"
        assert staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1").retry_after == pytest.approx(wait)
    clock.advance(8.01)
    assert staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1").outcome == "ok"
    assert staff.sign_in(engine, "alex", "wrong password!", "10.0.0.1").outcome == "failed"  # the count started again
    assert staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1").outcome == "ok"
    assert len(audit.recent(engine, action="signin.locked")) == 4


def test_the_backoff_stops_growing_at_15_minutes(engine, clock):
    for _ in range(staff.ACCOUNT_FREE_FAILURES + 12):
        clock.advance(staff.BACKOFF_MAX_S + 1)
        staff.sign_in(engine, "alex", "wrong password!", f"10.0.1.{clock.now % 250:.0f}")
    assert staff.sign_in(engine, "alex", "wrong password!", "10.0.9.9").retry_after == pytest.approx(staff.BACKOFF_MAX_S)


def test_one_address_guessing_many_accounts_is_locked_out(engine, clock):
    staff.add_account(engine, "alex", PASSWORD)
    for n in range(staff.ADDRESS_FREE_FAILURES):
        assert staff.sign_in(engine, f"guess{n}", "wrong password!", "198.51.100.7").outcome == "failed"
    assert staff.sign_in(engine, "alex", PASSWORD, "198.51.100.7").outcome == "locked"
    assert staff.sign_in(engine, "alex", PASSWORD, "198.51.100.8").outcome == "ok"  # other addresses are not


def test_an_attackers_own_account_does_not_wipe_the_address_count(engine, clock):
    staff.add_account(engine, "mallory", PASSWORD)
    for n in range(staff.ADDRESS_FREE_FAILURES - 1):
        staff.sign_in(engine, f"victim{n}", "guess guess guess", "198.51.100.7")
        assert staff.sign_in(engine, "mallory", PASSWORD, "198.51.100.7").outcome == "ok"
    staff.sign_in(engine, "victim-last", "guess guess guess", "198.51.100.7")
    assert staff.sign_in(engine, "victim-next", "guess guess guess", "198.51.100.7").outcome == "locked"


def test_counts_are_forgotten_after_a_quiet_day(engine, clock):
    staff.add_account(engine, "alex", PASSWORD)
    for _ in range(staff.ACCOUNT_FREE_FAILURES - 1):
        staff.sign_in(engine, "alex", "wrong password!", "10.0.0.1")
    staff.sign_in(engine, "guessed-name", "wrong password!", "10.0.0.9")
    clock.advance(staff.FORGET_FAILURES_AFTER_S + 1)
    assert staff.sign_in(engine, "alex", "wrong password!", "10.0.0.1").outcome == "failed"  # 1 failure, not 5: no lock
    assert staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1").outcome == "ok"
    with engine.connect() as conn:
        keys = set(conn.execute(sa.select(db.signin_throttle.c.key)).scalars())
    assert keys == {"account:alex", "address:10.0.0.1"}  # the guessed name's row is gone


def test_parallel_guesses_are_counted_one_after_another(engine, clock):
    staff.add_account(engine, "alex", PASSWORD)
    outcomes = []
    start = threading.Barrier(20)

    def guess(n: int) -> None:
        start.wait()
        outcomes.append(staff.sign_in(engine, "alex", f"guess number {n}", f"10.1.0.{n}").outcome)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["failed"] * staff.ACCOUNT_FREE_FAILURES + ["locked"] * (20 - staff.ACCOUNT_FREE_FAILURES)


# ------------------------------------------------------------------ sessions

def test_a_session_is_stored_hashed_and_carries_a_csrf_token(engine):
    staff.add_account(engine, "alex", PASSWORD, display_name="Alex Smith")
    signed = staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1")
    assert len(signed.token) >= 43  # 32 random bytes, URL-safe base64
    with engine.connect() as conn:
        stored = conn.execute(sa.select(db.staff_sessions)).mappings().one()
    assert stored["id_hash"] != signed.token and signed.token not in json.dumps(dict(stored))
    session = staff.session_for(engine, signed.token)
    assert (session.username, session.display_name, session.role) == ("alex", "Alex Smith", "agent")
    assert session.csrf_token == stored["csrf_token"] and len(session.csrf_token) >= 43
    assert staff.session_for(engine, signed.token + "x") is None and staff.session_for(engine, None) is None


@pytest.mark.parametrize("how", ["sign out", "reset", "change", "disable"])
def test_sessions_end_at_sign_out_and_on_password_change_reset_or_disable(engine, how):
    staff.add_account(engine, "alex", PASSWORD)
    first = staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1")
    second = staff.sign_in(engine, "alex", PASSWORD, "10.0.0.2")
    if how == "sign out":
        staff.revoke_session(engine, first.session)
    elif how == "reset":
        staff.reset_password(engine, "alex")
    elif how == "change":
        assert not staff.change_password(engine, "alex", "not my password", PASSWORD + " 2")
        assert staff.session_for(engine, first.token) is not None  # a wrong current password changes nothing
        assert staff.change_password(engine, "alex", PASSWORD, PASSWORD + " 2")
    else:
        staff.disable_account(engine, "alex")
    assert staff.session_for(engine, first.token) is None
    assert (staff.session_for(engine, second.token) is None) == (how != "sign out")


def test_sessions_end_after_8_hours_and_after_an_idle_hour(engine, clock):
    staff.add_account(engine, "alex", PASSWORD)
    token = staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1").token
    for _ in range(8):  # used every 59 minutes: alive until the 8 hours are up
        clock.advance(59 * 60)
        assert staff.session_for(engine, token) is not None
    clock.advance(29 * 60)
    assert staff.session_for(engine, token) is None
    idle = staff.sign_in(engine, "alex", PASSWORD, "10.0.0.1").token
    clock.advance(61 * 60)
    assert staff.session_for(engine, idle) is None


# ------------------------------------------------------------------ the audit log

def test_the_audit_log_refuses_update_and_delete_in_the_database(engine):
    audit.record(engine, "alex", "conversation.open", "web:abc", "10.0.0.1", {"customer_id": "c_1"})
    for statement in (db.audit_log.update().values(actor="someone else"), db.audit_log.delete()):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(statement)
    assert actions(engine) == [("conversation.open", "alex", {"customer_id": "c_1"})]


def test_the_audit_log_exports_as_csv_and_json_lines(engine):
    audit.record(engine, "alex", "signin", "alex", "10.0.0.1", {"method": "password"})
    audit.record(engine, "=cmd|' /C calc'!A0", "signin.failed", None, "10.0.0.2", {"reason": "unknown account"})
    rows = list(csv.DictReader(io.StringIO("".join(audit.export(engine, "csv", batch=1)))))
    assert [(r["actor"], r["action"], r["client"]) for r in rows] == [
        ("alex", "signin", "10.0.0.1"), ("'=cmd|' /C calc'!A0", "signin.failed", "10.0.0.2")]  # no spreadsheet formula
    assert json.loads(rows[0]["detail"]) == {"method": "password"}
    lines = [json.loads(line) for line in "".join(audit.export(engine, "jsonl")).splitlines()]
    assert [(l["actor"], l["detail"]) for l in lines] == [
        ("alex", {"method": "password"}), ("=cmd|' /C calc'!A0", {"reason": "unknown account"})]
    with pytest.raises(ValueError, match="csv, jsonl"):
        list(audit.export(engine, "xlsx"))


# ------------------------------------------------------------------ the command line

def test_the_agent_commands_add_reset_disable_and_list(engine, monkeypatch, capsys):
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", str(engine.url))
    assert admin.main(["agent", "add", "Alex", "--role", "supervisor", "--name", "Alex Smith"]) == 0
    generated = capsys.readouterr().out.strip().splitlines()[-1]
    assert staff.sign_in(engine, "alex", generated, "127.0.0.1").outcome == "ok"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert admin.main(["agent", "add", "sam", "--password-stdin"]) == 0
    assert PASSWORD not in capsys.readouterr().out
    session = staff.sign_in(engine, "sam", PASSWORD, "127.0.0.1")
    assert session.outcome == "ok"
    assert admin.main(["agent", "reset", "sam"]) == 0
    new = capsys.readouterr().out.strip().splitlines()[-1]
    assert staff.session_for(engine, session.token) is None
    assert staff.sign_in(engine, "sam", new, "127.0.0.1").outcome == "ok"
    assert admin.main(["agent", "disable", "sam"]) == 0
    assert admin.main(["agent", "list"]) == 0
    listed = capsys.readouterr().out
    assert "alex" in listed and "supervisor" in listed and "disabled" in listed
    assert admin.main(["agent", "add", "sam"]) == 2 and "already exists" in capsys.readouterr().err
    assert admin.main(["agent", "disable", "nobody"]) == 2
    assert [a for a, actor, _ in actions(engine) if actor.startswith("cli:")] == [
        "account.add", "account.add", "account.reset", "account.disable"]


# ------------------------------------------------------------------ PostgreSQL

@pytest.fixture
def pg_engine(postgres):  # noqa: F811
    return db.connect(postgres.create_database(f"t_{uuid.uuid4().hex[:12]}"))


def test_on_postgresql_the_audit_log_refuses_update_delete_and_truncate(pg_engine):
    audit.record(pg_engine, "alex", "signin", "alex", "10.0.0.1")
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with pg_engine.begin() as conn:
                conn.execute(sa.text(statement))
    assert len(audit.recent(pg_engine)) == 1


def test_on_postgresql_parallel_guesses_are_counted_one_after_another(pg_engine, clock):
    staff.add_account(pg_engine, "alex", PASSWORD)
    outcomes = []
    start = threading.Barrier(12)

    def guess(n: int) -> None:
        start.wait()
        outcomes.append(staff.sign_in(pg_engine, "alex", f"guess number {n}", "10.2.0.1").outcome)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["failed"] * staff.ACCOUNT_FREE_FAILURES + ["locked"] * (12 - staff.ACCOUNT_FREE_FAILURES)
