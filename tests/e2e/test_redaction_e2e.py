"""Redaction end to end: what a REST caller sends is stored redacted, text, payload-shaped text and metadata.

Against the real servers (the `assistant` fixture). The unit tests are
tests/test_redaction*.py; this checks the desk really sits in front of the
tracker store for the parts issue 13 found skipped (payload-shaped text,
metadata, Chinese text).
"""
from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.test_security import api_headers, request

pytestmark = pytest.mark.e2e

CARD, PHONE, EMAIL = "4539148803436467", "07700 900123", "zhang.san@example.com"


def _post(assistant, sender: str, text: str, metadata=None) -> int:
    from tests.e2e.conftest import TEST_REST_TOKEN

    body = {"sender": sender, "message": text}
    if metadata is not None:
        body["metadata"] = metadata
    status, _, _ = request(
        f"{assistant.url}/webhooks/rest/webhook", json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {TEST_REST_TOKEN}"},
    )
    return status


def test_payload_shaped_text_metadata_and_chinese_text_are_stored_redacted(assistant):
    sender = f"red-{uuid.uuid4().hex[:8]}"
    assert _post(assistant, sender, f"/{CARD}") == 200
    assert _post(assistant, sender, f"我的卡号是{CARD}请冻结，邮箱{EMAIL}谢谢") == 200
    assert _post(assistant, sender, "hello", {"page": f"https://bank.example/help?tel={PHONE}", "note": {"card": CARD}}) == 200
    status, _, raw = request(f"{assistant.url}/conversations/{assistant.conversation_of(sender)}/tracker", headers=api_headers(assistant))
    assert status == 200
    stored = raw.decode()
    for secret in (CARD, PHONE, EMAIL, "07700900123"):
        assert secret not in stored, secret
    users = [e for e in json.loads(stored)["events"] if e["event"] == "user"]
    assert [e["text"] for e in users] == ["/[CARD]", "我的卡号是[CARD]请冻结，邮箱[EMAIL]谢谢", "hello"]
    assert users[2]["metadata"]["page"] == "https://bank.example/help?tel=[PHONE]"
    assert users[2]["metadata"]["note"] == {"card": "[CARD]"}
