"""Customer identity: widget tokens, conversation links, REST caller credentials, the admin command.

Keys are generated here (HS256 secrets, RSA and P-256 key pairs through
cryptography); tokens are signed as a company's website would, with PyJWT.
"""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.security import admin, callers, identity, tokens
from bot.security.callers import CallerRefused, CallerRegistry
from bot.security.tokens import CustomerTokenError, TokenVerifier
from core import db
from core.settings import get_settings

ISSUER, AUDIENCE = "northwind-website", "northwind-assistant"
SECRET = "test-website-secret-that-is-long-enough-0123456789"


@pytest.fixture
def engine(tmp_path):
    return db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")


@pytest.fixture(autouse=True)
def fresh_cache():
    identity.clear_cache()
    yield
    identity.clear_cache()


@pytest.fixture
def mode(monkeypatch):
    """Switch this process's mode (ASSISTANT_ENV) for one test."""

    def switch(name: str) -> None:
        monkeypatch.setenv("ASSISTANT_ENV", name)
        get_settings.cache_clear()

    yield switch
    monkeypatch.delenv("ASSISTANT_ENV", raising=False)
    get_settings.cache_clear()


def pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def claims(**changes):
    now = int(time.time())
    base = {"sub": "c_0042", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def verifier_for(key, algorithm, **kwargs) -> TokenVerifier:
    return TokenVerifier([(key, algorithm, ISSUER)], AUDIENCE, kwargs.get("max_lifetime_s", 900), kwargs.get("leeway_s", 30))


# ------------------------------------------------------------------ tokens
def test_an_hs256_token_from_the_website_names_its_customer():
    verifier = TokenVerifier.from_environment({"WEB_CUSTOMER_TOKEN_SECRET": SECRET})
    assert verifier.verify(jwt.encode(claims(), SECRET, "HS256")) == "c_0042"


@pytest.mark.parametrize("algorithm, private_key", [
    ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("ES256", ec.generate_private_key(ec.SECP256R1())),
])
def test_rs256_and_es256_tokens_are_verified_with_the_public_key(algorithm, private_key):
    verifier = TokenVerifier.from_environment({"WEB_CUSTOMER_TOKEN_PUBLIC_KEY": pem(private_key)})
    assert verifier.keys[0][1] == algorithm
    assert verifier.verify(jwt.encode(claims(), private_key, algorithm)) == "c_0042"
    # A token signed by anyone else's key of the same kind is refused.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256" \
        else ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CustomerTokenError, match="signature"):
        verifier.verify(jwt.encode(claims(), stranger, algorithm))


def test_a_public_key_pem_used_as_an_hmac_secret_is_refused():
    """The classic algorithm confusion: HS256 'signed' with the public key the server knows."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = pem(private_key)
    verifier = TokenVerifier.from_environment({"WEB_CUSTOMER_TOKEN_PUBLIC_KEY": public})
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    import hashlib
    import hmac as hmac_module

    signature = base64.urlsafe_b64encode(
        hmac_module.new(public.encode(), header + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(CustomerTokenError, match="algorithm"):
        verifier.verify((header + b"." + body + b"." + signature).decode())


def unsigned(token_claims) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(token_claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}."


@pytest.mark.parametrize("token, reason", [
    (lambda: jwt.encode(claims(exp=int(time.time()) - 120, iat=int(time.time()) - 400), SECRET, "HS256"), "expired"),
    (lambda: jwt.encode(claims(aud="another-app"), SECRET, "HS256"), "audience"),
    (lambda: jwt.encode(claims(iss="someone-else"), SECRET, "HS256"), "issuer"),
    (lambda: jwt.encode(claims(), "not-the-website-secret-but-long-enough-012345", "HS256"), "signature"),
    (lambda: unsigned(claims()), "algorithm"),
    (lambda: jwt.encode(claims(exp=None), SECRET, "HS256"), "'exp'"),
    (lambda: jwt.encode(claims(iss=None), SECRET, "HS256"), "'iss'"),
    (lambda: jwt.encode(claims(aud=None), SECRET, "HS256"), "'aud'"),
    (lambda: jwt.encode(claims(iat=int(time.time()), exp=int(time.time()) + 86400), SECRET, "HS256"), "too long"),
    (lambda: jwt.encode(claims(iat=None, exp=int(time.time()) + 3600), SECRET, "HS256"), "too long"),
    (lambda: jwt.encode(claims(iat=int(time.time()) + 600), SECRET, "HS256"), "invalid"),
    (lambda: jwt.encode(claims(sub="slack:U123"), SECRET, "HS256"), "'sub'"),
    (lambda: jwt.encode(claims(sub="anon-" + "0" * 32), SECRET, "HS256"), "'sub'"),
    (lambda: "not a token", "not a JWT"),
])
def test_tokens_the_website_did_not_sign_as_required_are_refused_with_a_reason(token, reason):
    verifier = verifier_for(SECRET, "HS256")
    with pytest.raises(CustomerTokenError, match=reason):
        verifier.verify(token())


def test_clock_skew_is_tolerated_only_up_to_the_leeway():
    verifier = verifier_for(SECRET, "HS256", leeway_s=30)
    now = int(time.time())
    assert verifier.verify(jwt.encode(claims(iat=now - 310, exp=now - 10), SECRET, "HS256")) == "c_0042"
    with pytest.raises(CustomerTokenError, match="expired"):
        verifier.verify(jwt.encode(claims(iat=now - 360, exp=now - 60), SECRET, "HS256"))


def test_without_a_key_nobody_is_signed_in(mode):
    mode("local")
    verifier = TokenVerifier.from_environment({})
    assert not verifier.enabled
    with pytest.raises(CustomerTokenError, match="no customer token key"):
        verifier.verify(jwt.encode(claims(), SECRET, "HS256"))


def test_demo_tokens_are_minted_and_believed_in_demo_mode_only(mode):
    mode("local")
    with pytest.raises(PermissionError):
        tokens.demo_token("c_0042")
    mode("demo")
    token = tokens.demo_token("c_0042")
    assert TokenVerifier.from_environment({}).verify(token) == "c_0042"
    mode("production")
    with pytest.raises(PermissionError):
        tokens.demo_token("c_0042")
    with pytest.raises(CustomerTokenError):  # the website's key is configured; the demo key is not believed
        TokenVerifier.from_environment({"WEB_CUSTOMER_TOKEN_SECRET": SECRET}).verify(token)


# ---------------------------------------------------------------- identity
def test_a_conversation_is_linked_once_and_read_back(engine):
    identity.link("rest:backend:c_1", "c_1", "rest", "rest:backend", engine=engine)
    identity.link("rest:backend:c_1", "c_1", "rest", "rest:backend", engine=engine)  # idempotent
    identity.link("web:c_1", "c_1", "web", "token", engine=engine)
    identity.link("slack:U1", "slack:U1", "slack", "slack", engine=engine)
    identity.clear_cache()
    assert identity.customer_of("web:c_1", engine=engine) == "c_1"
    assert identity.customer_of("web:nobody", engine=engine) is None
    assert identity.conversations_of("c_1", engine=engine) == ["rest:backend:c_1", "web:c_1"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.identities.c.conversation_id, db.identities.c.verified_by)
                            .order_by(db.identities.c.conversation_id)).all()
    assert rows == [("rest:backend:c_1", "rest:backend"), ("slack:U1", "slack"), ("web:c_1", "token")]


def test_a_conversation_never_changes_customer(engine):
    identity.link("web:c_1", "c_1", "web", "token", engine=engine)
    with pytest.raises(identity.IdentityConflict):
        identity.link("web:c_1", "c_2", "web", "token", engine=engine)
    identity.clear_cache()  # the database says so too, not only this process's cache
    with pytest.raises(identity.IdentityConflict):
        identity.link("web:c_1", "c_2", "web", "token", engine=engine)
    assert identity.customer_of("web:c_1", engine=engine) == "c_1"


def test_a_known_link_does_not_reach_the_database_again(engine):
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    identity.link("telegram:5", "telegram:5", "telegram", "telegram", engine=engine)
    written = len(statements)
    for _ in range(50):
        identity.link("telegram:5", "telegram:5", "telegram", "telegram", engine=engine)
    assert written > 0 and len(statements) == written


def test_forget_removes_every_link_of_a_customer(engine):
    identity.link("rest:a:c_9", "c_9", "rest", "rest:a", engine=engine)
    identity.link("web:c_9", "c_9", "web", "token", engine=engine)
    assert identity.forget("c_9", engine=engine) == 2
    assert identity.conversations_of("c_9", engine=engine) == []
    assert identity.customer_of("web:c_9", engine=engine) is None


def test_bad_links_are_refused(engine):
    with pytest.raises(ValueError):
        identity.link("", "c_1", "web", "token", engine=engine)
    with pytest.raises(ValueError):
        identity.link("x:1", "c_1", "carrier-pigeon", "token", engine=engine)


@pytest.mark.parametrize("customer", ["c_0042", "alice@example.com", "A-1.b_2"])
def test_customer_ids_callers_may_vouch_for(customer):
    assert identity.CUSTOMER_ID.match(customer)


@pytest.mark.parametrize("customer", ["slack:U123", "telegram:555", "web:anon-" + "0" * 32, "rest:x:y", "", "a b", "x" * 129])
def test_customer_ids_that_would_reach_another_channel_are_not_accepted(customer):
    assert not identity.CUSTOMER_ID.match(customer)


# ----------------------------------------------------------------- callers
def test_caller_tokens_from_the_environment_are_parsed_and_checked():
    assert callers.parse_caller_tokens(" backend = t1 , crm=t2,") == {"backend": "t1", "crm": "t2"}
    for bad in ("backend", "=t1", "bad name=t1", "x="):
        with pytest.raises(ValueError, match="REST_CALLER_TOKENS"):
            callers.parse_caller_tokens(bad)


def test_a_caller_is_known_by_its_bearer_token(engine):
    registry = CallerRegistry({"REST_CALLER_TOKENS": "backend=" + "b" * 43}, engine)
    assert registry.caller_for("Bearer " + "b" * 43) == "backend"
    assert registry.caller_for("bearer " + "b" * 43) == "backend"
    for header, reason in [(None, "missing"), ("", "missing"), ("Bearer " + "c" * 43, "unknown"),
                           ("Basic YmFja2VuZDp4", "Bearer"), ("Bearer", "Bearer"), ("b" * 43, "Bearer")]:
        with pytest.raises(CallerRefused, match=reason):
            registry.caller_for(header)


def test_demo_mode_lets_a_request_without_credential_in_as_caller_demo_but_not_a_wrong_one(engine):
    registry = CallerRegistry({}, engine)
    assert registry.caller_for(None, demo=True) == "demo"
    with pytest.raises(CallerRefused, match="unknown"):
        registry.caller_for("Bearer wrong", demo=True)


def test_database_callers_are_added_listed_and_revoked_without_restart(engine):
    registry = CallerRegistry({}, engine, refresh_s=0.2)
    assert not registry.configured
    token = callers.add_caller("crm", engine)
    assert len(token) >= 43
    time.sleep(0.25)
    assert registry.caller_for(f"Bearer {token}") == "crm"
    with engine.connect() as conn:
        stored = conn.execute(sa.select(db.api_callers.c.token_sha256)).scalar()
    assert stored == callers.token_hash(token) and token not in stored  # only the hash is kept
    with pytest.raises(ValueError, match="already has an active token"):
        callers.add_caller("crm", engine)
    assert callers.revoke_caller("crm", engine)
    assert not callers.revoke_caller("crm", engine)
    time.sleep(0.25)
    with pytest.raises(CallerRefused, match="revoked"):
        registry.caller_for(f"Bearer {token}")
    listed = callers.list_callers(engine, {"REST_CALLER_TOKENS": "backend=x"})
    assert [(r["name"], r["source"], r["state"].split()[0]) for r in listed] == [
        ("backend", "environment", "active"), ("crm", "database", "revoked")]


@pytest.mark.parametrize("name", ["demo", "", "bad name", "x" * 65, "a:b"])
def test_caller_names_that_could_be_confused_are_refused(engine, name):
    with pytest.raises(ValueError):
        callers.add_caller(name, engine)


def test_the_admin_command_prints_a_new_token_once_and_revokes_it(engine, monkeypatch, capsys):
    monkeypatch.setattr(callers.db, "connect", lambda url=None: engine)
    assert admin.main(["rest-caller", "add", "backoffice"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert CallerRegistry({}, engine).caller_for(f"Bearer {token}") == "backoffice"
    assert admin.main(["rest-caller", "list"]) == 0
    listing = capsys.readouterr().out
    assert "backoffice" in listing and token not in listing
    assert admin.main(["rest-caller", "revoke", "backoffice"]) == 0
    assert admin.main(["rest-caller", "revoke", "backoffice"]) == 1
    assert admin.main(["rest-caller", "add", "demo"]) == 2


# ------------------------------------------------------------------ actions
class _Tracker:
    def __init__(self, sender_id, events):
        self.sender_id, self.events = sender_id, events


def test_actions_take_the_customer_from_the_channel_s_metadata_then_the_identity_table(engine, monkeypatch):
    from bot.actions.identity import customer_id_of

    monkeypatch.setattr(identity, "_engine", lambda given=None: engine)
    said = {"event": "user", "metadata": {"channel": "rest", "customer_id": "c_7"}}
    assert customer_id_of(_Tracker("rest:backend:c_7", [said, {"event": "bot"}])) == "c_7"
    identity.link("web:c_8", "c_8", "web", "token", engine=engine)
    assert customer_id_of(_Tracker("web:c_8", [{"event": "user", "metadata": {}}])) == "c_8"
    assert customer_id_of(_Tracker("web:anon-" + "1" * 32, [])) == "web:anon-" + "1" * 32
