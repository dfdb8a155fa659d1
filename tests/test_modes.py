"""`bot.security.mode`: the modes, and every missing or weak secret production mode refuses to start with."""
from __future__ import annotations

import secrets

import pytest

from bot.security import mode
from bot.security.mode import ModeError, ProductionRefused, mode_from, production_problems, refuse_unsafe_start


def strong() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def database(tmp_path):
    return f"sqlite:///{tmp_path / 'assistant.db'}"


@pytest.fixture
def complete(database):
    """Every production secret set strongly, and one inbox account."""
    from bot.security import staff
    from core import db

    staff.add_account(db.connect(database), "ops-admin", strong(), role="admin")
    return {
        "ASSISTANT_DATABASE_URL": database,
        "WEB_CUSTOMER_TOKEN_SECRET": strong(),
        "REST_CALLER_TOKENS": f"backend={strong()},crm={strong()}",
        "RASA_API_TOKEN": strong(),
        "ACTION_SERVER_SECRET": strong(),
    }


def test_modes_are_validated():
    assert mode_from(None) == "local" and mode_from("") == "local"
    assert mode_from(" Production ") == "production" and mode_from("demo") == "demo"
    with pytest.raises(ModeError, match="local, demo, production"):
        mode_from("prod")


def test_nothing_is_missing_when_every_secret_is_strong(complete):
    assert production_problems(complete) == []


@pytest.mark.parametrize("name, says", [
    ("WEB_CUSTOMER_TOKEN_SECRET", "WEB_CUSTOMER_TOKEN_SECRET is not set"),
    ("REST_CALLER_TOKENS", "no REST caller credential"),
    ("RASA_API_TOKEN", "RASA_API_TOKEN is not set"),
    ("ACTION_SERVER_SECRET", "ACTION_SERVER_SECRET is not set"),
])
def test_each_missing_secret_is_named(complete, name, says):
    env = dict(complete)
    env.pop(name)
    problems = production_problems(env)
    assert len(problems) == 1 and says in problems[0]


@pytest.mark.parametrize("name, value, why", [
    ("RASA_API_TOKEN", "short-token", "shorter than 32"),
    ("RASA_API_TOKEN", "test-api-token", "known demo or test value"),
    ("ACTION_SERVER_SECRET", "a" * 40, "too few distinct characters"),
    ("WEB_CUSTOMER_TOKEN_SECRET", "changeme", "known demo or test value"),
    ("REST_CALLER_TOKENS", "backend=tooshort", "caller 'backend' is weak"),
    ("REST_CALLER_TOKENS", "no-equals-sign", "must be name=token"),
])
def test_each_weak_secret_is_named(complete, name, value, why):
    problems = production_problems(dict(complete, **{name: value}))
    assert len(problems) == 1 and why in problems[0] and (name in problems[0] or "REST" in problems[0])


def test_every_problem_is_listed_at_once(database):
    problems = production_problems({"ASSISTANT_DATABASE_URL": database})
    assert len(problems) == 5
    for says in ("WEB_CUSTOMER_TOKEN_SECRET", "REST caller", "RASA_API_TOKEN", "inbox accounts", "ACTION_SERVER_SECRET"):
        assert any(says in p for p in problems), says


def test_a_public_key_stands_in_for_the_shared_secret(complete):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    env = dict(complete, WEB_CUSTOMER_TOKEN_PUBLIC_KEY=pem)
    env.pop("WEB_CUSTOMER_TOKEN_SECRET")
    assert production_problems(env) == []
    env["WEB_CUSTOMER_TOKEN_PUBLIC_KEY"] = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----"
    assert "not a PEM public key" in production_problems(env)[0]


def test_rest_callers_in_the_database_count(complete):
    from bot.security.callers import add_caller
    from core import db

    env = dict(complete)
    env.pop("REST_CALLER_TOKENS")
    add_caller("crm", engine=db.connect(env["ASSISTANT_DATABASE_URL"]))
    assert production_problems(env) == []


def test_oidc_stands_in_for_inbox_accounts_and_half_of_it_is_named(database):
    env = {"ASSISTANT_DATABASE_URL": database, "INBOX_OIDC_ISSUER": "https://id.example", "INBOX_OIDC_CLIENT_ID": "assistant"}
    assert "INBOX_OIDC_CLIENT_SECRET not set" in production_problems(env, checks=("inbox",))[0]
    env["INBOX_OIDC_CLIENT_SECRET"] = strong()
    assert production_problems(env, checks=("inbox",)) == []
    assert "no inbox accounts" in production_problems({"ASSISTANT_DATABASE_URL": database}, checks=("inbox",))[0]


def test_a_server_checks_only_its_own_part(complete):
    env = dict(complete)
    env.pop("RASA_API_TOKEN")
    assert production_problems(env, checks=("action_server",)) == []
    assert production_problems({"ACTION_SERVER_SECRET": "x"}, checks=("action_server",))[0].startswith("ACTION_SERVER_SECRET is weak")


def test_refusal_only_in_production(database):
    env = {"ASSISTANT_DATABASE_URL": database}
    assert refuse_unsafe_start("the test", env=dict(env, ASSISTANT_ENV="local")) == "local"
    assert refuse_unsafe_start("the test", env=dict(env, ASSISTANT_ENV="demo")) == "demo"
    with pytest.raises(ProductionRefused) as refused:
        refuse_unsafe_start("the test", env=dict(env, ASSISTANT_ENV="production"))
    message = str(refused.value)
    assert message.startswith("the test refuses to start in production mode") and message.count("\n  - ") == 5


def test_the_launcher_writes_the_mode_and_a_random_action_secret_outside_production(database):
    from bot.serve import check_mode

    env = {"ASSISTANT_DATABASE_URL": database, "ASSISTANT_ENV": "demo"}
    assert check_mode(env) == "demo" and len(env["ACTION_SERVER_SECRET"]) >= 32
    other = {"ASSISTANT_DATABASE_URL": database}
    assert check_mode(other) == "local" and other["ASSISTANT_ENV"] == "local"
    assert other["ACTION_SERVER_SECRET"] != env["ACTION_SERVER_SECRET"]  # random per run
    kept = {"ASSISTANT_DATABASE_URL": database, "ACTION_SERVER_SECRET": "given-by-the-operator"}
    check_mode(kept)
    assert kept["ACTION_SERVER_SECRET"] == "given-by-the-operator"


def test_demo_relaxations_are_listed():
    assert any("REST is open" in r for r in mode.DEMO_RELAXATIONS)
    assert any("?customer=" in r for r in mode.DEMO_RELAXATIONS)
    assert any("inbox" in r for r in mode.DEMO_RELAXATIONS)
