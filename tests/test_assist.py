"""Agent assist: drafts from the answer index and the domain, the log of what agents sent, the API's bad input."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from rasa.shared.core.events import UserUttered

from bot.channels import assist
from core import db, review
from tests.test_inbox import accounts, engine, served, signed_in  # noqa: F401  (fixtures)

RESPONSES = {
    "utter_card_arrival": [{"text": "Cards arrive within 3 to 5 working days."}],
    "utter_activate_card": [{"text": "Activate it in the app under Cards.", "channel": "slack"},
                            {"text": "Activate it in the app."}],
    "utter_greet": [{"text": "Hello!"}],
}


def parse(intents, hits):
    return {"intent": intents[0] if intents else None, "intent_ranking": intents,
            "retrieval": {"hits": hits, "best_score": hits[0]["score"] if hits else 0.0}}


HITS = [
    {"id": "h1", "question": "when will my card come", "answer": "Usually 3 to 5 working days by Royal Mail.", "score": 0.81},
    {"id": "h2", "question": "card not here yet", "answer": "Track it in the app under Cards.", "score": 0.62},
    {"id": "h3", "question": "still no card", "answer": "Cards arrive within 3 to 5 working days.", "score": 0.40},
]
INTENTS = [{"name": "card_arrival", "confidence": 0.9}, {"name": "activate_card", "confidence": 0.05},
           {"name": "no_response_for_me", "confidence": 0.03}]


def test_the_best_three_drafts_come_from_the_index_and_the_domain_each_with_its_question_and_score():
    drafts = assist.drafts_for(parse(INTENTS, HITS), "where is my new card?", RESPONSES)
    assert [(d["source"], d["id"], d["score"]) for d in drafts] == [
        ("domain", "utter_card_arrival", 0.9), ("answer_index", "h1", 0.81), ("answer_index", "h2", 0.62)]
    assert drafts[0]["question"] == "where is my new card?"  # a domain response answers the customer's message
    assert drafts[1]["question"] == "when will my card come" and drafts[1]["text"].startswith("Usually 3 to 5")


def test_identical_texts_count_once_and_a_channel_specific_variant_is_skipped():
    drafts = assist.drafts_for(parse(INTENTS, HITS), "where is my card", RESPONSES, top=10)
    texts = [d["text"] for d in drafts]
    assert texts.count("Cards arrive within 3 to 5 working days.") == 1  # h3 repeats utter_card_arrival
    assert "Activate it in the app." in texts and "Activate it in the app under Cards." not in texts
    assert len(drafts) == 4


def test_drafts_are_for_the_latest_typed_message_that_has_any_and_carry_its_sentiment():
    events = [
        UserUttered("where is my card", parse_data={**parse(INTENTS, HITS), "sentiment": {"label": "negative", "confidence": 0.7}}),
        UserUttered("/rate_answer", parse_data=parse(INTENTS, HITS)),  # a button payload: not a question
        UserUttered("hmm", parse_data=parse([{"name": "unknown", "confidence": 0.4}], [])),  # nothing to draft from
    ]
    offered = assist.build_drafts(events, RESPONSES)
    assert offered["message"] == "where is my card" and len(offered["drafts"]) == 3
    assert offered["sentiment"] == {"label": "negative", "confidence": 0.7}
    assert assist.build_drafts([], RESPONSES) == {"message": None, "sentiment": None, "drafts": []}
    in_metadata = UserUttered("where is my card", parse_data=parse(INTENTS, HITS), metadata={"sentiment": {"label": "neutral"}})
    assert assist.build_drafts([in_metadata], RESPONSES)["sentiment"] == {"label": "neutral"}


def test_the_profile_summary_says_who_the_customer_is_in_one_line():
    assert assist.profile_summary({"id": None, "known": False}) == "No verified customer."
    assert assist.profile_summary({"id": "c_9", "known": False}) == "c_9: no profile in the database."
    summary = assist.profile_summary({"id": "c_1", "known": True, "segment": "young_digital", "age_band": "25-34",
                                      "ratings": {"up": 2, "down": 1}, "synthetic": True,
                                      "recent": [{"what": "card_arrival"}, {"what": "card_arrival"}, {"what": "Savings"}]})
    assert summary == ("c_1; segment young_digital; age 25-34; 2 helpful / 1 not helpful ratings; "
                       "recently: card_arrival, Savings; synthetic demo customer.")


def test_similarity_ignores_case_and_spacing():
    assert assist.similarity("Hello  there", "hello there") == 1.0
    assert assist.similarity("", "x") == 0.0
    assert 0.0 < assist.similarity("Cards arrive in 3 days", "Cards arrive in 5 days") < 1.0


def rows_of(engine, conversation_id):  # noqa: F811
    return assist.logged(engine, conversation_id)


def test_an_edited_draft_is_logged_beside_the_draft_redacted_and_not_sent_for_review(engine):  # noqa: F811
    offered = assist.build_drafts([UserUttered("where is my card", parse_data=parse(INTENTS, HITS))], RESPONSES)
    sent = "Hi Sarah, usually 3 to 5 working days by Royal Mail. - Robin"
    row = assist.log_reply(engine, "web:assist-1", "robin", "Robin", sent, offered,
                           {"source": "answer_index", "id": "h1"}, db_url=str(engine.url))
    [stored] = rows_of(engine, "web:assist-1")
    assert stored["id"] == row["id"]
    assert (stored["agent"], stored["draft_source"], stored["draft_id"]) == ("robin", "answer_index", "h1")
    assert stored["draft_text"] == "Usually 3 to 5 working days by Royal Mail."
    assert stored["sent_text"] == "Hi [NAME], usually 3 to 5 working days by Royal Mail. - Robin"  # the agent's own name stays
    assert 0.7 < stored["similarity"] < 1.0 and stored["best_similarity"] == stored["similarity"]
    assert stored["review_item"] is None and stored["ts"] > 0


def test_a_reply_unlike_every_draft_goes_to_the_review_queue(engine):  # noqa: F811
    offered = assist.build_drafts([UserUttered("where is my card", parse_data=parse(INTENTS, HITS))], RESPONSES)
    row = assist.log_reply(engine, "web:assist-2", "robin", "Robin", "I have reordered it by courier for tomorrow.",
                           offered, None, db_url=str(engine.url))
    [stored] = rows_of(engine, "web:assist-2")
    assert (stored["draft_source"], stored["draft_id"], stored["draft_text"], stored["similarity"]) == (None, None, None, None)
    assert stored["best_similarity"] < assist.REWRITE_SIMILARITY
    item = review.get_item(row["review_item"], db_url=str(engine.url))
    assert (item["reason"], item["text"], item["conversation_id"]) == ("agent_rewrite", "where is my card", "web:assist-2")


def test_a_draft_id_that_was_not_offered_is_kept_without_its_text(engine):  # noqa: F811
    offered = assist.build_drafts([UserUttered("where is my card", parse_data=parse(INTENTS, HITS))], RESPONSES)
    assist.log_reply(engine, "web:assist-3", "robin", "Robin", "Cards arrive within 3 to 5 working days.", offered,
                     {"source": "answer_index", "id": "gone"}, db_url=str(engine.url))
    [stored] = rows_of(engine, "web:assist-3")
    assert (stored["draft_id"], stored["draft_text"], stored["similarity"]) == ("gone", None, None)
    assert stored["best_similarity"] == 1.0 and stored["review_item"] is None


def test_no_drafts_offered_means_nothing_for_review(engine):  # noqa: F811
    row = assist.log_reply(engine, "web:assist-4", "robin", "Robin", "Hi", {"message": None, "drafts": []}, None,
                           db_url=str(engine.url))
    assert row["best_similarity"] is None and row["review_item"] is None


def test_a_failing_database_does_not_fail_the_reply(engine, monkeypatch):  # noqa: F811
    def broken(*_a, **_k):
        raise sa.exc.OperationalError("insert", {}, Exception("disk full"))

    monkeypatch.setattr(assist, "log_reply", broken)
    assert assist.try_log_reply(engine, "web:assist-5", "robin", "Robin", "Hi", {"drafts": []}) is None


def test_erasing_a_customer_removes_their_logged_replies(engine):  # noqa: F811
    from bot.privacy.erase import erase_project_rows

    assist.log_reply(engine, "web:assist-erase", "robin", "Robin", "Hi", {"drafts": []}, None)
    removed = erase_project_rows(engine, "c_erase_assist", ["web:assist-erase"])
    assert removed["assist_replies"] == 1 and rows_of(engine, "web:assist-erase") == []


@pytest.mark.parametrize("draft", ["h1", {"source": "answer_index"}, {"source": 1, "id": "h1"}, ["x"]])
def test_a_malformed_draft_in_a_reply_is_refused_with_400(served, draft):  # noqa: F811
    status, _, body = signed_in(served, "alex").call("POST", "/api/conversations/web%3Aassist-bad/reply",
                                                     {"text": "hello", "draft": draft})
    assert (status, body) == (400, {"error": "'draft' must be {source, id} strings, or left out"})


def test_drafts_need_a_session_and_a_handoff(served):  # noqa: F811
    from tests.test_inbox import Client

    assert Client(served).call("GET", "/api/conversations/web%3Anobody/drafts")[0] == 401
    status, _, body = signed_in(served, "alex").call("GET", "/api/conversations/web%3Anobody/drafts")
    assert (status, body) == (404, {"error": "no handoff for this conversation"})


def test_the_table_holds_no_plain_words_when_a_key_is_set(engine, monkeypatch):  # noqa: F811
    from core import crypto

    monkeypatch.setenv(crypto.KEY_VARIABLE, crypto.new_key())
    offered = assist.build_drafts([UserUttered("where is my card", parse_data=parse(INTENTS, HITS))], RESPONSES)
    assist.log_reply(engine, "web:assist-key", "robin", "Robin", "Usually 3 to 5 working days, promise.", offered,
                     {"source": "answer_index", "id": "h1"}, db_url=str(engine.url))
    with engine.connect() as conn:
        draft, sent = conn.execute(sa.text(
            "SELECT draft_text, sent_text FROM assist_replies WHERE conversation_id = 'web:assist-key'")).one()
    assert crypto.is_encrypted(draft) and crypto.is_encrypted(sent) and "promise" not in sent
    assert rows_of(engine, "web:assist-key")[0]["sent_text"] == "Usually 3 to 5 working days, promise."
    assert crypto.encrypted_columns(db.metadata)["assist_replies"] == ["draft_text", "sent_text"]  # rotated with the rest
