"""SNIPS reading of `training.bench_entities`: BIO word tags to character spans, and broken files named."""
from __future__ import annotations

import pytest

from training.bench_entities import bio_spans, markup, read_split


def test_bio_word_tags_become_character_spans():
    words = "play the new album by the rolling stones".split()
    tags = ["O", "O", "B-sort", "B-music_item", "O", "B-artist", "I-artist", "I-artist"]
    spans = bio_spans(words, tags)
    text = " ".join(words)
    assert [(s["entity"], text[s["start"]:s["end"]]) for s in spans] == [
        ("sort", "new"), ("music_item", "album"), ("artist", "the rolling stones")]
    assert markup(text, spans) == "play the [new](sort) [album](music_item) by [the rolling stones](artist)"


def test_an_inside_tag_without_its_beginning_starts_a_span():
    assert bio_spans(["a", "b"], ["I-x", "I-y"]) == [{"entity": "x", "start": 0, "end": 1}, {"entity": "y", "start": 2, "end": 3}]


def test_split_files_are_read_and_broken_ones_named(tmp_path):
    (tmp_path / "seq.in").write_text("book a table\nhi there\n")
    (tmp_path / "seq.out").write_text("O O B-thing\nO O\n")
    (tmp_path / "label").write_text("BookRestaurant\nGreet\n")
    assert read_split(tmp_path)[0] == ("book a table", "BookRestaurant", [{"entity": "thing", "start": 7, "end": 12}])
    (tmp_path / "seq.out").write_text("O O B-thing\nO\n")
    with pytest.raises(ValueError, match=r"seq.out:2: 1 tags for 2 words"):
        read_split(tmp_path)
    (tmp_path / "label").unlink()
    with pytest.raises(FileNotFoundError, match="label is missing"):
        read_split(tmp_path)
