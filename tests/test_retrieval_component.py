"""`retrieval.AnswerRetriever` as Rasa runs it, and ratings changing its answers.

The component is created the way Rasa's graph creates it, with a real index
folder and a real (temporary) SQLite database for the ratings.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message

from retrieval import AnswerIndex, AnswerRetriever
from retrieval.component import AnswerIndexUnavailable
from retrieval.feedback import AnswerFeedback, history_answer_id, record_rating

HISTORY = [
    {"id": "close-app", "question": "How do I close my account?", "answer": "Close it in the app under Account settings.",
     "tags": ["closing"]},
    {"id": "close-branch", "question": "Can I close my account at a branch?", "answer": "Yes, any branch can close it.",
     "tags": ["closing"]},
    {"id": "joint", "question": "Can I open a joint account with my partner?", "answer": "Yes, two people can hold one."},
    {"id": "dispute", "question": "How do I dispute a charge on my card?", "answer": "Report a problem on the payment."},
    {"id": "abroad", "question": "What is my card limit abroad?", "answer": "£5,000 a day in payments."},
]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("retrieval") / "index"
    AnswerIndex.build(HISTORY).save(folder)
    return folder


def make_retriever(tmp_path: Path, **config) -> AnswerRetriever:
    config = {"index_dir": None, "database_url": f"sqlite:///{tmp_path / 'assistant.db'}", **config}
    return AnswerRetriever.create(
        {**AnswerRetriever.get_default_config(), **config},
        LocalModelStorage(tmp_path / "storage"),
        Resource("retriever"),
        ExecutionContext(GraphSchema({}), "test"),
    )


def parse(retriever: AnswerRetriever, text: str) -> dict:
    message = Message(data={"text": text})
    retriever.process([message])
    return message.as_dict(only_output_properties=True)


def test_each_message_gets_the_best_past_answers_in_its_parse_result(index_dir, tmp_path):
    retriever = make_retriever(tmp_path, index_dir=str(index_dir), k=3)

    parsed = parse(retriever, "I'd like to shut my account, how?")

    retrieval = parsed["retrieval"]
    assert [h["id"] for h in retrieval["hits"]][:2] == ["close-app", "close-branch"]
    assert len(retrieval["hits"]) == 3
    assert retrieval["best_score"] == retrieval["hits"][0]["score"] > 0.6
    assert set(retrieval["hits"][0]) >= {"id", "question", "answer", "score", "source", "tags"}
    assert retrieval["hits"][0]["tags"] == ["closing"]


def test_messages_without_a_question_are_left_alone(index_dir, tmp_path):
    retriever = make_retriever(tmp_path, index_dir=str(index_dir))
    messages = [Message(data={"text": "  "}), Message(data={"text": '/rate_answer{"answer_id":"history:joint","rating":"up"}'})]

    retriever.process(messages)

    assert [m.get("retrieval") for m in messages] == [None, None]


def test_the_index_folder_defaults_to_the_index_dir_setting(index_dir, tmp_path, monkeypatch):
    from core.settings import get_settings, load_settings

    monkeypatch.setattr("core.settings.get_settings", lambda: load_settings(environ={"ASSISTANT_INDEX_DIR": str(index_dir)}))
    try:
        retriever = make_retriever(tmp_path)
    finally:
        get_settings.cache_clear()
    assert len(retriever.index) == len(HISTORY)


def test_a_missing_index_stops_loading_with_the_command_that_builds_it(tmp_path):
    with pytest.raises(AnswerIndexUnavailable, match="python -m training.build_index --out"):
        make_retriever(tmp_path, index_dir=str(tmp_path / "missing"))


def test_thumbs_down_ratings_stop_an_answer_for_similar_questions_at_once(index_dir, tmp_path):
    retriever = make_retriever(tmp_path, index_dir=str(index_dir), downvote_limit=2)
    db_url = retriever.feedback.database_url
    assert parse(retriever, "how can I close my account")["retrieval"]["hits"][0]["id"] == "close-app"

    record_rating(history_answer_id("close-app"), "down", "how do I close my account please", database_url=db_url)
    after_one = parse(retriever, "how can I close my account")["retrieval"]["hits"]
    record_rating(history_answer_id("close-app"), "down", "How do I close my account?", database_url=db_url)
    after_two = parse(retriever, "how can I close my account")["retrieval"]["hits"]

    # One down lowers the score; the second (the limit) removes the answer for this cluster.
    assert after_one[0]["id"] == "close-app" and after_one[0]["votes"] == {"up": 0, "down": 1}
    assert after_one[0]["score"] < after_one[0]["base_score"]
    assert after_two[0]["id"] == "close-branch"
    assert "close-app" not in [h["id"] for h in after_two]
    # Beside them, the hits before ratings (an answers experiment's rerank: false arm): unchanged.
    raw = parse(retriever, "how can I close my account")["retrieval"]["raw_hits"]
    assert raw[0]["id"] == "close-app" and "votes" not in raw[0]
    # Questions outside the cluster still get the answer.
    other = parse(retriever, "what do I need to do to end my relationship with the bank and close everything")
    assert "close-app" in [h["id"] for h in other["retrieval"]["hits"]]


def test_thumbs_up_ratings_lift_an_answer_for_similar_questions(index_dir, tmp_path):
    retriever = make_retriever(tmp_path, index_dir=str(index_dir))
    query = "can I close my account in person"
    before = parse(retriever, query)["retrieval"]["hits"]
    second = before[1]["id"]

    for _ in range(3):
        record_rating(history_answer_id(second), "up", query, database_url=retriever.feedback.database_url)
    after = parse(retriever, query)["retrieval"]["hits"]

    assert after[0]["id"] == second and after[0]["votes"] == {"up": 3, "down": 0}


def test_ratings_are_read_incrementally(index_dir, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'ratings.db'}"
    index = AnswerIndex.load(index_dir)
    feedback = AnswerFeedback(index.encode, database_url=db_url)
    record_rating(history_answer_id("joint"), "up", "joint account for two", database_url=db_url)
    record_rating("intent:card_arrival", "down", "where is my card", database_url=db_url)

    assert feedback.refresh() == 1  # intent answers are not the index's business
    assert feedback.refresh() == 0
    record_rating(history_answer_id("joint"), "down", "joint account for two", database_url=db_url)
    assert feedback.refresh() == 1
    assert feedback.votes(index.encode(["joint account for two"])[0], "joint") == {"up": 1, "down": 1, "net": pytest.approx(0.0, abs=1e-4)}


def test_a_rating_that_becomes_visible_out_of_id_order_is_read_at_the_next_reread(index_dir, tmp_path):
    """Each refresh reads what is newer than the newest id seen; the window behind it every reread_every_s."""
    import sqlalchemy as sa

    from core.db import answer_ratings, connect

    db_url = f"sqlite:///{tmp_path / 'ratings.db'}"
    index = AnswerIndex.load(index_dir)
    now = [0.0]
    feedback = AnswerFeedback(index.encode, database_url=db_url, reread_every_s=5.0, clock=lambda: now[0])
    record_rating(history_answer_id("joint"), "up", "joint account for two", database_url=db_url)
    assert feedback.refresh() == 1
    newest = feedback._last_id
    with connect(db_url).begin() as conn:  # a later row that took its id late (another transaction)
        row = conn.execute(sa.select(answer_ratings).where(answer_ratings.c.id == newest)).mappings().one()
        conn.execute(answer_ratings.insert().values({**row, "id": newest + 5}))
        conn.execute(answer_ratings.insert().values({**row, "id": newest + 2}))
    assert feedback.refresh() == 2
    with connect(db_url).begin() as conn:
        conn.execute(answer_ratings.insert().values({**row, "id": newest + 1}))
    now[0] = 1.0
    assert feedback.refresh() == 0  # behind the newest id seen: not read on every message
    now[0] = 6.0
    assert feedback.refresh() == 1  # the window behind it, every reread_every_s


def test_an_unreachable_ratings_database_does_not_stop_answers(index_dir, tmp_path):
    retriever = make_retriever(tmp_path, index_dir=str(index_dir), database_url="sqlite:////proc/no/such/dir/x.db")

    assert parse(retriever, "close my account")["retrieval"]["hits"][0]["id"] == "close-app"


def test_the_default_recipe_runs_it_after_the_intent_classifier_and_before_the_fallback():
    from rasa.engine.recipes.default_recipe import DefaultV1Recipe

    config = {
        "recipe": "default.v1",
        "language": "en",
        "pipeline": [
            {"name": "WhitespaceTokenizer"},
            {"name": "KeywordIntentClassifier"},
            {"name": "retrieval.AnswerRetriever", "k": 3},
            {"name": "FallbackClassifier", "threshold": 0.4},
        ],
        "policies": [],
    }
    graph = DefaultV1Recipe().graph_config_for_recipe(config, {}).predict_schema.nodes

    retriever = graph["run_retrieval.AnswerRetriever2"]
    assert retriever.uses is AnswerRetriever and retriever.config["k"] == 3
    assert retriever.needs["messages"] == "run_KeywordIntentClassifier1"
    assert graph["run_FallbackClassifier3"].needs["messages"] == "run_retrieval.AnswerRetriever2"


def test_a_serving_retriever_drops_entries_removed_from_the_saved_index(tmp_path, monkeypatch):
    folder = tmp_path / "index"
    AnswerIndex.build(HISTORY).save(folder)
    retriever = make_retriever(tmp_path, index_dir=str(folder), k=3)
    assert "dispute" in [h["id"] for h in parse(retriever, "how can I dispute a card charge")["retrieval"]["hits"]]

    saved = AnswerIndex.load(folder)  # what an erasure does (bot/privacy/erase.py): remove, save
    saved.remove(["dispute"])
    saved.save(folder)
    monkeypatch.setattr(retriever, "_next_check", 0.0)  # the periodic check is due

    assert "dispute" not in [h["id"] for h in parse(retriever, "how can I dispute a card charge")["retrieval"]["hits"]]
    assert len(retriever.index) == len(HISTORY) - 1
