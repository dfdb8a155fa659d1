"""Reading a messy history: bad lines reported with their numbers, duplicates
merged keeping the newest answer, personal data redacted before anything is
embedded or stored; and the `training.build_index` command around it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT
from retrieval import AnswerIndex
from retrieval.ingest import merge_near_duplicates, read_history
from training import build_index

QA_JSONL = "\n".join([
    json.dumps({"id": "close-1", "question": "How do I close my account?", "answer": "Visit a branch.", "updated_at": "2023-05-01"}),
    "{this is not json",
    json.dumps({"question": "Can I get a metal card?", "answer": ""}),
    "",
    json.dumps({"id": "close-2", "question": "How can I close my account?", "answer": "Close it in the app.", "updated_at": "2025-02-01"}),
    json.dumps(["a", "list"]),
    json.dumps({"question": "Is there a fee for coins?", "answer": "Coins are free to pay in.", "updated_at": "last Tuesday"}),
    json.dumps({"question": "Ring me on 07700 900123 about my card 4111 1111 1111 1111", "answer": "We'll call you back at [PHONE]."}),
])

QA_CSV = (
    "question,answer,tags\n"
    '"Can I open a joint account?","Yes, for two people.",joint\n'
    '"Broken row with too many fields",a,b,c\n'
    '"Do you offer business loans?","Yes, from £1,000 to £50,000.","business;lending"\n'
)

TRANSCRIPT = """# exported from the desk
# conversation: c-1
# date: 2025-03-01
[10:00] Customer: hi
[10:00] Agent: Hello, how can I help?
[10:01] Customer: Can I keep my account if I move to Spain?
[10:01] Customer: my email is ana@example.com
[10:02] Agent: Yes, you can keep it while you live abroad.
Please update your address in the app.
random text that belongs to no one

# conversation: c-2
Client: What is the SWIFT code of Northwind?
Agent: It is NWBKGB2L.
Customer: and one more thing
"""


@pytest.fixture()
def history(tmp_path: Path) -> Path:
    folder = tmp_path / "history"
    (folder / "transcripts").mkdir(parents=True)
    (folder / "qa.jsonl").write_text(QA_JSONL, encoding="utf-8")
    (folder / "more.csv").write_text(QA_CSV, encoding="utf-8")
    (folder / "transcripts" / "march.txt").write_text(TRANSCRIPT, encoding="utf-8")
    return folder


def test_malformed_lines_are_reported_with_their_line_numbers_and_nothing_else_is_lost(history):
    report = read_history([history])

    skipped = {(s.location.replace(str(history) + "/", ""), s.reason.split(" (")[0]) for s in report.skipped}
    assert skipped == {
        ("qa.jsonl:2", "not valid JSON"),
        ("qa.jsonl:3", "record has no answer"),
        ("qa.jsonl:6", "not a JSON object"),
        ("qa.jsonl:7", "updated_at 'last Tuesday' is not an ISO 8601 date or time"),
        ("more.csv:3", "4 fields where the header has 3"),
        ("transcripts/march.txt:4", "question too short to answer from"),
        ("transcripts/march.txt:15", "customer turn without an agent reply"),
    }
    questions = [r.question for r in report.records]
    assert questions == [
        "Can I open a joint account?",
        "Do you offer business loans?",
        "How do I close my account?",
        "How can I close my account?",
        "Ring me on [PHONE] about my card [CARD]",
        "Can I keep my account if I move to Spain? my email is [EMAIL]",
        "What is the SWIFT code of Northwind?",
    ]
    assert "[EMAIL]" in report.summary() or "email" in report.summary()


def test_a_transcript_turn_followed_by_the_agent_reply_becomes_a_pair(history):
    report = read_history([history / "transcripts"])
    spain = next(r for r in report.records if "Spain" in r.question)

    assert spain.answer == "Yes, you can keep it while you live abroad. Please update your address in the app. random text that belongs to no one"
    assert spain.updated_at == "2025-03-01T10:02:00"
    assert spain.source.endswith("march.txt#c-1") and spain.tags == ("transcript",)
    assert report.redactions["EMAIL"] == 1


def test_personal_data_never_reaches_the_records(history):
    report = read_history([history])
    stored = json.dumps([r.as_dict() for r in report.records])

    for secret in ("07700 900123", "4111 1111 1111 1111", "ana@example.com"):
        assert secret not in stored
    assert report.redactions == {"PHONE": 1, "CARD": 1, "EMAIL": 1}


def test_near_duplicate_questions_keep_the_newest_answer(history):
    report = read_history([history])
    index = AnswerIndex(encoder="bundled")
    vectors = index.encode([r.question for r in report.records])

    kept, merges = merge_near_duplicates(report.records, vectors, threshold=0.95)

    kept_ids = {report.records[i].id for i in kept}
    assert "close-2" in kept_ids and "close-1" not in kept_ids
    [merge] = merges
    assert (merge.dropped.id, merge.kept.id) == ("close-1", "close-2") and merge.similarity >= 0.95


def test_build_index_command_writes_a_searchable_redacted_index(history, tmp_path, capsys):
    out = tmp_path / "index"

    assert build_index.main([str(history), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert "qa.jsonl:2: not valid JSON" in printed
    assert "merged:" in printed and "6 pairs after merging 1 near duplicates" in printed
    index = AnswerIndex.load(out)
    assert index.search("how to close an account", k=1)[0].answer == "Close it in the app."
    stored = "".join(p.read_text(encoding="utf-8", errors="replace") for p in out.iterdir())
    assert "ana@example.com" not in stored and "4111 1111 1111 1111" not in stored


def test_build_index_refuses_an_index_type_the_history_is_too_small_for(history, tmp_path, capsys):
    assert build_index.main([str(history), "--out", str(tmp_path / "index"), "--index", "IVF256,Flat"]) == 2
    assert "use 'Flat'" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()


def test_the_demo_history_has_enough_pairs_on_topics_the_intents_do_not_cover():
    report = read_history([PROJECT_ROOT / "bot" / "history"])
    topics = {tag for r in report.records for tag in r.tags}

    assert len(report.records) >= 150
    assert {"joint-accounts", "cards-abroad", "disputes", "closing", "business"} <= topics
    assert any(r.source and "transcripts" in r.source for r in report.records)
