"""Operations end to end: /metrics of both servers, /health, /ready and the JSON logs.

Against the real Rasa server and action server (the `assistant` fixture):
counters and histograms move when customers write, a nonsense message counts
as a fallback, a request for a person as a handoff, a suggestion shown and
clicked as such; /health names every part with its status; every log line
is a JSON object, carrying the conversation id while a message is handled,
with no personal data in it.
"""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from typing import Dict, Tuple

import pytest

pytestmark = pytest.mark.e2e

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def get(url: str, timeout: float = 30) -> Tuple[int, Dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def scrape(url: str) -> Dict[str, float]:
    """`{'name{labels}': value}` from a Prometheus exposition."""
    status, headers, body = get(f"{url}/metrics")
    assert status == 200 and headers.get("Content-Type", "").startswith("text/plain"), (status, headers)
    samples = {}
    for line in body.decode().splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def action_url(assistant) -> str:
    return f"http://localhost:{assistant.env['ASSISTANT_ACTION_PORT']}"


def moved(before: Dict[str, float], after: Dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_move_when_customers_write(assistant):
    rasa0, actions0 = scrape(assistant.url), scrape(action_url(assistant))
    sender = f"ops-{uuid.uuid4().hex[:8]}"
    assistant.send(sender, "hello")
    assistant.send(sender, "which exchange rate does Northwind use")
    rasa1, actions1 = scrape(assistant.url), scrape(action_url(assistant))

    assert moved(rasa0, rasa1, 'assistant_messages_total{channel="rest"}') >= 2
    assert moved(rasa0, rasa1, 'assistant_message_seconds_count{channel="rest"}') >= 2
    assert moved(rasa0, rasa1, 'assistant_message_seconds_bucket{channel="rest",le="+Inf"}') >= 2
    assert moved(rasa0, rasa1, "assistant_message_seconds_sum{channel=\"rest\"}") > 0
    assert moved(rasa0, rasa1, "assistant_nlu_seconds_count") >= 2
    assert moved(rasa0, rasa1, "assistant_retrieval_seconds_count") >= 2
    assert moved(rasa0, rasa1, "assistant_model_seconds_count") >= 2  # each message's models, on the model thread
    assert moved(actions0, actions1, 'assistant_action_seconds_count{action="action_answer_intent"}') >= 1
    assert moved(actions0, actions1, "assistant_recommendation_seconds_count") >= 1
    assert moved(actions0, actions1, "assistant_suggestions_shown_total") >= 1
    assert moved(rasa0, rasa1, "assistant_tracker_events_count") >= 2  # the store handed Rasa its trackers
    assert moved(rasa0, rasa1, 'assistant_tracker_events_bucket{le="100.0"}') >= 2  # short: a new conversation
    assert moved(rasa0, rasa1, 'assistant_tracker_cache_total{result="new"}') >= 1
    assert moved(rasa0, rasa1, 'assistant_tracker_cache_total{result="hit"}') >= 1
    assert "process_cpu_seconds_total" in rasa1  # the client's process metrics come along
    # Both servers time their garbage collector's pauses (and froze what they loaded at start).
    assert rasa1.get('assistant_gc_pause_seconds_count{generation="0"}', 0) > 0
    assert actions1.get('assistant_gc_pause_seconds_count{generation="0"}', 0) > 0


def test_a_nonsense_message_counts_as_a_fallback(assistant):
    before = scrape(assistant.url)
    assistant.send(f"ops-nonsense-{uuid.uuid4().hex[:8]}", "zxq wibble florp quonk")
    after = scrape(assistant.url)
    assert moved(before, after, 'assistant_fallbacks_total{kind="nlu_fallback"}') == 1


def test_a_request_for_a_person_counts_as_a_handoff(assistant):
    before = scrape(assistant.url)
    replies = assistant.send(f"ops-human-{uuid.uuid4().hex[:8]}", "I want to talk to a human")
    assert any(r.get("notice") == "utter_handoff_queued" for r in replies), replies
    after = scrape(assistant.url)
    assert moved(before, after, 'assistant_handoffs_total{reason="asked"}') == 1


def test_a_suggestion_click_is_counted(assistant):
    sender = f"ops-click-{uuid.uuid4().hex[:8]}"
    replies = assistant.send(sender, "which exchange rate does Northwind use")
    payload = next(b["payload"] for r in replies for b in r.get("buttons") or [] if b["payload"].startswith("/select_suggestion"))
    before = scrape(action_url(assistant))
    assistant.send(sender, payload)
    after = scrape(action_url(assistant))
    assert moved(before, after, "assistant_suggestion_clicks_total") == 1
    assert moved(before, after, 'assistant_action_seconds_count{action="action_select_suggestion"}') == 1


def test_health_names_every_part_and_ready_says_a_model_is_loaded(assistant):
    status, _, body = get(f"{assistant.url}/health")
    health = json.loads(body)
    assert status == 200, health
    assert health["status"] == "ok" and health["failed"] == []
    assert health["checks"] == {
        "process": "ok", "model": "ok", "database": "ok", "tracker_store": "ok", "action_server": "ok",
    }
    status, _, body = get(f"{assistant.url}/ready")
    assert (status, json.loads(body)) == (200, {"ready": True})


def test_logs_are_json_lines_with_the_conversation_id_and_no_personal_data(assistant):
    sender = f"ops-logs-{uuid.uuid4().hex[:8]}"
    card = "4539 1488 0343 6467"
    assistant.send(sender, "This is RIDICULOUS, you are completely useless!!")  # the desk logs the handoff
    assistant.send(sender, f"my card {card}, mail me at jo.bloggs@example.com")
    time.sleep(1)
    lines = (assistant.workdir / "rasa.log").read_text(errors="replace").splitlines()
    entries = []
    for line in lines:
        if line.startswith("{"):
            entries.append(json.loads(line))
    assert entries, "the Rasa server writes JSON lines"
    assert {"ts", "level", "service", "logger", "message", "conversation_id"} <= set(entries[-1])
    assert any(e["conversation_id"] == assistant.conversation_of(sender) for e in entries), "lines logged while handling the message carry its id"
    everything = "\n".join(lines) + (assistant.workdir / "actions.log").read_text(errors="replace")
    assert card not in everything and "jo.bloggs@example.com" not in everything
    action_entries = [json.loads(l) for l in (assistant.workdir / "actions.log").read_text(errors="replace").splitlines() if l.startswith("{")]
    assert action_entries and all(e["service"] == "actions" for e in action_entries)
