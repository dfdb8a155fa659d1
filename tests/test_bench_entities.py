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


def test_the_command_trains_parses_and_writes_its_table(tmp_path):
    """`python -m training.bench_entities` end to end on a tiny SNIPS-shaped set (ours only, one epoch)."""
    import json

    from training.bench_entities import main

    rows = [("play the new album by the rolling stones", "O O B-sort B-music_item O B-artist I-artist I-artist", "PlayMusic"),
            ("book a table for two in paris", "O O B-restaurant_type O B-party_size O B-city", "BookRestaurant"),
            ("will it rain tomorrow in london", "O O B-condition B-timeRange O B-city", "GetWeather")]
    for split, copies in (("train", 6), ("test", 1)):
        folder = tmp_path / "snips" / split
        folder.mkdir(parents=True)
        (folder / "seq.in").write_text("".join(f"{w}\n" for w, _, _ in rows) * copies)
        (folder / "seq.out").write_text("".join(f"{t}\n" for _, t, _ in rows) * copies)
        (folder / "label").write_text("".join(f"{l}\n" for _, _, l in rows) * copies)
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "snips"), "--systems", "ours", "--epochs", "1",
                 "--latency-messages", "3", "--out", str(out)]) == 0
    [row] = json.loads((out / "results.json").read_text())
    assert row["system"] == "ours" and 0.0 <= row["slot_f1"] <= 1.0 and row["p50_ms"] > 0
    assert "| ours |" in (out / "table.md").read_text()
