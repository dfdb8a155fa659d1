"""`retrieval.AnswerIndex`: build, search, add, remove, save and load.

These use the real bundled encoder and real FAISS indexes on a handful of
past questions.
"""
from __future__ import annotations

import json

import pytest

from retrieval import AnswerIndex
from retrieval.index import IndexConfigError, IndexNotFoundError
from retrieval.rerank import group_by_answer

HISTORY = [
    {"id": "close", "question": "How do I close my current account?", "answer": "Close it in the app under Account settings.",
     "source": "faq", "tags": ["closing"], "updated_at": "2025-01-02"},
    {"id": "joint", "question": "Can I open a joint account with my partner?", "answer": "Yes, two people can hold one.",
     "tags": ["joint-accounts"]},
    {"id": "abroad", "question": "What is my card's cash withdrawal limit abroad?", "answer": "£500 a day, up to £1,000.",
     "tags": ["cards-abroad"]},
    {"id": "dispute", "question": "How do I dispute a charge on my card?", "answer": "Report a problem on the payment."},
    {"id": "business", "question": "Can I open a business account for my company?", "answer": "Yes, at northwind.example/business."},
    {"id": "isa", "question": "How much can I pay into a cash ISA each year?", "answer": "£20,000 per tax year."},
]


@pytest.fixture(scope="module")
def index() -> AnswerIndex:
    return AnswerIndex.build(HISTORY)


def test_search_finds_the_past_question_asked_differently(index):
    hits = index.search("I want to shut my current account", k=3)

    assert [h.id for h in hits][0] == "close"
    assert hits[0].answer == "Close it in the app under Account settings."
    assert hits[0].metadata == {"source": "faq", "tags": ["closing"], "updated_at": "2025-01-02"}
    assert len(hits) == 3
    assert hits[0].score > hits[1].score >= hits[2].score
    assert 0.5 < hits[0].score <= 1.0001  # cosine similarity of normalised vectors


def test_search_many_gives_the_same_hits_as_one_search_each(index):
    queries = ["shut my account", "how much cash can I withdraw abroad"]
    many = index.search_many(queries, k=2)

    assert [[h.id for h in hits] for hits in many] == [[h.id for h in index.search(q, k=2)] for q in queries]
    assert many[1][0].id == "abroad"


def test_k_larger_than_the_history_returns_every_record_once(index):
    assert sorted(h.id for h in index.search("account", k=50)) == sorted(r["id"] for r in HISTORY)


def test_add_makes_a_new_answer_findable_and_replaces_a_record_with_the_same_id():
    index = AnswerIndex.build(HISTORY)
    index.add([{"id": "coins", "question": "Can I pay coins into my account?", "answer": "At a branch or Post Office."}])
    index.add([{"id": "isa", "question": "How much can I pay into a cash ISA each year?", "answer": "£20,000 (2025/26)."}])

    assert index.search("depositing coins", k=1)[0].id == "coins"
    assert index.search("ISA allowance per year", k=1)[0].answer == "£20,000 (2025/26)."
    assert len(index) == len(HISTORY) + 1


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_remove_hides_the_record_without_a_rebuild(factory):
    index = AnswerIndex.build(HISTORY, index=factory)

    assert index.remove(["close", "no-such-id"]) == 1
    assert "close" not in index
    assert "close" not in [h.id for h in index.search("How do I close my current account?", k=6)]
    assert len(index.search("How do I close my current account?", k=10)) == len(HISTORY) - 1


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_save_and_load_round_trip_gives_the_same_answers(tmp_path, factory):
    index = AnswerIndex.build(HISTORY, index=factory, search_params={"efSearch": 32} if "HNSW" in factory else None)
    index.remove(["joint"])
    index.save(tmp_path / "index")

    loaded = AnswerIndex.load(tmp_path / "index")

    assert loaded.index_type == factory
    assert [r.as_dict() for r in loaded.records()] == [r.as_dict() for r in index.records()]
    for query in ["close my account", "joint account with my wife", "card limit in France"]:
        assert [(h.id, round(h.score, 4)) for h in loaded.search(query, k=4)] == [
            (h.id, round(h.score, 4)) for h in index.search(query, k=4)
        ]
    loaded.add([{"id": "joint", "question": "Can two of us share an account?", "answer": "Yes."}])
    assert loaded.search("can we share one account", k=1)[0].id == "joint"


def test_save_replaces_an_existing_folder_completely(tmp_path):
    AnswerIndex.build(HISTORY).save(tmp_path / "index")
    AnswerIndex.build(HISTORY[:2]).save(tmp_path / "index")

    assert len(AnswerIndex.load(tmp_path / "index")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["encoder"] == "bundled" and manifest["count"] == 2


def test_loading_a_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(IndexNotFoundError, match="python -m training.build_index"):
        AnswerIndex.load(tmp_path / "nowhere")


def test_an_index_type_that_needs_more_history_says_so():
    with pytest.raises(IndexConfigError, match="cannot be trained on 6 questions.*use 'Flat'"):
        AnswerIndex.build(HISTORY, index="IVF64,Flat")
    with pytest.raises(IndexConfigError, match="not a FAISS index factory string"):
        AnswerIndex.build(HISTORY, index="Flatter")


def test_records_need_a_question_and_an_answer_and_unique_ids():
    with pytest.raises(ValueError, match="no answer"):
        AnswerIndex.build([{"question": "Where is my branch?", "answer": "  "}])
    with pytest.raises(ValueError, match="share the id 'close'"):
        AnswerIndex.build(HISTORY + [{**HISTORY[1], "id": "close"}])


def test_personal_data_is_redacted_before_it_is_stored():
    index = AnswerIndex.build([{
        "id": "pii",
        "question": "My card 4111 1111 1111 1111 was charged twice, email me at jo@example.com",
        "answer": "We've refunded it to your account 12345678.",
    }])

    record = index.get("pii")
    assert record.question == "My card [CARD] was charged twice, email me at [EMAIL]"
    assert record.answer == "We've refunded it to your account [ACCOUNT]."


def test_a_record_without_an_id_gets_a_stable_one():
    first = AnswerIndex.build([{"question": "Do you offer safe deposit boxes?", "answer": "No."}])
    second = AnswerIndex.build([{"question": "Do you offer  safe deposit boxes?", "answer": "No, sorry."}])

    assert first.records()[0].id == second.records()[0].id


def test_grouping_merges_questions_that_share_an_answer(index):
    hits = index.search("open an account", k=6)
    same = [h for h in hits if h.id in ("joint", "business")]
    shared = [type(h)(**{**h.__dict__, "answer": "Open it in the app."}) for h in same]

    grouped = group_by_answer(shared + [h for h in hits if h.id not in ("joint", "business")])

    assert [h.answer for h in grouped].count("Open it in the app.") == 1
    merged = next(h for h in grouped if h.answer == "Open it in the app.")
    # Two agreeing questions score above the closer one alone, by at most log(2)/sharpness.
    assert max(h.score for h in same) < merged.score <= max(h.score for h in same) + 0.0232
