"""The review round trip: enqueue (redacted), review, export into files Rasa and the index read."""
import json

import pytest

from core import review
from training import review as review_cli


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'assistant.db'}"


def test_personal_data_is_redacted_before_it_is_stored(db_url):
    item_id = review.enqueue("c1", "my card 4111 1111 1111 1111 never arrived, mail me at jo@example.com",
                             "fallback", predicted_intent="card_arrival", confidence=0.31, db_url=db_url)
    stored = review.get_item(item_id, db_url)
    assert stored["text"] == "my card [CARD] never arrived, mail me at [EMAIL]"
    assert stored["status"] == "open" and stored["confidence"] == pytest.approx(0.31)


def test_the_same_message_is_queued_once_and_unknown_reasons_are_refused(db_url):
    first = review.enqueue("c1", "where is my card", "low_confidence", db_url=db_url)
    assert review.enqueue("c1", "where is my card", "low_confidence", db_url=db_url) == first
    assert review.enqueue("c1", "   ", "fallback", db_url=db_url) is None
    with pytest.raises(review.ReviewError, match="unknown review reason"):
        review.enqueue("c1", "hi", "bored", db_url=db_url)


def test_the_same_message_is_queued_once_when_texts_are_encrypted(db_url, monkeypatch):
    from core.crypto import new_key

    monkeypatch.setenv("ASSISTANT_ENCRYPTION_KEY", new_key())
    first = review.enqueue("c1", "where is my card", "low_confidence", db_url=db_url)
    assert review.enqueue("c1", "where is my card", "low_confidence", db_url=db_url) == first
    assert review.enqueue("c1", "where is my parcel", "low_confidence", db_url=db_url) != first


def test_reviewed_items_become_rasa_nlu_examples_and_history_pairs(db_url, tmp_path, capsys):
    from rasa.shared.nlu.training_data.loading import load_data

    a = review.enqueue("c1", "my new card still hasn't shown up", "fallback", db_url=db_url)
    b = review.enqueue("c2", "can I pay in at the post office?", "thumbs_down", db_url=db_url)
    c = review.enqueue("c3", "asdfgh", "low_confidence", db_url=db_url)
    d = review.enqueue("c4", "what is the weather", "handoff", db_url=db_url)
    assert review_cli.main(["--db", db_url, "intent", str(a), "card_arrival"]) == 0
    assert review_cli.main(["--db", db_url, "answer", str(b), "Yes, at any Post Office counter.",
                            "--intent", "top_up_methods"]) == 0
    assert review_cli.main(["--db", db_url, "discard", str(c)]) == 0
    # a made-up intent would break the next training: refused at review time
    assert review_cli.main(["--db", db_url, "intent", str(d), "weather"]) == 2
    assert "not in the domain" in capsys.readouterr().err

    nlu, history = tmp_path / "data" / "reviewed_nlu.yml", tmp_path / "history" / "reviewed.jsonl"
    assert review_cli.main(["--db", db_url, "export", "--nlu", str(nlu), "--history", str(history)]) == 0
    data = load_data(str(nlu))
    assert sorted((m.get("text"), m.get("intent")) for m in data.intent_examples) == [
        ("can I pay in at the post office?", "top_up_methods"),
        ("my new card still hasn't shown up", "card_arrival"),
    ]
    pairs = [json.loads(line) for line in history.read_text().splitlines()]
    assert pairs == [{
        "id": f"review-{b}", "question": "can I pay in at the post office?",
        "answer": "Yes, at any Post Office counter.", "tags": ["top_up_methods"],
        "updated_at": pairs[0]["updated_at"], "source": "review#c2",  # provenance: erasing c2 finds it
    }]
    # the retrieval ingester reads the exported pairs as ordinary history
    from retrieval.ingest import read_history
    assert [r.question for r in read_history([history]).records] == ["can I pay in at the post office?"]
    # exporting again rewrites the same files
    before = nlu.read_text(), history.read_text()
    review_cli.main(["--db", db_url, "export", "--nlu", str(nlu), "--history", str(history)])
    assert (nlu.read_text(), history.read_text()) == before
    assert review.list_items(db_url=db_url) == [review.get_item(d, db_url)]


def test_actions_enqueue_without_failing_when_the_database_is_down(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be")
    assert review.try_enqueue("c1", "help", "fallback", db_url=f"sqlite:///{blocked / 'db.sqlite'}") is None
