"""The shared encoder's fast path: same vectors as sentence-transformers, cached, in either precision."""
import numpy as np
import pytest

from core import encoder as enc


@pytest.fixture(scope="module")
def model():
    return enc.load_encoder(None)


def test_fast_path_matches_encode(model):
    texts = ["my card was declined abroad", "hi", "how do I open a joint account with my partner?"]
    reference = model.encode(texts, normalize_embeddings=True)
    fp32 = enc.embed_few(model, texts, "fp32")
    assert fp32.dtype == np.float32 and fp32.shape == reference.shape
    assert (fp32 * reference).sum(1).min() > 0.99999
    bf16 = enc.embed_few(model, texts, "bf16")
    assert (bf16 * reference).sum(1).min() > 0.999


def test_second_request_for_a_text_is_not_encoded_again(model, monkeypatch):
    first = enc.embed_few(model, ["is there a fee for paying in dollars"], "fp32")
    monkeypatch.setattr(enc, "_mean_pooling_parts", lambda _: pytest.fail("encoded twice"))
    again = enc.embed_few(model, ["is there a fee for paying in dollars"], "fp32")
    assert np.array_equal(first, again)


def test_precision_setting(monkeypatch):
    monkeypatch.delenv("ASSISTANT_INFERENCE_PRECISION", raising=False)
    assert enc.inference_precision("fp32") == "fp32"
    assert enc.inference_precision("bf16") == "bf16"
    assert enc.inference_precision("auto") == ("bf16" if enc.cpu_has_bf16() else "fp32")
    monkeypatch.setenv("ASSISTANT_INFERENCE_PRECISION", "fp32")
    assert enc.inference_precision(None) == "fp32"
    with pytest.raises(ValueError, match="auto, bf16 or fp32"):
        enc.inference_precision("int4")


def test_serving_trace_gives_the_eager_vectors(model, monkeypatch):
    """The TorchScript pass (core.serving) and the eager model agree, in a batch with padding too."""
    texts = ["a fee for paying in dollars?", "hi", "why was my card payment declined twice at the shop today"]
    traced = enc.embed_few(model, texts, "fp32")
    enc.clear_embedding_cache()
    monkeypatch.setenv("ASSISTANT_TRACE_MODELS", "0")
    monkeypatch.setattr(enc, "_runners", {})
    eager = enc.embed_few(model, texts, "fp32")
    assert np.abs(traced - eager).max() < 1e-5


def test_the_serving_pass_is_a_torchscript_trace(model):
    import torch

    enc.embed_few(model, ["a message to compile the pass"], "fp32")
    runners = [r for (owner, precision, prefix), r in enc._runners.items() if precision == "fp32"]
    assert runners and all(isinstance(r, torch.jit.ScriptModule) for r in runners)


def test_a_serving_process_freezes_what_it_loaded_and_spaces_out_full_collections():
    import gc

    from core import serving

    before = gc.get_threshold()
    try:
        serving.settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], serving.SERVING_FULL_COLLECTION_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
