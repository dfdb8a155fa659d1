"""The sentiment model (nlu/sentiment.py), its storage and the desk's frustration decision.

Fitted on a handful of messages with a stand-in encoder: no ../shared data, no model download.
"""
import hashlib
from types import SimpleNamespace

import numpy as np
import sqlalchemy as sa
import pytest

from nlu.frustration import FrustrationDetector
from core import db
from core.settings import Settings
from nlu import sentiment as sm

NEGATIVE = [
    "this is ridiculous, my flight is late again and nobody helps",
    "worst service ever, I am furious",
    "you lost my luggage and nobody answers, useless",
    "still waiting on hold for two hours, unacceptable",
    "terrible, the flight was cancelled and no one cares",
    "I am sick of this, nothing ever works",
]
NEUTRAL = [
    "how do I change my PIN",
    "where is my new card",
    "can I get a refund for a card payment",
    "what is the exchange rate for euros",
    "how long does a transfer take",
    "my card has not arrived yet, when will it come",
]
POSITIVE = [
    "thank you so much, great service",
    "love it, the flight was wonderful",
    "thanks, that was really helpful",
    "amazing, the agent was lovely",
]


class WordHashEncoder:
    """A deterministic stand-in for the sentence encoder: hashed bag of words, normalised."""

    dim = 64

    def encode(self, texts, batch_size=64, normalize_embeddings=True, **_):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.strip(",.?!").encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


@pytest.fixture(scope="module")
def encoder():
    return WordHashEncoder()


@pytest.fixture(scope="module")
def model(encoder):
    texts = NEGATIVE + NEUTRAL + POSITIVE
    labels = ["negative"] * len(NEGATIVE) + ["neutral"] * len(NEUTRAL) + ["positive"] * len(POSITIVE)
    reasons = ["Late Flight", "Customer Service Issue", "Lost Luggage", "Customer Service Issue",
               "Late Flight", "Customer Service Issue"] + [""] * (len(NEUTRAL) + len(POSITIVE))
    return sm.SentimentModel.fit(texts, labels, encoder.encode(texts), reasons=reasons, c=10.0, min_reason_examples=2)


def test_it_reads_the_three_moods_with_a_confidence(model, encoder):
    texts = ["worst service, nobody helps, ridiculous", "how do I change my PIN", "thank you, great service"]
    verdicts = model.predict(texts, encoder.encode(texts))
    assert [v.label for v in verdicts] == ["negative", "neutral", "positive"]
    for v in verdicts:
        assert 1 / 3 < v.confidence <= 1.0 and 0.0 <= v.negative <= 1.0
    assert verdicts[0].reason in model.reasons and verdicts[1].reason is None


def test_the_artifact_round_trips_without_pickles(model, encoder, tmp_path):
    model.save(tmp_path / "sentiment")
    loaded = sm.load_if_present(tmp_path / "sentiment")
    texts = ["you lost my luggage", "where is my card"]
    vectors = encoder.encode(texts)
    assert np.allclose(model.probabilities(texts, vectors), loaded.probabilities(texts, vectors), atol=1e-5)
    assert loaded.reasons == model.reasons


def test_serving_scores_words_and_characters_as_the_vectorisers_do(model, encoder):
    """The per-message dictionary look-ups equal scikit-learn's transform of both sparse blocks."""
    import scipy.sparse as sparse

    assert model.char_vectorizer is not None
    texts = ["sooo angry, you LOST my luggage!!", "where is my card", "无法登录我的账户"]
    vectors = encoder.encode(texts)
    features = sm.SentimentModel._stack(
        sparse.hstack([model.vectorizer.transform(texts), model.char_vectorizer.transform(texts)]).tocsr(),
        vectors, model.embed_weight)
    expected = features @ model.coef.T + model.intercept
    assert np.allclose(model._logits(texts, vectors, model.coef, model.intercept), expected, atol=1e-4)


def test_no_artifact_means_no_model(tmp_path):
    assert sm.load_if_present(tmp_path / "missing") is None


def test_unknown_labels_are_refused(encoder):
    with pytest.raises(ValueError, match="labels must be"):
        sm.SentimentModel.fit(["a b", "c d"], ["angry", "neutral"], encoder.encode(["a b", "c d"]))


def _assessment(frustrated, signals):
    worded = frustrated and sum(v for k, v in signals.items() if k != "similar") >= 1.0
    return SimpleNamespace(frustrated=frustrated, signals=signals, worded=worded)


def test_the_decision_needs_the_detector_and_a_negative_reading():
    calm, upset = sm.Sentiment("neutral", 0.8, 0.1), sm.Sentiment("negative", 0.9, 0.9, "Late Flight")
    assert not sm.frustrated(_assessment(True, {"mild": 1.0}), calm)
    assert sm.frustrated(_assessment(True, {"lexicon": 1.0}), upset)
    assert not sm.frustrated(_assessment(True, {"lexicon": 1.0}), sm.Sentiment("negative", 0.7, 0.7))  # under 0.8
    assert not sm.frustrated(_assessment(False, {}), upset)
    assert sm.frustrated(_assessment(True, {"repeat": 1.0}), calm)  # asking again is behaviour, not wording
    assert sm.frustrated(_assessment(True, {"mild": 1.0}), None)  # no model: the detector alone, as before
    # the nearest-examples guess alone is left to the sentiment model
    assert not sm.frustrated(_assessment(True, {"similar": 1.0}), upset)
    assert sm.frustrated(_assessment(True, {"similar": 1.0}), None)


def test_a_complaint_about_the_service_hands_off_without_the_word_list():
    rule = sm.HandoffRule()
    complaint = sm.Sentiment("negative", 0.99, 0.99, "Customer Service Issue")
    assert sm.frustrated(_assessment(False, {}), complaint, rule)
    assert not sm.frustrated(_assessment(False, {}), sm.Sentiment("negative", 0.99, 0.99, "Late Flight"), rule)
    assert not sm.frustrated(_assessment(False, {}), sm.Sentiment("negative", 0.95, 0.95, "Customer Service Issue"), rule)
    settings = Settings(frustration_negative_threshold=0.6, frustration_complaint_threshold=0.9,
                        frustration_complaint_reasons="Lost Luggage, Customer Service Issue",
                        frustration_close_reading_from=0.7)
    assert sm.HandoffRule.from_settings(settings) == sm.HandoffRule(0.6, 0.9, ("Lost Luggage", "Customer Service Issue"), 0.7)


def test_the_word_list_counts_facts_and_repeated_words_as_such():
    detector = FrustrationDetector()
    assert not detector.assess("I entered the wrong PIN too many times, how do I unblock it?").frustrated
    assert detector.assess("I have asked you five times already").frustrated
    still = detector.assess("it is still pending, I am still waiting")  # one hesitation, said twice
    assert still.signals.get("mild") == 0.5 and not still.frustrated
    assert detector.assess("still nothing, again").worded


def test_stored_once_per_message_and_the_most_upset_waiting_first(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    sm.record(engine, "web:a", "m1", sm.Sentiment("neutral", 0.7, 0.2), ts=1.0)
    sm.record(engine, "web:a", "m1", sm.Sentiment("negative", 0.9, 0.9), ts=2.0)  # same message: kept once
    sm.record(engine, "web:b", "m1", sm.Sentiment("negative", 0.8, 0.8, "Customer Service Issue"), ts=3.0)
    moods = sm.latest(engine, ["web:a", "web:b", "web:c"])
    assert moods["web:a"]["negative"] == 0.2 and moods["web:b"]["reason"] == "Customer Service Issue"
    assert "web:c" not in moods
    entries = [
        {"conversation_id": "web:a", "status": "waiting", "sentiment": moods["web:a"]},
        {"conversation_id": "web:c", "status": "waiting", "sentiment": None},
        {"conversation_id": "web:b", "status": "waiting", "sentiment": moods["web:b"]},
        {"conversation_id": "web:d", "status": "active", "sentiment": {"negative": 0.99}},
    ]
    assert [e["conversation_id"] for e in sm.most_upset_first(entries)] == ["web:b", "web:a", "web:c", "web:d"]


def _reader(detector, model, rule=None):
    from nlu.frustration_reader import FrustrationReader

    return FrustrationReader(FrustrationReader.get_default_config(), detector, model, rule or sm.HandoffRule())


def test_a_batch_is_one_insert_that_keeps_the_first_row_of_each_message(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    sm.record(engine, "web:a", "m1", sm.Sentiment("neutral", 0.7, 0.2), ts=1.0)
    sm.record_many(engine, [
        ("web:a", "m1", sm.Sentiment("negative", 0.9, 0.9), 2.0),  # stored before this batch: kept as it was
        ("web:a", "m2", sm.Sentiment("negative", 0.9, 0.9), 3.0),
        ("web:a", "m2", sm.Sentiment("positive", 0.9, 0.0), 4.0),  # twice in one batch: the first wins
        ("web:b", None, sm.Sentiment("positive", 0.8, 0.1), 5.0),  # no message id: always stored
        ("web:b", None, sm.Sentiment("positive", 0.8, 0.1), 6.0),
    ])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.message_sentiment.c.conversation_id, db.message_sentiment.c.message_id,
                                      db.message_sentiment.c.label).order_by(db.message_sentiment.c.ts)).all()
    assert [tuple(r) for r in rows] == [("web:a", "m1", "neutral"), ("web:a", "m2", "negative"),
                                        ("web:b", None, "positive"), ("web:b", None, "positive")]


def test_rows_written_behind_arrive_in_batches_and_a_failed_batch_is_only_logged(caplog):
    from core.serving import WriteBehind

    batches, fail = [], []

    def write(rows):
        if fail:
            raise RuntimeError("database down")
        batches.append(list(rows))

    behind = WriteBehind("test", write, max_rows=3, max_delay_s=5.0)
    for i in range(7):
        behind.put(i)
    assert behind.flush(timeout=5)  # does not wait out max_delay_s
    assert sum(batches, []) == list(range(7)) and max(map(len, batches)) <= 3
    fail.append(True)
    behind.put(7)
    assert behind.flush(timeout=5)
    assert "1 test rows not stored (RuntimeError: database down)" in caplog.text


def test_the_frustration_reader_does_not_flag_an_ordinary_question(model, encoder):
    from rasa.shared.nlu.training_data.message import Message

    # A BANKING77-style question the word list alone flags ("still" + "again" = 1 point).
    question = "my card has still not arrived, when will it come? I ordered it again"
    detector = FrustrationDetector(encoder=encoder)  # the sentiment reads the same (cached) embedding
    assert detector.assess(question).frustrated  # the detector alone would call a person
    reader = _reader(detector, model)
    calm = reader.read(question)
    assert not calm["frustrated"] and calm["sentiment"]["label"] != "negative"

    angry = Message(data={"text": "this is ridiculous, nobody helps, worst service",
                          "intent": {"name": "card_arrival", "confidence": 0.6}})
    reader.process([angry])
    reading = angry.get("frustration")
    assert reading["frustrated"] and reading["sentiment"]["label"] == "negative" and reading["evidence"]
    assert angry.get("intent")["name"] == "frustrated" and reading["intent"] == "card_arrival"


def test_the_reader_reads_closely_only_the_messages_the_detector_flags(model, encoder):
    """The fine-tuned reader (several ms) runs only where its reading decides a handoff."""

    class Reader:  # stands in for the fine-tuned reader: counts what it reads, calls everything negative
        labels = ["negative", "neutral", "positive"]
        read = []

        def predict_proba(self, texts):
            self.read.extend(texts)
            return np.tile([0.9, 0.05, 0.05], (len(texts), 1))

    tuned = Reader()
    model.tuned, model.blend_weight = tuned, 1.0
    try:
        reader = _reader(FrustrationDetector(encoder=encoder), model)
        calm = reader.read("how do I change my PIN")
        assert not calm["frustrated"] and tuned.read == [] and calm["sentiment"]["label"] != "negative"
        # not flagged, but the quick reading is very negative: read closely (it may be a complaint)
        close = _reader(FrustrationDetector(encoder=encoder), model, sm.HandoffRule(close_reading_from=0.0))
        close.read("where is my new card")
        assert tuned.read == [sm.normalise("where is my new card")]
        tuned.read.clear()
        angry = "this is ridiculous, nobody helps, worst service"
        assert reader.read(angry)["frustrated"] and tuned.read == [sm.normalise(angry)]
    finally:
        model.tuned, model.blend_weight = None, 0.0


def test_the_inbox_lists_waiting_conversations_most_upset_first(tmp_path):
    from bot.channels.inbox import AgentInbox
    from bot.handoff.queue import HandoffQueue
    from bot.security import staff
    from tests.test_channels_webhooks import ServedChannels
    from tests.test_inbox import PASSWORD, Client

    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    staff.add_account(engine, "alex", PASSWORD, role="agent", display_name="Alex")
    queue = HandoffQueue(engine)
    for cid, mood in (("web:calm", 0.1), ("web:unscored", None), ("web:upset", 0.95)):
        queue.open(cid, "asked", customer_id=cid, channel="web")
        if mood is not None:
            sm.record(engine, cid, "m1", sm.Sentiment("negative" if mood > 0.5 else "neutral", 0.9, mood))
    server = ServedChannels([AgentInbox(engine)], engine).start()
    try:
        client = Client(server)
        assert client.login("alex")[0] == 200
        status, _, listed = client.call("GET", "/api/conversations")
    finally:
        server.stop()
    assert status == 200
    rows = listed["conversations"]
    assert [r["conversation_id"] for r in rows] == ["web:upset", "web:calm", "web:unscored"]
    assert [r["position"] for r in rows] == [3, 1, 2]  # the customer's own place in the queue is unchanged
    assert rows[0]["sentiment"]["label"] == "negative" and rows[2]["sentiment"] is None


def _write_splits(folder, copies: int = 1) -> None:
    """train.csv and test.csv in `folder`: the module's labelled sentences, `copies` times each."""
    import csv

    rows = [(t, "negative", "Customer Service Issue") for t in NEGATIVE] + [(t, "neutral", "") for t in NEUTRAL] \
        + [(t, "positive", "") for t in POSITIVE]
    for name in ("train.csv", "test.csv"):
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "sentiment", "negative_reason"])
            writer.writerows(rows * copies)


def test_training_writes_a_small_artifact_with_metrics(encoder, tmp_path):
    import json

    from training.train_sentiment import train

    _write_splits(tmp_path)
    metrics = train(tmp_path / "train.csv", tmp_path / "out", tmp_path / "test.csv", quiet=True, encoder=encoder,
                    fine_tune=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["meta.json", "metrics.json", "weights.npz"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["test"]["macro_f1"] == metrics["test"]["macro_f1"] > 0.5
    assert sm.load_if_present(tmp_path / "out") is not None and not sm.is_current(tmp_path / "out")


@pytest.fixture(scope="module")
def fine_tuned(encoder, tmp_path_factory):
    """(folder, metrics) of a model trained with its LoRA reader (two epochs on the module's sentences)."""
    from training.train_sentiment import reader_config, train

    folder = tmp_path_factory.mktemp("fine_tuned")
    _write_splits(folder, copies=2)
    metrics = train(folder / "train.csv", folder / "out", folder / "test.csv", quiet=True, encoder=encoder,
                    config=reader_config(epochs=2, seed=1))
    return folder, metrics


def test_training_fine_tunes_the_reader_and_chooses_the_blend_on_held_out_rows(encoder, fine_tuned):
    """The default: a LoRA reader on the bundled encoder (two epochs here), blended with the heads."""
    import json

    tmp_path, metrics = fine_tuned
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [sm.ENCODER_DIR, "meta.json", "metrics.json", "weights.npz"]
    blend = metrics["blend"]
    assert 0.0 <= blend["weight"] <= 1.0
    assert set(blend["heldout_macro_f1"]) == {"heads", "tuned", "blend"}
    assert blend["heldout_macro_f1"]["blend"] >= max(blend["heldout_macro_f1"]["heads"], blend["heldout_macro_f1"]["tuned"]) - 1e-9
    assert sm.is_current(tmp_path / "out")
    loaded = sm.load_if_present(tmp_path / "out")
    assert loaded.tuned is not None and loaded.blend_weight == blend["weight"]
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["blend"]["weight"] == blend["weight"]
    text = "worst service ever, I am furious"
    verdict = loaded.predict_one(text, encoder.encode([text])[0])
    assert verdict.label in sm.LABELS and abs(sum(loaded.probabilities([text], encoder.encode([text]))[0]) - 1) < 1e-5


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_close_reading_starts_from_the_encoders_shared_layers(fine_tuned, precision):
    """The reader's frozen layers are the bundled encoder's: the desk's embedding pass hands their
    hidden states over, and only the tuned layers run. In float32 the answer is the whole reader's."""
    import torch

    from core.encoder import clear_embedding_cache, embed_few, load_encoder, prefix_of

    folder = fine_tuned[0] / "out"
    served, whole = sm.SentimentModel.load(folder, precision=precision), sm.SentimentModel.load(folder, precision=precision)
    encoder = load_encoder(None)
    assert served.share_layers_with(encoder)
    clear_embedding_cache()
    texts = ["worst service ever, I am furious", "Thanks, that was really helpful"]
    assert prefix_of(encoder, texts[0]) is None  # not encoded yet: the whole reader would run
    for text in texts:
        embed_few(encoder, [text], precision="fp32")
    hidden = prefix_of(encoder, texts[0])
    assert hidden.shape[:2] == (1, len(encoder.tokenizer(texts[0])["input_ids"]))
    calls = []
    original = served.tuned.predict_proba
    served.tuned.predict_proba = lambda *a, **k: calls.append(a) or original(*a, **k)
    shared = served.tuned_probabilities(texts)
    assert not calls  # the reader's lower layers did not run again
    reference = whole.tuned_probabilities(texts)
    assert np.allclose(shared.sum(axis=1), 1.0, atol=1e-5)
    # float32: the same pass, split in two; int8: the shared layers are the exact (unquantised) ones
    assert np.abs(shared - reference).max() < (1e-4 if precision == "fp32" else 0.15)
    assert shared.argmax(axis=1).tolist() == reference.argmax(axis=1).tolist()
    # The reader reads a message without its @handles and links: from the shared layers those
    # tokens' states are left out of the tuned layers (an approximation).
    handle = "@airline worst service ever, see https://example.com/x"
    embed_few(encoder, [handle], precision="fp32")
    keep = served._kept_tokens(handle, prefix_of(encoder, handle).shape[1])
    tokens = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(handle)["input_ids"])
    assert [tokens[i] for i in keep] == ["[CLS]", "worst", "service", "ever", ",", "see", "[SEP]"]
    approximate = served.tuned_probabilities([handle])[0]
    assert not calls and abs(approximate.sum() - 1) < 1e-5
    exact = whole.tuned_probabilities([handle])[0]
    assert approximate.argmax() == exact.argmax() and np.abs(approximate - exact).max() < 0.2
    assert served._kept_tokens("@airline", 4) is None  # nothing but the handle: the whole reader reads it
    with torch.no_grad():  # another encoder's layers are refused, weight by weight
        other = sm.SentimentModel.load(folder, precision=precision)
        tampered = load_encoder.__wrapped__(None)
        next(iter(tampered[0].auto_model.encoder.layer[0].parameters())).add_(0.01)
        assert not other.share_layers_with(tampered)


def test_the_blend_mixes_log_probabilities():
    heads = np.array([[0.6, 0.3, 0.1]])
    tuned = np.array([[0.2, 0.7, 0.1]])
    assert sm.SentimentModel.blend(heads, None, 0.5).argmax() == 0
    assert sm.SentimentModel.blend(heads, tuned, 1.0).argmax() == 1
    mixed = sm.SentimentModel.blend(heads, tuned, 0.5)[0]
    expected = np.sqrt(heads * tuned)[0] / np.sqrt(heads * tuned)[0].sum()
    assert np.allclose(mixed, expected, atol=1e-6)
    assert sm.macro_f1(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1])) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_the_report_trends_stored_sentiment_by_day(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    day = 86400.0
    sm.record(engine, "web:a", "m1", sm.Sentiment("negative", 0.9, 0.9, "Late Flight"), ts=10 * day)
    sm.record(engine, "web:a", "m2", sm.Sentiment("positive", 0.8, 0.05), ts=11 * day)
    figures = sm.trend(engine, 0, 20 * day)
    assert figures["messages"] == 2 and figures["negative_share"] == 0.5
    assert figures["counts"] == {"negative": 1, "neutral": 0, "positive": 1}
    assert list(figures["daily"]) == ["1970-01-11", "1970-01-12"] and figures["negative_reasons"] == {"Late Flight": 1}


def test_the_customer_page_reads_the_polarity_per_day(model, encoder, tmp_path):
    from bot.insight.profile import sentiment as page_sentiment

    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    text = "worst service ever, I am furious"
    verdict = model.predict_one(text, encoder.encode([text])[0])
    assert -1.0 <= verdict.score < 0
    sm.record(engine, "web:a", "m1", verdict, ts=86400.0 * 10)
    with engine.connect() as conn:
        assert page_sentiment(conn, ["web:a"]) == [["1970-01-11", round(verdict.score, 3), 1]]


def test_erasure_removes_the_conversations_sentiment(tmp_path):
    from bot.privacy.erase import erase_project_rows

    engine = db.connect(f"sqlite:///{tmp_path / 'assistant.db'}")
    sm.record(engine, "web:gone", "m1", sm.Sentiment("negative", 0.9, 0.9))
    sm.record(engine, "web:kept", "m1", sm.Sentiment("neutral", 0.9, 0.1))
    assert erase_project_rows(engine, "c_gone", ["web:gone"])["message_sentiment"] == 1
    assert set(sm.latest(engine, ["web:gone", "web:kept"])) == {"web:kept"}


def test_the_launcher_trains_the_model_only_when_missing_and_the_data_is_there(tmp_path, monkeypatch):
    from bot import serve

    steps = []
    monkeypatch.setattr(serve, "run_step", lambda args, env, what: steps.append(args))
    monkeypatch.setattr(serve, "newest_model", lambda folder: tmp_path / "model.tar.gz")
    env = {"ASSISTANT_INDEX_DIR": str(tmp_path), "ASSISTANT_RECOMMENDER_DIR": str(tmp_path)}  # both "built"
    monkeypatch.setattr(sm, "DEFAULT_DIR", tmp_path / "sentiment")
    monkeypatch.setattr(serve, "SENTIMENT_TRAINING_DATA", tmp_path / "train.csv")
    serve.prepare(env, tmp_path / "config.yml", tmp_path)
    assert not any("training.train_sentiment" in a for a in steps)  # no data: served without it
    (tmp_path / "train.csv").write_text("text,sentiment\n")
    serve.prepare(env, tmp_path / "config.yml", tmp_path)
    assert any("training.train_sentiment" in a for a in steps)
    steps.clear()
    (tmp_path / "sentiment").mkdir()
    for name in ("meta.json", "weights.npz"):  # a first-version artifact (no fine-tuned reader): trained again
        (tmp_path / "sentiment" / name).write_text("{}")
    serve.prepare(env, tmp_path / "config.yml", tmp_path)
    assert any("training.train_sentiment" in a for a in steps)
    steps.clear()
    (tmp_path / "sentiment" / sm.ENCODER_DIR).mkdir()
    serve.prepare(env, tmp_path / "config.yml", tmp_path)
    assert not any("training.train_sentiment" in a for a in steps)


def test_a_broken_training_file_is_refused_with_its_line(tmp_path):
    from training.train_sentiment import read_rows

    (tmp_path / "bad.csv").write_text("text,sentiment\nhello,neutral\nbye,angry\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad\.csv:3: sentiment must be one of negative, neutral, positive"):
        read_rows(tmp_path / "bad.csv")
    (tmp_path / "columns.csv").write_text("text,mood\nhello,neutral\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"columns\.csv:1: .*sentiment"):
        read_rows(tmp_path / "columns.csv")
