"""`nlu.TransformerIntentClassifier` inside Rasa: graph life cycle and `rasa train`."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu import TransformerIntentClassifier
from nlu.model import IntentModelError
from training.intent_data import read_examples

FIXTURE = Path(__file__).parent / "fixtures" / "intents_tiny.csv"
TINY = dict(epochs=3, trainable_layers=1, max_length=24, batch_size=8, validation_split=0.2, patience=5, device="cpu")
HARD_MESSAGES = ["", "   ", "a" * 10000, "🙂🙂 card?", "\x00\x1b[31m\x07", "my new card has not arrived yet"]


def training_data() -> TrainingData:
    texts, labels, _ = read_examples(FIXTURE)
    return TrainingData([Message(data={"text": t, "intent": l}) for t, l in zip(texts, labels)])


def make(storage, config=None, resource="intent"):
    config = {**TransformerIntentClassifier.get_default_config(), **TINY, **(config or {})}
    context = ExecutionContext(graph_schema=None, model_id="test")
    return TransformerIntentClassifier.create(config, storage, Resource(resource), context), config, context


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    storage = LocalModelStorage(tmp_path_factory.mktemp("storage"))
    component, config, context = make(storage)
    resource = component.train(training_data())
    return storage, config, context, resource, component


def test_process_fills_intent_and_ranking_for_any_text(trained):
    storage, config, context, resource, _ = trained
    loaded = TransformerIntentClassifier.load(config, storage, resource, context)
    messages = loaded.process([Message(data={"text": t}) for t in HARD_MESSAGES])
    for message in messages:
        ranking = message.get("intent_ranking")
        assert message.get("intent")["name"] == ranking[0]["name"]
        assert len(ranking) == 4 and abs(sum(r["confidence"] for r in ranking) - 1) < 1e-4
    assert messages[-1].get("intent")["name"] == "card_arrival"


def test_loaded_component_predicts_like_the_trained_one(trained):
    storage, config, context, resource, component = trained
    loaded = TransformerIntentClassifier.load({**config, "inference_precision": "fp32"}, storage, resource, context)
    texts = ["my card was stolen", "euro rate", "hello"]
    a = component.process([Message(data={"text": t}) for t in texts])
    b = loaded.process([Message(data={"text": t}) for t in texts])
    for before, after in zip(a, b):
        assert [r["name"] for r in before.get("intent_ranking")] == [r["name"] for r in after.get("intent_ranking")]
        assert [r["confidence"] for r in before.get("intent_ranking")] == pytest.approx(
            [r["confidence"] for r in after.get("intent_ranking")], abs=1e-5
        )


def test_bfloat16_serving_keeps_the_predictions(trained):
    """Serving in bfloat16 (the default where the CPU has it) moves confidences by a hair, not the answer."""
    storage, config, context, resource, component = trained
    half = TransformerIntentClassifier.load({**config, "inference_precision": "bf16"}, storage, resource, context)
    texts = ["my card was stolen", "euro rate", "hello", "where is my new card"]
    a = component.process([Message(data={"text": t}) for t in texts])
    b = half.process([Message(data={"text": t}) for t in texts])
    for before, after in zip(a, b):
        assert before.get("intent")["name"] == after.get("intent")["name"]
        assert before.get("intent")["confidence"] == pytest.approx(after.get("intent")["confidence"], abs=0.03)


def test_button_payloads_are_left_to_rasa(trained):
    _, _, _, _, component = trained
    (message,) = component.process([Message(data={"text": '/rate_answer{"rating": "up"}'})])
    assert message.get("intent") == {"name": None, "confidence": 0.0}


def test_pretrained_adapter_from_the_offline_trainer(tmp_path, trained):
    from training.finetune_intent import main as finetune

    out = tmp_path / "offline"
    assert finetune(["--data", str(FIXTURE), "--out", str(out), "--quiet", "--epochs", "1", "--trainable-layers", "1", "--device", "cpu"]) == 0
    for name in ("adapter/adapter_config.json", "labels.json", "metrics.json", "confusion_matrix.png", "learning_curve.png"):
        assert (out / name).exists(), name
    (tmp_path / "storage").mkdir()
    storage = LocalModelStorage(tmp_path / "storage")
    component, config, context = make(storage, {"pretrained_adapter": str(out)})
    resource = component.train(training_data())
    loaded = TransformerIntentClassifier.load(config, storage, resource, context)
    (message,) = loaded.process([Message(data={"text": "hello"})])
    assert message.get("intent")["name"] in {"greet", "lost_card", "card_arrival", "exchange_rate"}


def test_missing_pretrained_adapter_says_how_to_make_it(tmp_path):
    component, _, _ = make(LocalModelStorage(tmp_path / "s"), {"pretrained_adapter": str(tmp_path / "nope")})
    with pytest.raises(IntentModelError, match="training.finetune_intent"):
        component.train(training_data())


def test_model_archive_without_component_files_is_reported(tmp_path):
    storage = LocalModelStorage(tmp_path / "empty")
    config = {**TransformerIntentClassifier.get_default_config(), **TINY}
    with pytest.raises(IntentModelError, match="retrain"):
        TransformerIntentClassifier.load(config, storage, Resource("never-trained"), ExecutionContext(None, "x"))


def test_rasa_train_with_only_our_component(tmp_path):
    """Any Rasa 3 project can name it alone in config.yml and train with `rasa train nlu`."""
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    texts, labels, _ = read_examples(FIXTURE)
    nlu = {"version": "3.1", "nlu": [{"intent": i, "examples": "".join(f"- {t}\n" for t, l in zip(texts, labels) if l == i)} for i in sorted(set(labels))]}
    (tmp_path / "nlu.yml").write_text(yaml.safe_dump(nlu))
    (tmp_path / "config.yml").write_text(yaml.safe_dump({
        "recipe": "default.v1", "language": "en", "assistant_id": "test",
        "pipeline": [{"name": "nlu.TransformerIntentClassifier", **TINY}],
    }))
    model = train_nlu(str(tmp_path / "config.yml"), str(tmp_path / "nlu.yml"), str(tmp_path / "models"))
    agent = Agent.load(model)
    parsed = asyncio.run(agent.parse_message("my card was stolen"))
    assert parsed["intent"]["name"] == "lost_card"
