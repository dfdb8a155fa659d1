"""The transformer intent classifier: as a model, as a Rasa component, and offline."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nlu.model import IntentModel, IntentModelConfig, IntentModelError
from training.intent_data import DataFileError, read_examples

FIXTURE = Path(__file__).parent / "fixtures" / "intents_tiny.csv"
# Small and quick: one adapted layer, short inputs, a few epochs.
TINY = dict(epochs=3, trainable_layers=1, max_length=24, batch_size=8, validation_split=0.2, patience=5, device="cpu")
PROBES = ["my card got stolen", "has my card been posted", "euro rate please", "hi there", "", "💳💳💳", "a" * 10000, "\x00\x07 control"]


@pytest.fixture(scope="module")
def examples():
    texts, labels, problems = read_examples(FIXTURE)
    return texts, labels, problems


@pytest.fixture(scope="module")
def trained(examples, tmp_path_factory):
    texts, labels, _ = examples
    model = IntentModel.fit(texts, labels, IntentModelConfig(**TINY), progress=False)
    folder = model.save(tmp_path_factory.mktemp("intent") / "model")
    return model, folder


def test_csv_rows_without_text_or_label_are_reported_by_line(examples):
    texts, labels, problems = examples
    assert len(texts) == 24 and set(labels) == {"lost_card", "card_arrival", "exchange_rate", "greet"}
    assert [p.split(":")[-2] for p in problems] == ["26", "27"]


def test_unreadable_data_files_say_what_is_wrong(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        read_examples(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("utterance,whatever\nhello,greet\n")
    with pytest.raises(DataFileError, match="needs a 'text' column"):
        read_examples(bad)


def test_saved_model_predicts_exactly_like_the_trained_one(trained):
    model, folder = trained
    loaded = IntentModel.load(folder, device="cpu")
    assert loaded.labels == model.labels
    np.testing.assert_allclose(loaded.predict_proba(PROBES), model.predict_proba(PROBES), atol=1e-5)


def test_probabilities_are_calibrated_distributions(trained):
    model, _ = trained
    probs = model.predict_proba(PROBES)
    assert probs.shape == (len(PROBES), 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert 0.05 <= model.temperature <= 20.0


def test_it_learns_the_fixture_intents(trained):
    model, _ = trained
    predicted = [model.labels[i] for i in model.predict_proba(PROBES[:4]).argmax(1)]
    assert predicted == ["lost_card", "card_arrival", "exchange_rate", "greet"]


def test_same_seed_same_data_same_predictions(examples, trained):
    texts, labels, _ = examples
    again = IntentModel.fit(texts, labels, IntentModelConfig(**TINY), progress=False)
    np.testing.assert_allclose(again.predict_proba(PROBES), trained[0].predict_proba(PROBES), atol=1e-6)


def test_adapter_folder_loads_with_plain_peft(trained):
    from peft import PeftModel
    from transformers import AutoModel

    from core.encoder import resolve_model_path

    _, folder = trained
    config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    base = AutoModel.from_pretrained(resolve_model_path("bundled"))
    peft_model = PeftModel.from_pretrained(base, str(folder / "adapter"))
    assert any("lora_A" in name for name, _ in peft_model.named_parameters())


def test_ia3_is_the_other_selectable_adapter(examples, tmp_path):
    texts, labels, _ = examples
    model = IntentModel.fit(texts, labels, IntentModelConfig(**{**TINY, "adapter": "ia3", "epochs": 1}), progress=False)
    folder = model.save(tmp_path / "ia3")
    assert json.loads((folder / "adapter" / "adapter_config.json").read_text())["peft_type"] == "IA3"
    assert IntentModel.load(folder).predict_proba(["hello"]).shape == (1, 4)


def test_unknown_settings_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown intent model setting"):
        IntentModelConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="adapter must be"):
        IntentModelConfig.from_dict({"adapter": "prefix"})


@pytest.mark.parametrize("victim", ["intent_model.json", "head.safetensors", "adapter/adapter_config.json"])
def test_missing_model_file_is_named(trained, tmp_path, victim):
    copy = shutil.copytree(trained[1], tmp_path / "model")
    (copy / victim).unlink()
    with pytest.raises(IntentModelError, match=victim.split("/")[-1]):
        IntentModel.load(copy)


def test_corrupt_model_file_is_reported(trained, tmp_path):
    copy = shutil.copytree(trained[1], tmp_path / "model")
    (copy / "head.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(IntentModelError, match="corrupt"):
        IntentModel.load(copy)


def test_served_model_answers_from_its_compiled_pass_and_its_cache(trained, monkeypatch):
    """Serving (core.serving): TorchScript pass == eager pass; a prefetched text is not computed again."""
    import torch

    _, folder = trained
    served = IntentModel.load(folder, device="cpu")
    texts = ["where is my new card", "hi", "what rate do you use to change pounds into euros"]
    eager = torch.softmax(served.logits(texts) / served.temperature, dim=-1).numpy()
    served.prefetch(texts)
    assert isinstance(served._serving_logits, torch.jit.ScriptModule) and len(served._served) == 3
    monkeypatch.setattr(served, "_serve_parse", lambda _: pytest.fail("computed again"))
    np.testing.assert_allclose(served.predict_proba(texts), eager, atol=1e-5)


def test_serving_threads_limit_torch_and_numpys_blas_for_the_process():
    """`inference_threads` (core.serving.limit_numeric_threads): a second BLAS thread made each small
    product of a served message wait for a busy core (0.7 ms instead of 9 us)."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, torch; from threadpoolctl import threadpool_info; "
        "from core.serving import limit_numeric_threads; limit_numeric_threads(1); "
        "print(json.dumps([torch.get_num_threads()] + [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads[0] == 1 and len(threads) > 1 and set(threads[1:]) == {1}, threads
