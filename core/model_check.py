"""Read model files before they are served: a Rasa archive (`check_model`), the index and recommender folders (`check_artifacts`).

Rasa logs a model that fails to load and then serves without one (every
message answered "no model loaded"), so the launcher (`bot.serve`) reads the
files first and refuses to start, naming the file that is missing or broken;
`training.retrain` reads a candidate's archive the same way before it can be
promoted. Pure file reading, no project package: it lives in core so both may
use it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import yaml


def newest_model(model_dir: Path) -> Optional[Path]:
    """The newest Rasa model archive in `model_dir`, if any."""
    archives = sorted(Path(model_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return archives[-1] if archives else None


class ModelCheckError(RuntimeError):
    """A model file the servers need is missing or unreadable (the message names it)."""


# The intent classifier's files inside the archive (nlu/model.py writes them).
INTENT_FILES = ("intent_model.json", "head.safetensors", "adapter/adapter_config.json")
INTENT_WEIGHTS = ("adapter/adapter_model.safetensors", "adapter/adapter_model.bin")
# Files intent_model.json says the model has: its key, when set, needs the file.
INTENT_EXTRAS = {"entities": "entities.safetensors", "neighbours": "neighbours.safetensors"}


def _safetensors_problem(head: bytes, size: int) -> Optional[str]:
    """What is wrong with a safetensors file from its first bytes and its size, if anything."""
    if size < 8:
        return "is too short to be a safetensors file"
    length = int.from_bytes(head[:8], "little")
    if 8 + length > size or 8 + length > len(head):
        return "is truncated (its header is cut off)"
    try:
        header = json.loads(head[8:8 + length].decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"has an unreadable header ({exc})"
    if 8 + length + max(ends, default=0) > size:
        return f"is truncated ({size} bytes, its header describes {8 + length + max(ends)})"
    return None


def _content_problem(name: str, data: bytes) -> Optional[str]:
    """What is wrong with a .json, .jsonl or .yml file's content, if anything."""
    try:
        text = data.decode("utf-8")
        if name.endswith(".json"):
            json.loads(text)
        elif name.endswith(".jsonl"):
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError as exc:
                        return f"line {number} is not JSON ({exc})"
        elif name.endswith((".yml", ".yaml")):
            yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (ValueError, yaml.YAMLError) as exc:
        return f"is not valid {name.rsplit('.', 1)[-1].upper()} ({str(exc).splitlines()[0]})"
    return None


def check_model(path: Path) -> None:
    """Read the whole Rasa model archive; raise `ModelCheckError` naming the file that is missing or broken.

    Catches a missing path, a truncated or corrupt archive (gzip and tar are
    read to the end), JSON/YAML/safetensors files inside that do not parse or
    are cut short, and an intent classifier without its adapter or head.
    """
    import gzip
    import tarfile
    import zlib

    path = Path(path)
    retrain = "retrain it with `rasa train` (or `make run`, which trains when no model exists)"
    if not path.exists():
        raise ModelCheckError(f"model archive {path} does not exist; {retrain}")
    if not path.is_file():
        raise ModelCheckError(f"model archive {path} is not a file; {retrain}")
    names, name = set(), None
    metas = {}  # classifier folder -> its intent_model.json, read
    try:
        with gzip.open(path, "rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    name = member.name.lstrip("./")
                    names.add(name)
                    handle = archive.extractfile(member)
                    keep = name.endswith((".json", ".jsonl", ".yml", ".yaml"))
                    head, size = b"", 0
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        size += len(chunk)
                        if keep or (name.endswith(".safetensors") and len(head) < 16 << 20):
                            head += chunk
                    if size != member.size:
                        raise ModelCheckError(f"model archive {path} is truncated inside {name}; {retrain}")
                    problem = (
                        _safetensors_problem(head, size) if name.endswith(".safetensors")
                        else _content_problem(name, head) if keep else None
                    )
                    if problem:
                        raise ModelCheckError(f"model archive {path}: the file {name} inside it {problem}; {retrain}")
                    parts = name.split("/")
                    if len(parts) == 3 and parts[0] == "components" and parts[2] == INTENT_FILES[0]:
                        metas[parts[1]] = json.loads(head.decode("utf-8"))
            name = None
            while stream.read(1 << 20):  # to the end, so that gzip checks its CRC and length
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        where = f" (reading {name} inside it)" if name else ""
        raise ModelCheckError(f"model archive {path} is truncated or corrupt{where}: {exc}; {retrain}") from exc
    if "metadata.json" not in names:
        raise ModelCheckError(f"model archive {path} has no metadata.json, so it is not a Rasa model; {retrain}")
    classifiers = {n.split("/")[1] for n in names if n.startswith("components/train_nlu.TransformerIntentClassifier")}
    for folder in sorted(classifiers):
        missing = [f for f in INTENT_FILES if f"components/{folder}/{f}" not in names]
        if not any(f"components/{folder}/{f}" in names for f in INTENT_WEIGHTS):
            missing.append(INTENT_WEIGHTS[0])
        meta = metas.get(folder)
        if isinstance(meta, dict):
            missing += [f for key, f in INTENT_EXTRAS.items() if meta.get(key) and f"components/{folder}/{f}" not in names]
        if missing:
            raise ModelCheckError(
                f"model archive {path} lacks components/{folder}/{missing[0]} (a file of the intent "
                f"classifier); {retrain}"
            )


def _folder_file_problem(path: Path) -> Optional[str]:
    """What is wrong with one file of the answer index or the recommender, if anything."""
    name = path.name
    try:
        if name.endswith((".json", ".jsonl", ".yml", ".yaml")):
            return _content_problem(name, path.read_bytes())
        if name.endswith(".safetensors"):
            with path.open("rb") as fh:
                return _safetensors_problem(fh.read(16 << 20), path.stat().st_size)
        if name.endswith((".npy", ".npz")):
            import numpy as np

            loaded = np.load(path, allow_pickle=False)
            if name.endswith(".npz"):
                with loaded:
                    for key in loaded.files:
                        loaded[key]
            return None
        if name.endswith(".faiss"):
            try:
                import faiss
            except ImportError:
                return None
            faiss.read_index(str(path))
            return None
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass
    except Exception as exc:  # numpy, zipfile and faiss each raise their own kinds
        return f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def _visible_files(folder: Path) -> List[Path]:
    """The files of `folder`, without hidden ones (a writer's leftover ``.name.tmp``)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def check_artifacts(index_dir: Path, recommender_dir: Path) -> None:
    """Check the answer index (required) and the recommender (optional: suggestions fall back without it).

    Raises `ModelCheckError` naming the missing or broken file.
    """
    index_dir, recommender_dir = Path(index_dir), Path(recommender_dir)
    build = f"rebuild it with `python -m training.build_index --out {index_dir}`"
    if not index_dir.is_dir():
        raise ModelCheckError(f"answer index folder {index_dir} does not exist; {build}")
    for needed in ("manifest.json", "index.faiss", "records.jsonl"):
        if not (index_dir / needed).is_file():
            raise ModelCheckError(f"answer index file {index_dir / needed} is missing; {build}")
    for file in _visible_files(index_dir):
        problem = _folder_file_problem(file)
        if problem:
            raise ModelCheckError(f"answer index file {file} {problem}; {build}")
    if not recommender_dir.exists():
        return  # the action server suggests from the catalogue and popularity, and says so
    retrain = f"retrain it with `python -m training.train_recommender --out {recommender_dir}` or remove the folder"
    if not (recommender_dir / "recommender.json").is_file():
        raise ModelCheckError(f"recommender file {recommender_dir / 'recommender.json'} is missing; {retrain}")
    for file in _visible_files(recommender_dir):
        problem = _folder_file_problem(file)
        if problem:
            raise ModelCheckError(f"recommender file {file} {problem}; {retrain}")
