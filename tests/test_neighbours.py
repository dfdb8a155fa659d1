"""The nearest-neighbour vote blended with the intent classifier (nlu/neighbours.py)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nlu.model import NEIGHBOURS_FILE, IntentModel, IntentModelConfig, IntentModelError
from nlu.neighbours import MIN_VALIDATION, NeighbourVote
from tests.test_intent_classifier import FIXTURE, PROBES, TINY
from training.intent_data import read_examples


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def world():
    """Two intents on either side of a plane, 40 examples each, and 40 validation examples."""
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.2, 0.0], [0.2, 1.0, 0.0]])
    y = np.repeat([0, 1], 40)
    emb = _unit(centres[y] + rng.normal(0, 0.15, (80, 3)))
    val_y = np.repeat([0, 1], 20)
    val_emb = _unit(centres[val_y] + rng.normal(0, 0.15, (40, 3)))
    return emb, y, val_emb, val_y


def test_the_vote_is_a_distribution_led_by_the_nearest_examples(world):
    emb, y, _, _ = world
    vote = NeighbourVote(emb, y, classes=3, k=5, sharpness=20.0, weight=0.5)
    v = vote.vote(_unit([[1.0, 0.1, 0.0], [0.1, 1.0, 0.0]]), np.full((2, 3), 1 / 3))
    assert v.shape == (2, 3) and np.allclose(v.sum(1), 1.0, atol=1e-5)
    assert v[0].argmax() == 0 and v[1].argmax() == 1 and v[:, 2].max() == 0.0  # nobody votes for a class with no example
    more_than_memory = NeighbourVote(emb[:3], y[:3], classes=2, k=50)
    assert more_than_memory.k == 3 and more_than_memory.vote(emb[:1], [[0.5, 0.5]]).shape == (1, 2)


def test_only_the_examples_of_the_classifiers_top_intents_vote(world):
    emb, y, _, _ = world
    query = _unit([[1.0, 0.1, 0.0]])  # among intent 0's examples
    narrow = NeighbourVote(emb, y, classes=3, candidates=1)
    assert narrow.vote(query, [[0.1, 0.8, 0.1]])[0].argmax() == 1, "intent 0 is not among the classifier's top 1"
    assert narrow.vote(query, [[0.8, 0.1, 0.1]])[0].argmax() == 0
    abstains = narrow.vote(query, [[0.1, 0.1, 0.8]])  # intent 2 has no example: the vote repeats the classifier
    np.testing.assert_allclose(abstains, [[0.1, 0.1, 0.8]], atol=1e-6)
    shuffled = np.random.default_rng(1).permutation(len(y))
    np.testing.assert_allclose(NeighbourVote(emb[shuffled], y[shuffled], classes=3).vote(query, [[0.4, 0.4, 0.2]]),
                               NeighbourVote(emb, y, classes=3).vote(query, [[0.4, 0.4, 0.2]]), atol=1e-6)


def test_blending_mixes_at_the_weight_and_weight_zero_changes_nothing(world):
    emb, y, _, _ = world
    proba = np.array([[0.1, 0.9, 0.0]], dtype=np.float32)
    query = _unit([[1.0, 0.1, 0.0]])
    off = NeighbourVote(emb, y, classes=3, weight=0.0)
    assert off.blend(proba, query) is proba
    on = NeighbourVote(emb, y, classes=3, weight=0.5)
    expected = 0.5 * proba + 0.5 * on.vote(query, proba)
    np.testing.assert_allclose(on.blend(proba, query), expected, atol=1e-6)
    assert on.blend(proba, query)[0].argmax() == 0  # the vote overturns a wrong, unsure classifier


def test_fit_keeps_the_vote_only_where_it_wins_on_validation(world):
    emb, y, val_emb, val_y = world
    wrong = np.tile([[0.45, 0.55]], (len(val_y), 1)).astype(np.float32)  # always says intent 1, barely
    vote, tried = NeighbourVote.fit(emb, y, val_emb, val_y, wrong, classes=2)
    assert vote is not None and vote.weight > 0 and tried[vote.weight] < tried[0.0]  # validation log-loss
    assert len(vote.labels) == len(y) + len(val_y), "the validation examples join the memory once the weight is chosen"
    blended = vote.blend(wrong, val_emb)
    assert np.allclose(blended.sum(1), 1.0, atol=1e-5)
    right = np.eye(2, dtype=np.float32)[val_y]  # already perfect and sure: nothing to gain
    vote, tried = NeighbourVote.fit(emb, y, val_emb, val_y, right, classes=2)
    assert vote is None and tried[0.0] == min(tried.values())
    vote, tried = NeighbourVote.fit(emb, y, val_emb[: MIN_VALIDATION - 1], val_y[: MIN_VALIDATION - 1],
                                    wrong[: MIN_VALIDATION - 1], classes=2)
    assert vote is None and tried == {}, "too few validation examples to choose a weight"


def test_bad_memories_are_refused(world):
    emb, y, _, _ = world
    with pytest.raises(ValueError, match="does not match"):
        NeighbourVote(emb, y[:-1], classes=2)
    with pytest.raises(ValueError, match="outside"):
        NeighbourVote(emb, y + 5, classes=2)


@pytest.fixture(scope="module")
def voting_model(tmp_path_factory):
    """The tiny fixture model with a vote over its own training examples (the fixture's
    validation split is too small for `fit` to choose a weight itself)."""
    texts, labels, _ = read_examples(FIXTURE)
    model = IntentModel.fit(texts, labels, IntentModelConfig(**TINY), progress=False)
    assert model.neighbours is None, "a validation split under MIN_VALIDATION examples chooses no vote"
    index = {name: i for i, name in enumerate(model.labels)}
    model.neighbours = NeighbourVote(model.embed(texts).numpy(), [index[l] for l in labels], len(model.labels),
                                     k=3, weight=0.5)
    return model, model.save(tmp_path_factory.mktemp("vote") / "model")


def test_a_saved_vote_loads_and_every_serving_path_blends_it(voting_model):
    model, folder = voting_model
    meta = json.loads((folder / "intent_model.json").read_text())
    assert meta["neighbours"]["weight"] == 0.5 and (folder / NEIGHBOURS_FILE).exists()
    expected = model.predict_proba(PROBES)
    alone = model.neighbours
    model.neighbours = None
    plain = model.predict_proba(PROBES)
    model.neighbours = alone
    assert not np.allclose(plain, expected, atol=1e-3), "the vote changes the probabilities"
    loaded = IntentModel.load(folder, device="cpu")
    assert loaded.neighbours is not None and loaded.neighbours.weight == 0.5
    np.testing.assert_allclose(loaded.predict_proba(PROBES), expected, atol=2e-3)  # the memory is kept as float16
    served = np.stack([r.proba for r in loaded.parse(PROBES[:4])])  # the compiled pass, one message at a time
    np.testing.assert_allclose(served, expected[:4], atol=2e-3)


def test_a_missing_neighbour_file_is_named(voting_model, tmp_path):
    _, folder = voting_model
    broken = tmp_path / "model"
    shutil.copytree(folder, broken)
    (broken / NEIGHBOURS_FILE).unlink()
    with pytest.raises(IntentModelError, match="neighbours.safetensors"):
        IntentModel.load(broken, device="cpu")



@pytest.mark.parametrize("setting, value", [("neighbours", 0), ("neighbours", "ten"), ("neighbour_sharpness", -1.0),
                                            ("neighbour_sharpness", "sharp")])
def test_bad_vote_settings_are_refused_by_name(setting, value):
    with pytest.raises(ValueError, match=setting):
        IntentModelConfig.from_dict({setting: value})
