"""The launcher's checks of model files (`bot.serve.check_model`, `check_artifacts`), on small made-up files.

The end-to-end versions, on the real trained model, are in tests/e2e/test_faults.py.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bot.serve import ModelCheckError, check_artifacts, check_model

CLASSIFIER = "components/train_nlu.TransformerIntentClassifier0"


def safetensors_bytes(values: int = 4) -> bytes:
    """A valid safetensors file holding one float32 tensor."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return len(header).to_bytes(8, "little") + header + b"\x00" * (4 * values)


def archive(path: Path, files: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def model_files() -> dict:
    return {
        "metadata.json": b'{"domain": {}}',
        "components/domain_provider/domain.yml": b"version: '3.1'\nintents: [greet]\n",
        f"{CLASSIFIER}/intent_model.json": b'{"labels": ["greet"]}',
        f"{CLASSIFIER}/head.safetensors": safetensors_bytes(),
        f"{CLASSIFIER}/adapter/adapter_config.json": b"{}",
        f"{CLASSIFIER}/adapter/adapter_model.safetensors": safetensors_bytes(64),
    }


def test_a_sound_archive_passes(tmp_path):
    check_model(archive(tmp_path / "m.tar.gz", model_files()))


def test_a_missing_or_truncated_archive_is_named(tmp_path):
    with pytest.raises(ModelCheckError, match="does not exist"):
        check_model(tmp_path / "nope.tar.gz")
    whole = archive(tmp_path / "m.tar.gz", {**model_files(), "big.bin": os.urandom(200_000)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelCheckError, match=r"cut\.tar\.gz is truncated or corrupt"):
        check_model(cut)


@pytest.mark.parametrize("name, data, named", [
    (f"{CLASSIFIER}/adapter/adapter_model.safetensors", safetensors_bytes(64)[:100], "adapter_model.safetensors"),
    (f"{CLASSIFIER}/head.safetensors", b"not a tensor file", "head.safetensors"),
    (f"{CLASSIFIER}/intent_model.json", b'{"labels": [', "intent_model.json"),
    ("components/domain_provider/domain.yml", b"intents: [greet\n", "domain.yml"),
])
def test_a_broken_file_inside_is_named(tmp_path, name, data, named):
    with pytest.raises(ModelCheckError, match=named):
        check_model(archive(tmp_path / "m.tar.gz", {**model_files(), name: data}))


def test_an_intent_classifier_without_its_head_is_named(tmp_path):
    files = model_files()
    del files[f"{CLASSIFIER}/head.safetensors"]
    with pytest.raises(ModelCheckError, match="head.safetensors"):
        check_model(archive(tmp_path / "m.tar.gz", files))


@pytest.mark.parametrize("key, needed", [("neighbours", "neighbours.safetensors"), ("entities", "entities.safetensors")])
def test_a_classifier_file_its_meta_names_must_be_there(tmp_path, key, needed):
    files = {**model_files(), f"{CLASSIFIER}/intent_model.json": json.dumps({"labels": ["greet"], key: {"k": 10}}).encode()}
    with pytest.raises(ModelCheckError, match=needed):
        check_model(archive(tmp_path / "m.tar.gz", files))
    check_model(archive(tmp_path / "whole.tar.gz", {**files, f"{CLASSIFIER}/{needed}": safetensors_bytes()}))


def index_and_recommender(tmp_path: Path):
    faiss = pytest.importorskip("faiss")
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text('{"format": 1}')
    (index / "records.jsonl").write_text('{"key": 0, "id": "a"}\n')
    faiss.write_index(faiss.IndexFlatIP(4), str(index / "index.faiss"))
    recommender = tmp_path / "recommender"
    recommender.mkdir()
    (recommender / "recommender.json").write_text('{"format": 1}')
    (recommender / "items.jsonl").write_text('{"item_id": "x"}\n')
    np.savez(recommender / "popularity.npz", counts=np.arange(3))
    return index, recommender


def test_the_index_and_the_recommender_folders(tmp_path):
    index, recommender = index_and_recommender(tmp_path)
    check_artifacts(index, recommender)
    check_artifacts(index, tmp_path / "no-recommender")  # optional: suggestions fall back without it
    (recommender / ".profiles.jsonl.tmp").write_text("{half")  # a writer's leftover is not read
    check_artifacts(index, recommender)

    os.truncate(recommender / "popularity.npz", 20)
    with pytest.raises(ModelCheckError, match="popularity.npz"):
        check_artifacts(index, recommender)
    os.truncate(index / "index.faiss", 10)
    with pytest.raises(ModelCheckError, match="index.faiss"):
        check_artifacts(index, recommender)
    (index / "records.jsonl").unlink()
    with pytest.raises(ModelCheckError, match="records.jsonl is missing"):
        check_artifacts(index, recommender)
    with pytest.raises(ModelCheckError, match="does not exist"):
        check_artifacts(tmp_path / "no-index", recommender)
