"""The retraining gate: a worse model is refused, a good one promoted, and promotion can be rolled back."""
import random
from pathlib import Path

import pytest

from nlu.model import IntentModel, IntentModelConfig
from training import retrain
from training.intent_data import read_examples

FIXTURE = Path(__file__).parent / "fixtures" / "intents_tiny.csv"
TINY = dict(trainable_layers=1, max_length=24, batch_size=8, validation_split=0.2, patience=5, device="cpu")
HELDOUT = """text,label
my bank card has gone missing,lost_card
I think my card was stolen on the train,lost_card
when does my new card arrive,card_arrival
has the card been posted yet,card_arrival
what is the dollar rate today,exchange_rate
how many euros for a pound,exchange_rate
hello there,greet
hi good morning,greet
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A properly trained live model and a deliberately worse one (shuffled labels, one epoch)."""
    root = tmp_path_factory.mktemp("gate")
    texts, labels, _ = read_examples(FIXTURE)
    good = IntentModel.fit(texts, labels, IntentModelConfig(epochs=3, **TINY), progress=False).save(root / "good")
    shuffled = labels[:]
    random.Random(0).shuffle(shuffled)
    worse = IntentModel.fit(texts, shuffled, IntentModelConfig(epochs=1, **TINY), progress=False).save(root / "worse")
    heldout = root / "heldout.csv"
    heldout.write_text(HELDOUT)
    return {"good": good, "worse": worse, "heldout": heldout}


def run(tmp_path, candidate, heldout, *extra):
    return retrain.main(["--model-dir", str(tmp_path / "models"), "--intent-candidate", str(candidate),
                         "--heldout", str(heldout), "--skip-index", "--skip-recommender", "--no-review-export", *extra])


def test_a_deliberately_worse_model_is_refused_and_the_live_one_stays(models, tmp_path, capsys):
    assert run(tmp_path, models["good"], models["heldout"]) == 0  # first model: nothing to compare with
    live = tmp_path / "models" / "intent"
    before = {p.name: p.read_bytes() for p in live.rglob("*") if p.is_file()}
    assert run(tmp_path, models["worse"], models["heldout"]) == 1
    printed = capsys.readouterr().out
    assert "REFUSED" in printed and "held-out accuracy" in printed
    assert {p.name: p.read_bytes() for p in live.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "models" / "previous" / "intent").exists()


def test_the_gate_compares_scores_on_the_held_out_set(models):
    good = retrain.evaluate_intent(models["good"], models["heldout"])
    worse = retrain.evaluate_intent(models["worse"], models["heldout"])
    assert good["accuracy"] > worse["accuracy"]
    assert retrain.not_worse(worse, good)[0] is False
    assert retrain.not_worse(good, worse) == (True, [])
    assert retrain.not_worse(good, good) == (True, [])  # equal is not worse


def test_promotion_keeps_the_previous_model_and_rollback_restores_it(models, tmp_path, capsys):
    assert run(tmp_path, models["worse"], models["heldout"]) == 0  # nothing live yet: promoted
    assert run(tmp_path, models["good"], models["heldout"]) == 0  # better: promoted
    assert "PROMOTED" in capsys.readouterr().out
    live, previous = tmp_path / "models" / "intent", tmp_path / "models" / "previous" / "intent"
    head = "head.safetensors"
    assert (live / head).read_bytes() == (models["good"] / head).read_bytes()
    assert (previous / head).read_bytes() == (models["worse"] / head).read_bytes()
    assert retrain.main(["--model-dir", str(tmp_path / "models"), "--rollback"]) == 0
    assert (live / head).read_bytes() == (models["worse"] / head).read_bytes()
    assert (previous / head).read_bytes() == (models["good"] / head).read_bytes()
