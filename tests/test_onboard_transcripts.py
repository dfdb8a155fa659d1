"""Reading a company's helpdesk history for onboarding (issue 19): every accepted format, personal data
redacted as it is read, and each kind of bad input reported with its file and line, skipped and counted.
The fixtures (tests/fixtures/onboarding/) are synthetic."""
from __future__ import annotations

import json

import pytest

from core.settings import PROJECT_ROOT
from training.onboard.transcripts import (KINDS, TranscriptFolderError, html_text, in_language, iso_time,
                                          rating_score, read_transcripts)

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "onboarding"


def by_id(transcripts):
    return {c.id: c for c in transcripts.conversations}


def test_every_accepted_format_reads_into_conversations_of_customer_and_agent_turns():
    transcripts = read_transcripts(FIXTURES / "good")

    assert transcripts.problems == []
    conversations = by_id(transcripts)
    assert sorted(conversations) == sorted(
        ["chat-1", "chat-2", "conv-1", "conv-2", "147", "T-100", "T-101", "th-7", "th-8", "35436"])
    assert {c.source for c in transcripts.conversations} == {
        "chats.txt", "conversations.jsonl", "intercom_conversation.json", "turns.csv", "turns.jsonl",
        "zendesk_tickets.json"}
    t100 = conversations["T-100"]
    assert [(t.speaker, t.line) for t in t100.turns] == [("customer", 2), ("customer", 3), ("agent", 4), ("customer", 5)]
    assert t100.turns[0].time == "2025-03-03T09:00:00"
    assert conversations["th-8"].turns[0].time == "2025-03-04T09:00:00+00:00"  # unix seconds
    assert conversations["chat-1"].turns[0].time == "2025-03-01T10:00:00"  # "[10:00]" on the "# date:" header
    assert (conversations["conv-1"].rating, conversations["conv-2"].rating) == (0.9, 0.0)
    assert transcripts.summary() == {"files": 6, "conversations": 10, "turns": 33, "internal_notes_dropped": 2,
                                     "redacted": {"EMAIL": 1}, "skipped": {kind: 0 for kind in KINDS}}


def test_a_zendesk_ticket_export_reads_the_requester_as_the_customer_and_drops_private_comments():
    ticket = by_id(read_transcripts(FIXTURES / "good" / "zendesk_tickets.json"))["35436"]

    assert [(t.speaker, t.text) for t in ticket.turns] == [
        ("customer", "I was charged twice for the same order 88123."),
        ("agent", "Sorry about that. We have refunded the second charge; it shows within 2 working days."),
    ]
    assert "team lead" not in json.dumps([t.text for t in ticket.turns])  # the public=false note
    assert ticket.rating == 1.0 and ticket.line == 3 and ticket.turns[1].time == "2025-03-06T09:30:00+00:00"


def test_an_intercom_conversation_reads_html_bodies_as_text_and_drops_notes_and_events():
    conversation = by_id(read_transcripts(FIXTURES / "good" / "intercom_conversation.json"))["147"]

    assert [(t.speaker, t.text) for t in conversation.turns] == [
        ("customer", "Hi there"),
        ("customer", "How do I add my partner as a second card holder?"),
        ("agent", "You can add a second card holder in the app under Cards > Add card holder."),
        ("customer", "Great, done. Thanks!"),
    ]
    assert conversation.rating == 1.0  # 5 stars of 5
    assert conversation.turns[1].time == "2025-03-07T09:01:00+00:00"


def test_json_files_hold_one_object_a_list_or_a_wrapper_and_each_item_keeps_its_line(tmp_path):
    def intercom(conversation_id, question):
        return {"type": "conversation", "id": conversation_id,
                "source": {"body": f"<p>{question}</p>", "author": {"type": "lead"}},
                "conversation_parts": {"conversation_parts": [
                    {"part_type": "comment", "body": "<p>Here is how.</p>", "author": {"type": "bot"},
                     "created_at": 1741338060}]},
                "conversation_rating": {"rating": 2}}

    (tmp_path / "list.json").write_text(json.dumps([intercom("a", "How do I pay a cheque in?"),
                                                    intercom("b", "Can I freeze my card?")], indent=2))
    (tmp_path / "wrapped.json").write_text(json.dumps({"type": "conversation.list",
                                                       "conversations": [intercom("c", "Where is my PIN letter?")]}))
    ticket = {"id": 9, "requester_id": 1, "comments": [
        {"author_id": 1, "html_body": "<p>Why is my balance wrong?</p>", "public": True},
        {"author_id": 2, "plain_body": "A payment is still pending.", "public": True}]}
    (tmp_path / "ticket.json").write_text(json.dumps({"ticket": ticket}))
    (tmp_path / "lines.json").write_text(json.dumps(intercom("d", "Do you charge for statements?")) + "\n"
                                         + json.dumps(intercom("e", "Can I add a nickname to my account?")) + "\n")

    transcripts = read_transcripts(tmp_path)

    assert transcripts.problems == []
    places = {c.id: (c.source, c.line) for c in transcripts.conversations}
    starts = [n for n, line in enumerate((tmp_path / "list.json").read_text().splitlines(), 1) if line == "  {"]
    assert places == {"a": ("list.json", starts[0]), "b": ("list.json", starts[1]), "c": ("wrapped.json", 1),
                      "9": ("ticket.json", 1), "d": ("lines.json", 1), "e": ("lines.json", 2)}
    assert by_id(transcripts)["9"].turns[0].text == "Why is my balance wrong?"
    assert by_id(transcripts)["a"].rating == 0.25 and by_id(transcripts)["a"].turns[1].speaker == "agent"


def test_personal_data_is_redacted_as_it_is_read_before_duplicates_are_looked_for(tmp_path):
    (tmp_path / "a.txt").write_text(
        "Customer: my card 4111 1111 1111 1111 was swallowed, my email is ana@example.com\nAgent: We will post a new one.\n")
    (tmp_path / "b.txt").write_text(
        "Customer: my card 5555 5555 5555 4444 was swallowed, my email is bo@example.org\nAgent: We will post a new one.\n")

    transcripts = read_transcripts(tmp_path)

    [kept] = transcripts.conversations
    assert kept.turns[0].text == "my card [CARD] was swallowed, my email is [EMAIL]"
    assert transcripts.summary()["redacted"] == {"CARD": 2, "EMAIL": 2}
    [duplicate] = transcripts.problems
    assert (duplicate.kind, str(duplicate)) == ("duplicate", "b.txt:1: conversation repeats conversation a.txt:1 "
                                                             "(a.txt:1); skipped")
    chat = by_id(read_transcripts(FIXTURES / "good" / "chats.txt"))["chat-1"]
    assert "ana@example.com" not in json.dumps([t.text for t in chat.turns])


def test_each_kind_of_bad_input_is_reported_with_file_and_line_skipped_and_counted():
    transcripts = read_transcripts(FIXTURES / "bad")

    reported = {(p.kind, f"{p.source}:{p.line}") for p in transcripts.problems}
    assert reported == {
        ("unreadable", "broken.json:2"),  # not valid JSON
        ("unreadable", "columns.csv:1"),  # a CSV without the turn columns
        ("empty_file", "empty.txt:1"),
        ("unreadable", "export.xml:1"),  # unknown file type
        ("other_language", "language.jsonl:1"),  # a Chinese conversation in an English project
        ("no_customer_turns", "no_customer.txt:3"),
        ("unreadable", "screenshot.jsonl:1"),  # binary
        ("unreadable", "shape.json:1"),  # JSON of no known shape
        ("unknown_speaker", "speakers.csv:3"),  # "System": the turn is skipped, the conversation kept
        ("duplicate", "ticket_export_b.jsonl:1"),  # the same ticket exported twice: the first kept
    }
    messages = {str(p) for p in transcripts.problems}
    assert "screenshot.jsonl:1: a binary file, not a transcript" in messages
    assert "speakers.csv:3: unknown speaker 'System' (expected customer or agent); turn skipped" in messages
    assert any(m.startswith("ticket_export_b.jsonl:1: conversation 501 repeats conversation 501 "
                            "(ticket_export_a.json:2)") for m in messages)
    kept = by_id(transcripts)
    assert sorted(kept) == ["501", "S-1", "en-mixed"]  # a few foreign words ("上海") are fine
    assert [t.speaker for t in kept["S-1"].turns] == ["customer", "agent"]
    assert transcripts.summary()["skipped"] == {"empty_file": 1, "unreadable": 5, "unknown_speaker": 1,
                                                "no_customer_turns": 1, "other_language": 1, "duplicate": 1}
    assert transcripts.summary()["files"] == 11


def test_unknown_speakers_in_text_and_conversation_files_skip_the_turn_and_keep_the_rest(tmp_path):
    (tmp_path / "chat.txt").write_text("Bot: Welcome to the chat\nCustomer: Can I get a loan?\nAgent: Apply in the app.\n")
    (tmp_path / "conversations.jsonl").write_text(json.dumps({"id": "x", "turns": [
        {"speaker": "customer", "text": "Do you do mortgages?"}, {"speaker": "robot", "text": "Routing you."},
        {"speaker": "agent", "text": "Yes, from 5 % deposit."}]}) + "\n{broken\n")

    transcripts = read_transcripts(tmp_path)

    assert sorted((p.kind, str(p)) for p in transcripts.problems) == [
        ("unknown_speaker", "chat.txt:1: unknown speaker 'Bot' (expected 'Customer: ...' or 'Agent: ...')"),
        ("unknown_speaker", "conversations.jsonl:1: turn 2: unknown speaker 'robot' (expected customer or agent)"),
        ("unreadable", "conversations.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes)"),
    ]
    assert [len(c.turns) for c in transcripts.conversations] == [2, 2]


def test_conversation_ids_are_the_exports_else_the_place_and_stay_the_same_across_runs(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "7", "turns": [{"speaker": "customer", "text": "Lost card"}]}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "7", "turns": [{"speaker": "customer", "text": "New PIN"}]}) + "\n")
    (tmp_path / "c.txt").write_text("# synthetic\n\nCustomer: Is the branch open on Sunday?\n")

    first, second = read_transcripts(tmp_path), read_transcripts(tmp_path)

    assert [c.id for c in first.conversations] == ["7", "b.jsonl:1#7", "c.txt:3"]
    assert [c.id for c in second.conversations] == [c.id for c in first.conversations]


def test_the_projects_language_decides_which_conversations_are_foreign(tmp_path):
    (tmp_path / "mixed.jsonl").write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in [
        {"id": "zh", "turns": [{"speaker": "customer", "text": "我想注销我的账户"}]},
        {"id": "en", "turns": [{"speaker": "customer", "text": "I want to close my account"}]},
    ]))

    chinese = read_transcripts(tmp_path, language="zh")

    assert [c.id for c in chinese.conversations] == ["zh"]
    assert [(p.kind, p.line) for p in chinese.problems] == [("other_language", 2)]
    assert [c.id for c in read_transcripts(tmp_path, language="en-GB").conversations] == ["en"]
    assert in_language(["Могу ли я открыть счёт?"], "ru") and not in_language(["Могу ли я открыть счёт?"], "en")
    assert in_language(["anything at all 随便"], "tlh")  # a language whose script is not known is not checked


def test_a_missing_folder_is_a_clear_error():
    with pytest.raises(TranscriptFolderError, match="no such folder"):
        read_transcripts(FIXTURES / "not-there")


@pytest.mark.parametrize("value, expected", [
    ("good", 1.0), ({"score": "bad"}, 0.0), ({"score": "offered"}, None), ({"rating": 4}, 0.75), (0.4, 0.4),
    (5, 1.0), (None, None), ("0.5", 0.5),
])
def test_ratings_become_a_score_from_0_to_1(value, expected):
    assert rating_score(value) == expected


@pytest.mark.parametrize("value", ["excellent", 7, {"rating": 9}, -1])
def test_a_rating_that_cannot_be_read_is_an_error(value):
    with pytest.raises(ValueError, match="not understood"):
        rating_score(value)


def test_an_unreadable_rating_is_reported_and_the_conversation_kept(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "r", "rating": "meh", "turns": [
        {"speaker": "customer", "text": "Where is my statement?"}]}) + "\n")

    transcripts = read_transcripts(tmp_path)

    assert [c.rating for c in transcripts.conversations] == [None]
    assert [str(p) for p in transcripts.problems] == [
        "c.jsonl:1: conversation r: rating 'meh' not understood (expected good/bad, 0..1 or 1..5 stars); "
        "read without a rating"]


def test_times_and_html_are_normalised():
    assert iso_time("2025-03-01T10:02:00Z") == "2025-03-01T10:02:00+00:00"
    assert iso_time(1741338060000) == iso_time(1741338060) == "2025-03-07T09:01:00+00:00"
    assert iso_time("10:02", "2025-03-01") == "2025-03-01T10:02:00"
    assert iso_time("last Tuesday") is None
    assert html_text("<p>Fees &amp; charges</p><ul><li>one</li><li>two</li></ul>") == "Fees & charges one two"


def test_a_transcripts_rating_header_and_a_turn_rows_rating_column_rate_the_conversation(tmp_path):
    (tmp_path / "chat.txt").write_text("# conversation: r-1\n# rating: bad\nCustomer: Where is my parcel?\n"
                                       "Agent: It left our warehouse today.\n")
    (tmp_path / "turns.csv").write_text("conversation_id,speaker,text,rating\nr-2,customer,Can I pay by PayPal?,\n"
                                        "r-2,agent,\"Yes, PayPal is fine.\",good\n")

    assert {c.id: c.rating for c in read_transcripts(tmp_path).conversations} == {"r-1": 0.0, "r-2": 1.0}
