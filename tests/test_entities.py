"""The joint intent and entity model: tags, decoding, checks, calibration error, and one tiny joint fit."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from core.encoder import resolve_model_path
from nlu.entities import EntityAnnotationError, EntityKind, TagScheme, check_annotations, span_scores
from nlu.model import ENTITY_FILE, IntentModel, IntentModelConfig, IntentModelError, expected_calibration_error

MERCHANTS = ["Tesco", "Amazon", "Uber", "Starbucks", "Netflix", "Lidl", "Boots", "Spotify", "Pret", "Argos"]
AMOUNTS = ["£50", "20 pounds", "$15.99", "£1,200", "30 euros", "£7.50", "£64", "99p"]
ACCOUNTS = ["savings", "current", "joint", "isa"]


def annotate(text: str, *spans):
    """(text, annotations) from (substring, entity[, role]) tuples."""
    out = []
    for span in spans:
        sub, entity = span[0], span[1]
        start = text.index(sub)
        annotation = {"entity": entity, "start": start, "end": start + len(sub), "value": sub}
        if len(span) > 2:
            annotation["role"] = span[2]
        out.append(annotation)
    return text, out


def synthetic(n: int, seed: int):
    """Labelled synthetic banking requests (disputes, transfers, greetings) with their entities."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        m, a = rng.choice(MERCHANTS), rng.choice(AMOUNTS)
        pattern = rng.choice(["I was charged {a} by {m} twice", "{m} took {a} that I never paid",
                              "dispute a payment of {a} at {m}", "there is a {a} charge from {m} I don't know"])
        rows.append(("dispute",) + annotate(pattern.format(a=a, m=m), (a, "amount"), (m, "merchant")))
        a = rng.choice(AMOUNTS)
        source, target = rng.sample(ACCOUNTS, 2)
        pattern = rng.choice(["move {a} from my {f} to my {t} account", "transfer {a} from {f} into {t}",
                              "put {a} into my {t} account from {f}"])
        rows.append(("transfer",) + annotate(pattern.format(a=a, f=source, t=target), (a, "amount"),
                                            (source, "account_type", "from"), (target, "account_type", "to")))
        rows.append(("greet", rng.choice(["hello there", "hi", "good morning", "hey bot", "hiya"]), []))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path("bundled"))


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    labels, texts, entities = synthetic(50, seed=1)
    config = IntentModelConfig(epochs=6, trainable_layers=2, batch_size=16, device="cpu")
    model = IntentModel.fit(texts, labels, config, entities=entities, progress=False)
    folder = model.save(tmp_path_factory.mktemp("joint") / "model")
    return model, folder


# ------------------------------------------------------------------ tags
@pytest.mark.parametrize("text, spans", [
    ("I was charged $1,200.50 by Tesco Express yesterday", [("$1,200.50", "amount"), ("Tesco Express", "merchant")]),
    ("£50 to savings", [("£50", "amount"), ("savings", "account_type", "to")]),
    ("我在淘宝被扣了五十元", [("淘宝", "merchant"), ("五十元", "amount")]),
    ("ｃａｒｄ ending ４２４２ blocked", [("４２４２", "card_last_four")]),
])
def test_gold_tags_decode_back_to_the_annotated_spans(tokenizer, text, spans):
    text, annotations = annotate(text, *spans)
    scheme = TagScheme.from_annotations([annotations])
    encoded = tokenizer(text, return_offsets_mapping=True)
    words = encoded.word_ids()
    offsets = [tuple(o) if w is not None else (0, 0) for o, w in zip(encoded["offset_mapping"], words)]
    labels = scheme.token_labels(annotations, offsets)
    probs = np.zeros((len(labels), len(scheme)))
    for t, label in enumerate(labels):
        probs[t, max(label, 0)] = 1.0
    found = scheme.decode(text, offsets, words, probs)
    assert [(e["entity"], e.get("role"), e["value"], e["start"], e["end"]) for e in found] == [
        (a["entity"], a.get("role"), a["value"], a["start"], a["end"]) for a in sorted(annotations, key=lambda a: a["start"])]
    assert all(e["confidence_entity"] == 1.0 for e in found)


def test_a_span_ending_inside_a_word_decodes_to_the_whole_word(tokenizer):
    text = "refund from starbucks please"
    scheme = TagScheme([EntityKind("merchant")])
    encoded = tokenizer(text, return_offsets_mapping=True)
    words = encoded.word_ids()
    offsets = [tuple(o) if w is not None else (0, 0) for o, w in zip(encoded["offset_mapping"], words)]
    probs = np.zeros((len(offsets), len(scheme)))
    probs[:, 0] = 1.0
    first = next(t for t, (s, _) in enumerate(offsets) if s == text.index("starbucks"))
    probs[first] = [0.1, 0.9, 0.0]  # only the word's first piece is tagged
    [entity] = scheme.decode(text, offsets, words, probs)
    assert entity["value"] == "starbucks" and entity["confidence_entity"] == pytest.approx(0.9)


@pytest.mark.parametrize("text, pieces, value", [
    ("I paid $18 at the shop", ["$", "18"], "$18"),
    ("a refund from John Lewis please", ["John", "Lewis"], "John Lewis"),
])
def test_pieces_of_one_entity_tagged_apart_come_out_as_one(tokenizer, text, pieces, value):
    """Each piece tagged B- (as a model may do): neighbours of one kind with nothing but blanks between join."""
    scheme = TagScheme([EntityKind("amount"), EntityKind("merchant")])
    kind = 1 if value == "$18" else 3  # B-amount or B-merchant
    encoded = tokenizer(text, return_offsets_mapping=True)
    words = encoded.word_ids()
    offsets = [tuple(o) if w is not None else (0, 0) for o, w in zip(encoded["offset_mapping"], words)]
    probs = np.zeros((len(offsets), len(scheme)))
    probs[:, 0] = 1.0
    for piece in pieces:
        t = next(t for t, (s, _) in enumerate(offsets) if s == text.index(piece))
        probs[t] = 0.0
        probs[t, kind] = 0.8
    [entity] = scheme.decode(text, offsets, words, probs)
    assert entity["value"] == value and text[entity["start"]:entity["end"]] == value
    assert entity["confidence_entity"] == pytest.approx(0.8)


def test_spans_of_different_kinds_or_apart_stay_apart(tokenizer):
    text = "move 120 pounds from savings"
    scheme = TagScheme([EntityKind("amount"), EntityKind("card_last_four")])
    encoded = tokenizer(text, return_offsets_mapping=True)
    words = encoded.word_ids()
    offsets = [tuple(o) if w is not None else (0, 0) for o, w in zip(encoded["offset_mapping"], words)]
    probs = np.zeros((len(offsets), len(scheme)))
    probs[:, 0] = 1.0
    for piece, tag in (("120", 3), ("pounds", 1)):  # B-card_last_four, then B-amount
        t = next(t for t, (s, _) in enumerate(offsets) if s == text.index(piece))
        probs[t] = 0.0
        probs[t, tag] = 1.0
    assert [(e["entity"], e["value"]) for e in scheme.decode(text, offsets, words, probs)] == [
        ("card_last_four", "120"), ("amount", "pounds")]


def _tagged(tokenizer, scheme, text, word_probs):
    """(offsets, word ids, probabilities) of `text` where each word listed gets its tag probabilities
    on every piece, and every other token is O."""
    encoded = tokenizer(text, return_offsets_mapping=True)
    words = encoded.word_ids()
    offsets = [tuple(o) if w is not None else (0, 0) for o, w in zip(encoded["offset_mapping"], words)]
    probs = np.zeros((len(offsets), len(scheme)))
    probs[:, 0] = 1.0
    for word, row in word_probs.items():
        start = text.index(word)
        for t, (s, e) in enumerate(offsets):
            if s < e and start <= s < start + len(word):
                probs[t] = row
    return offsets, words, probs


def test_a_doubtful_word_inside_an_entity_does_not_break_it_in_two(tokenizer):
    """Most likely tags word by word: B, O, I (a title broken in two); the most likely valid sequence
    (an I only after its B or I) is B, I, I: one entity."""
    scheme = TagScheme([EntityKind("object_name")])
    text = "where can i buy time for heroes"
    offsets, words, probs = _tagged(tokenizer, scheme, text, {
        "time": [0.05, 0.9, 0.05], "for": [0.55, 0.0, 0.45], "heroes": [0.05, 0.05, 0.9]})
    assert [e["value"] for e in scheme.decode(text, offsets, words, probs)] == ["time for heroes"]


def test_an_entity_cannot_start_inside(tokenizer):
    """An I- tag with no B- before it: read as the start of an entity when that is likelier than nothing."""
    scheme = TagScheme([EntityKind("city")])
    text = "weather in selmer today"
    offsets, words, probs = _tagged(tokenizer, scheme, text, {"selmer": [0.2, 0.3, 0.5]})
    [entity] = scheme.decode(text, offsets, words, probs)
    assert entity["value"] == "selmer" and entity["confidence_entity"] == pytest.approx(0.3)


def test_one_entity_with_and_without_a_role_trains():
    """The demo annotates account_type bare and with roles: the kinds must sort with None among strings."""
    scheme = TagScheme([EntityKind("account_type", "from"), EntityKind("account_type"), EntityKind("account_type", "to")])
    assert [k.role for k in scheme.kinds] == [None, "from", "to"]


def test_tag_scheme_round_trips_and_names_its_tags():
    scheme = TagScheme([EntityKind("account_type", "from"), EntityKind("amount")])
    again = TagScheme.from_dict(scheme.to_dict())
    assert again.kinds == scheme.kinds and len(again) == 5
    assert again.tag_names == ["O", "B-account_type|role=from", "I-account_type|role=from", "B-amount", "I-amount"]
    with pytest.raises(ValueError, match="malformed"):
        TagScheme.from_dict({"kinds": [{"role": "x"}]})


# ---------------------------------------------------------------- checks
@pytest.mark.parametrize("annotations, message", [
    ([{"entity": "amount", "start": 5, "end": 40}], "outside the example"),
    ([{"entity": "amount", "start": 3, "end": 2}], "outside the example"),
    ([{"entity": "amount", "start": 3, "end": 4}], "blank text"),
    ([{"entity": "", "start": 0, "end": 3}], "without a type"),
    ([{"entity": "amount", "start": "0", "end": 3}], "whole-number"),
    ([{"entity": "amount", "start": 4, "end": 7}, {"entity": "merchant", "start": 5, "end": 12}], "overlap"),
    ([{"entity": "shop", "start": 8, "end": 12}], "unknown entity type 'shop'"),
])
def test_broken_annotations_are_refused_naming_where_and_the_example(annotations, message):
    with pytest.raises(EntityAnnotationError, match=message) as error:
        check_annotations("pay £50 to Tesco", annotations, "nlu.yml:7", known_types={"amount", "merchant"})
    assert str(error.value).startswith("nlu.yml:7:") and "'pay £50 to Tesco'" in str(error.value)


def test_a_broken_annotation_stops_fit_before_any_work():
    texts, labels = ["pay £50 to Tesco", "hello"], ["pay", "greet"]
    with pytest.raises(EntityAnnotationError, match="training example 1"):
        IntentModel.fit(texts, labels, entities=[[{"entity": "amount", "start": 4, "end": 99}], []], progress=False)


def test_span_scores_are_exact_match_micro_averages():
    gold = [[{"entity": "amount", "start": 0, "end": 3}, {"entity": "merchant", "start": 7, "end": 12}], []]
    pred = [[{"entity": "amount", "start": 0, "end": 3}, {"entity": "merchant", "start": 6, "end": 12}],
            [{"entity": "amount", "start": 0, "end": 2}]]
    scores = span_scores(gold, pred)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(0.4)


def test_expected_calibration_error():
    rng = np.random.RandomState(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    correct = rng.uniform(size=confidence.shape) < confidence  # right as often as it says
    probs = np.stack([confidence, 1 - confidence], axis=1)
    y = np.where(correct, 0, 1)
    assert expected_calibration_error(probs, y) < 0.01
    overconfident = np.stack([np.full(1000, 0.99), np.full(1000, 0.01)], axis=1)
    assert expected_calibration_error(overconfident, np.r_[np.zeros(500), np.ones(500)].astype(int)) == pytest.approx(0.49)


# ------------------------------------------------------------- joint fit
def test_the_joint_model_learns_intents_and_entities_with_roles(joint):
    model, _ = joint
    labels, texts, entities = synthetic(12, seed=99)  # other draws of the same patterns
    parsed = model.parse(texts)
    accuracy = np.mean([model.labels[r.proba.argmax()] == l for r, l in zip(parsed, labels)])
    scores = span_scores(entities, [r.entities for r in parsed])
    assert accuracy == 1.0 and scores["f1"] >= 0.8, scores
    history = model.history[-1]
    assert "val_entity_f1" in history and model.calibration["validation_ece"] >= 0.0


def test_unseen_merchants_and_amounts_are_found(joint):
    model, _ = joint
    [(proba, found, _, _)] = model.parse(["Deliveroo charged me £12.40 twice"])
    assert model.labels[proba.argmax()] == "dispute"
    assert {"entity": "amount", "value": "£12.40", "start": 21, "end": 27} in [
        {k: e[k] for k in ("entity", "value", "start", "end")} for e in found]


def test_saved_joint_model_serves_the_same_answers_from_one_compiled_pass(joint, monkeypatch):
    model, folder = joint
    texts = ["move £300 from my joint to my savings account", "Uber took £9 that I never paid", "hi", ""]
    want = model.parse(texts)
    loaded = IntentModel.load(folder, device="cpu")
    assert loaded.tags.kinds == model.tags.kinds and loaded.calibration == model.calibration
    calls = []
    got = loaded.parse(texts[:1])  # builds the compiled pass
    compiled = loaded._serving_logits
    monkeypatch.setattr(loaded, "_serving_logits", lambda *a: calls.append(1) or compiled(*a))
    for text in texts[1:]:  # one at a time, as served
        got += loaded.parse([text])
    for (p, e, u, _), (q, f, v, _) in zip(want, got):
        assert u == v
        assert np.allclose(p, q, atol=1e-4)
        assert [(x["entity"], x.get("role"), x["start"], x["end"]) for x in e] == [
            (x["entity"], x.get("role"), x["start"], x["end"]) for x in f]
    assert len(calls) == len(texts) - 1  # the first call built the pass; one pass per message after that
    again = loaded.parse(texts[:1])  # cached: no pass at all, and a copy the caller may change
    again[0][1][0]["value"] = "changed"
    assert loaded.parse(texts[:1])[0][1][0]["value"] != "changed" and len(calls) == len(texts) - 1
    assert np.allclose(loaded.predict_proba(texts[:2]), np.stack([r.proba for r in want[:2]]), atol=1e-4)


def test_a_model_trained_without_entities_extracts_none(tmp_path):
    labels, texts, _ = synthetic(8, seed=3)
    model = IntentModel.fit(texts, labels, IntentModelConfig(epochs=1, trainable_layers=1, device="cpu"), progress=False)
    assert model.tags is None and all(r.entities == [] for r in model.parse(texts[:3]))
    folder = model.save(tmp_path / "m")
    assert not (folder / ENTITY_FILE).exists()
    assert IntentModel.load(folder).parse(["hi"])[0][1] == []


def test_a_missing_entity_file_is_named(joint, tmp_path):
    import shutil

    _, folder = joint
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    (copy / ENTITY_FILE).unlink()
    with pytest.raises(IntentModelError, match=ENTITY_FILE):
        IntentModel.load(copy)


# ------------------------------------------------------------ unknown requests
def test_the_detector_is_fitted_stored_and_says_which_requests_are_unknown(joint):
    model, folder = joint
    assert model.detector is not None and model.detector.false_unknown_rate == model.config.false_unknown_rate
    loaded = IntentModel.load(folder, device="cpu")
    texts = ["transfer £40 from my savings to my current account", "what is the capital of mongolia",
             "recommend a good recipe for lasagne"]
    eager, served = model.parse(texts), [loaded.parse([t])[0] for t in texts]
    for a, b in zip(eager, served):
        assert a.unknown == b.unknown and a.unknown_score == pytest.approx(b.unknown_score, abs=1e-3)
    assert [r.unknown for r in eager] == [False, True, True]
    assert eager[0].unknown_score < min(r.unknown_score for r in eager[1:])


def test_a_corrupt_detector_in_the_meta_file_is_named(joint, tmp_path):
    import json
    import shutil

    _, folder = joint
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    meta = json.loads((copy / "intent_model.json").read_text())
    meta["open_intent"]["centroids"] = "not base64!"
    (copy / "intent_model.json").write_text(json.dumps(meta))
    with pytest.raises(IntentModelError, match="intent_model.json.*centroids"):
        IntentModel.load(copy)


def test_auto_trainable_layers_are_all_of_them_for_entities_and_the_top_three_for_intents_alone():
    from types import SimpleNamespace

    base = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=6))
    auto = IntentModelConfig.from_dict({})
    assert auto.trainable_layers == "auto"
    assert auto.with_layers_for(base, entities=True).trainable_layers == 6
    assert auto.with_layers_for(base, entities=False).trainable_layers == 3
    assert IntentModelConfig.from_dict({"trainable_layers": 2}).with_layers_for(base, entities=True).trainable_layers == 2
    for wrong in (0, "all", 2.5, True):
        with pytest.raises(ValueError, match="trainable_layers"):
            IntentModelConfig.from_dict({"trainable_layers": wrong})


def test_a_model_fitted_with_auto_layers_on_entity_data_tunes_every_layer(tmp_path):
    labels, texts, entities = synthetic(6, seed=3)
    model = IntentModel.fit(texts, labels, IntentModelConfig(epochs=1, batch_size=16, device="cpu", open_intent=False),
                            entities=entities, progress=False)
    assert model.config.trainable_layers == 6 and model.frozen_layers == 0
    assert IntentModel.load(model.save(tmp_path / "model")).config.trainable_layers == 6
