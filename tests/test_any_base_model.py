"""The intent model on any base transformer: BERT, DistilBERT, RoBERTa, XLM-R, MPNet, DeBERTa-v2.

Each model is tiny (hidden size 32, 2 layers, 2 heads), randomly initialised
from its config and saved with a tokenizer built here: nothing is downloaded.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.encoder import ModelNotFoundError
from nlu.base_models import UnsupportedBaseModelError, adapter_targets
from nlu.model import IntentModel, IntentModelConfig

DATA = {
    "lost_card": ["i lost my card", "my card was stolen", "someone took my card", "card missing", "cannot find my card", "lost card help"],
    "greet": ["hello", "hi there", "good morning", "hey", "hello there friend", "hi"],
    "exchange_rate": ["what is the euro rate", "exchange rate please", "how many dollars for a pound", "rate for euros", "currency rate today", "dollar rate"],
}
TEXTS = [t for texts in DATA.values() for t in texts]
LABELS = [label for label, texts in DATA.items() for _ in texts]
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
TRAIN = dict(epochs=2, trainable_layers=1, max_length=16, batch_size=6, validation_split=0.0, patience=5,
             device="cpu", learning_rate=2e-2, head_learning_rate=2e-2)

# Per family: its config, and the top block's adapted modules (role order: query, key, value,
# attention output, feed-forward in, feed-forward out).
FAMILIES = {
    "bert": ("BertConfig", SMALL, "encoder.layer.1.", ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"]),
    "distilbert": ("DistilBertConfig", dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64), "transformer.layer.1.",
                   ["attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2"]),
    "roberta": ("RobertaConfig", SMALL, "encoder.layer.1.", ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"]),
    "xlm-roberta": ("XLMRobertaConfig", SMALL, "encoder.layer.1.", ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"]),
    "mpnet": ("MPNetConfig", SMALL, "encoder.layer.1.", ["attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "intermediate.dense", "output.dense"]),
    "deberta-v2": ("DebertaV2Config", dict(SMALL, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"], max_relative_positions=-1),
                   "encoder.layer.1.", ["attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj", "attention.output.dense", "intermediate.dense", "output.dense"]),
}


def _unigram(special, **names):
    """A sentencepiece-style Unigram tokenizer (XLM-R, DeBERTa-v2) trained on the test texts."""
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(TEXTS * 3, vocab_size=120, special_tokens=special, unk_token=names["unk_token"])
    cls, sep = names["cls_token"], names["sep_token"]
    unigram._tokenizer.post_processor = TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, special.index(cls)), (sep, special.index(sep))])
    return unigram._tokenizer


def _tokenizer(folder: Path, family: str):
    """A tokenizer of the family's own kind over the test texts: byte-level BPE for RoBERTa,
    Unigram for XLM-R and DeBERTa-v2, WordPiece for BERT, DistilBERT and MPNet."""
    import transformers

    if family in ("roberta", "xlm-roberta"):
        names = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        if family == "roberta":
            from tokenizers import ByteLevelBPETokenizer

            bpe = ByteLevelBPETokenizer()
            bpe.train_from_iterator(TEXTS * 3, vocab_size=300, min_frequency=1, special_tokens=special)
            return transformers.RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, **names)
        return transformers.XLMRobertaTokenizerFast(tokenizer_object=_unigram(special, **names), **names)
    if family == "deberta-v2":
        names = dict(bos_token="[CLS]", eos_token="[SEP]", sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]")
        special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        return transformers.DebertaV2TokenizerFast(tokenizer_object=_unigram(special, **names), **names)
    words = sorted({w for t in TEXTS for w in t.split()} | set("abcdefghijklmnopqrstuvwxyz"))
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]) + "\n")
    return transformers.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def tiny_model(folder: Path, family: str) -> Path:
    """A randomly initialised `family` model and its tokenizer, saved in `folder`."""
    import transformers
    from transformers import AutoModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(folder, family)
    config_class, values, _, _ = FAMILIES[family]
    config = getattr(transformers, config_class)(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **values)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {family: tiny_model(root / family, family) for family in FAMILIES}


def _adapter_weights(model: IntentModel):
    return {n: p.detach().clone() for n, p in model.encoder.named_parameters() if "lora_" in n or "ia3_" in n}


@pytest.mark.parametrize("family,adapter", [(f, "lora") for f in FAMILIES] + [("distilbert", "ia3"), ("deberta-v2", "ia3")])
def test_fits_saves_loads_and_predicts_on_each_family(bases, tmp_path, family, adapter):
    _, _, prefix, roles = FAMILIES[family]
    config = IntentModelConfig(base_model=str(bases[family]), adapter=adapter, **TRAIN)
    model = IntentModel.fit(TEXTS, LABELS, config, progress=False)

    wanted = roles if adapter == "lora" else [roles[1], roles[2], roles[5]]
    peft_config = model.encoder.peft_config["default"]
    assert sorted(peft_config.target_modules) == sorted(prefix + r for r in wanted)
    if adapter == "ia3":
        assert set(peft_config.feedforward_modules) == {prefix + roles[5]}
    assert model.splits == (family != "deberta-v2")  # DeBERTa-v2 runs whole, the others cache their frozen block

    # The adapter trained: LoRA's B matrices start at zero, IA3's scales at one.
    start = 0.0 if adapter == "lora" else 1.0
    trained = {n: p for n, p in _adapter_weights(model).items() if "lora_A" not in n}
    assert trained and all(float((p - start).abs().max()) > 1e-4 for p in trained.values())

    probes = ["i lost my card", "hello", "euro rate", ""]
    expected = model.predict_proba(probes)
    loaded = IntentModel.load(model.save(tmp_path / "model"), device="cpu")
    served = loaded.predict_proba(probes)  # the serving pass (compiled where it traces)
    assert served.shape == (4, 3)
    np.testing.assert_allclose(served.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(served, expected, atol=1e-4)
    np.testing.assert_allclose(loaded.predict_proba(probes * 3), expected.tolist() * 3, atol=1e-4)  # the batch pass

    # Serving from another encoder's hidden states after the frozen blocks (the sentiment reader's shortcut).
    from transformers import AutoModel

    assert loaded.same_lower_layers(AutoModel.from_pretrained(str(bases[family]))) == model.splits
    if model.splits:
        text = "my card is gone"
        ids, mask = loaded._pad(loaded._tokenize([text]))
        with torch.inference_mode():
            hidden = loaded._frozen_prefix(ids, mask)
        eager = torch.softmax(loaded.logits([text]) / loaded.temperature, dim=-1).numpy()[0]
        np.testing.assert_allclose(loaded.predict_proba_prefixed(text, hidden), eager, atol=1e-4)


def test_the_adapter_lowers_the_training_loss(bases):
    config = IntentModelConfig(base_model=str(bases["distilbert"]), **{**TRAIN, "epochs": 4})
    history = IntentModel.fit(TEXTS, LABELS, config, progress=False).history
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_the_token_type_ids_go_only_to_models_that_have_them(bases):
    from nlu.base_models import BertLayers, DistilBertLayers, MPNetLayers, WholeModel, layer_runner
    from transformers import AutoModel

    kinds = {f: layer_runner(AutoModel.from_pretrained(str(bases[f]))) for f in FAMILIES}
    assert {f: type(k) for f, k in kinds.items()} == {
        "bert": BertLayers, "roberta": BertLayers, "xlm-roberta": BertLayers,
        "distilbert": DistilBertLayers, "mpnet": MPNetLayers, "deberta-v2": WholeModel}
    assert kinds["bert"].token_types


def test_an_architecture_without_recognisable_blocks_is_named(tmp_path):
    from transformers import AutoModel, GPT2Config  # GPT-2's projections are Conv1D, not Linear

    base = AutoModel.from_config(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=32))
    with pytest.raises(UnsupportedBaseModelError, match="'gpt2'"):
        adapter_targets(base, 1, "lora")


@pytest.mark.parametrize("remove,named", [
    (["model.safetensors"], "model weights"),
    (["tokenizer.json", "vocab.txt", "tokenizer_config.json"], "tokenizer files"),
])
def test_a_base_folder_without_weights_or_tokenizer_is_named_and_nothing_is_written(bases, tmp_path, remove, named):
    folder = Path(shutil.copytree(bases["bert"], tmp_path / "base"))
    for name in remove:
        (folder / name).unlink()
    with pytest.raises(ModelNotFoundError, match=named) as raised:
        IntentModel.fit(TEXTS, LABELS, IntentModelConfig(base_model=str(folder), **TRAIN), progress=False)
    assert str(folder) in str(raised.value)

    # Inside Rasa: `train` stops before anything reaches the model storage.
    from rasa.engine.graph import ExecutionContext
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    from nlu import TransformerIntentClassifier

    storage_dir = tmp_path / "storage"
    config = {**TransformerIntentClassifier.get_default_config(), **TRAIN, "base_model": str(folder)}
    component = TransformerIntentClassifier.create(config, LocalModelStorage(storage_dir), Resource("intent"), ExecutionContext(graph_schema=None, model_id="t"))
    with pytest.raises(ModelNotFoundError, match=named):
        component.train(TrainingData([Message(data={"text": t, "intent": l}) for t, l in zip(TEXTS, LABELS)]))
    assert not [p for p in storage_dir.rglob("*") if p.is_file()]


def test_a_saved_model_whose_base_lost_its_tokenizer_names_it(bases, tmp_path):
    folder = Path(shutil.copytree(bases["bert"], tmp_path / "base"))
    saved = IntentModel.fit(TEXTS, LABELS, IntentModelConfig(base_model=str(folder), **{**TRAIN, "epochs": 1}), progress=False).save(tmp_path / "model")
    for name in ("tokenizer.json", "vocab.txt"):
        (folder / name).unlink()
    with pytest.raises(ModelNotFoundError, match="tokenizer files"):
        IntentModel.load(saved)
