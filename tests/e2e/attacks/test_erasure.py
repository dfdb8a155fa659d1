"""Attacks on erasure and on data exports, as an outsider with nothing but HTTP.

- The action server run directly: ``action_forget_me`` / ``action_export_my_data``
  for someone else's id are refused without the shared secret, and nothing is
  recorded or written.
- The REST channel claiming another customer: in production an outsider has no
  caller credential (401); in demo mode, where REST is open by design, a
  client-supplied ``customer_id`` is ignored, so "delete my data" erases the
  sender, never the customer named in the metadata.
- The export link: unknown, malformed, path-like and expired tokens all get
  the same 404; only the exact token given in the conversation opens the export.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid

import sqlalchemy as sa

from core import db
from tests.e2e.attacks.conftest import http, post_json, strong
from tests.e2e.attacks.test_servers import erasure_requests_of, forget_me_call, victim_with_a_conversation


def _exports_of(target, customer: str) -> int:
    engine = db.connect(target.db_url)
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(db.data_exports).where(db.data_exports.c.customer_id == customer)).scalar()


def test_action_server_refuses_export_and_erasure_of_another_customer_without_the_secret(attack_target):
    victim = victim_with_a_conversation(attack_target)
    conversation = attack_target.conversations_like(victim)[0]
    for action in ("action_forget_me", "action_export_my_data"):
        call = dict(forget_me_call(conversation), next_action=action)
        for headers in ({}, {"X-Action-Secret": strong()}):
            status, _, body = post_json(f"{attack_target.action_url}/webhook", call, headers)
            assert status == 401, (action, headers, status, body)
            assert b"my-data" not in body and b"/webhooks/privacy/export/" not in body  # no link handed out
    assert erasure_requests_of(attack_target, victim) == []
    assert _exports_of(attack_target, victim) == 0


def test_rest_cannot_erase_or_export_another_customer(attack_target):
    victim = victim_with_a_conversation(attack_target)
    attacker = f"attacker{uuid.uuid4().hex[:8]}"
    if attack_target.production:  # no caller credential: refused before anything happens
        for text in ("please delete my data", "/affirm", "send me a copy of my data"):
            status, _, body = post_json(f"{attack_target.url}/webhooks/rest/webhook",
                                        {"sender": victim, "message": text, "metadata": {"customer_id": victim}})
            assert status == 401, (status, body)
        assert erasure_requests_of(attack_target, victim) == [] and _exports_of(attack_target, victim) == 0
        return
    # Demo mode's open REST: the metadata naming the victim is dropped; the sender is who is erased.
    spoof = {"customer_id": victim, "channel": "web"}
    for text in ("please delete my data", "/affirm"):
        status, _, body = post_json(f"{attack_target.url}/webhooks/rest/webhook", {"sender": attacker, "message": text, "metadata": spoof})
        assert status == 200, (status, body)
    status, _, body = post_json(f"{attack_target.url}/webhooks/rest/webhook",
                                {"sender": attacker, "message": "send me a copy of my data", "metadata": spoof})
    assert status == 200
    assert erasure_requests_of(attack_target, victim) == []
    assert erasure_requests_of(attack_target, attacker) == [attacker]
    assert _exports_of(attack_target, victim) == 0
    link = next((m["text"] for m in json.loads(body) if "/webhooks/privacy/export/" in (m.get("text") or "")), None)
    assert link is not None, body  # the attacker gets a copy of their own data only
    token = link.split("/webhooks/privacy/export/", 1)[1].split()[0]
    status, _, exported = http(f"{attack_target.url}/webhooks/privacy/export/{token}")
    assert status == 200 and json.loads(exported)["customer_id"] == attacker
    assert victim not in exported.decode()


def test_export_links_open_only_with_the_exact_unexpired_token(attack_target):
    victim = f"victim{uuid.uuid4().hex[:8]}"
    engine = db.connect(attack_target.db_url)
    token, expired = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = time.time()
    with engine.begin() as conn:  # two exports of the victim's, as action_export_my_data keeps them
        for value, expires in ((token, now + 3600), (expired, now - 1)):
            conn.execute(db.data_exports.insert().values(token_hash=hashlib.sha256(value.encode()).hexdigest(), customer_id=victim,
                                                         conversation_id=f"web:{victim}", content=json.dumps({"customer_id": victim}),
                                                         created_at=now, expires_at=expires))
    base = f"{attack_target.url}/webhooks/privacy/export/"
    guesses = [secrets.token_urlsafe(32), token[:-2] + "AA", expired, "x", "../../../etc/passwd", "%2e%2e%2fassistant.db",
               hashlib.sha256(token.encode()).hexdigest(), victim]
    for guess in guesses:
        status, headers, body = http(base + guess)
        assert status == 404, (guess, status)
        assert victim.encode() not in body
    status, headers, body = http(base + token)  # the one link the conversation was given
    assert status == 200 and json.loads(body)["customer_id"] == victim
    assert headers.get("Cache-Control") == "no-store"
